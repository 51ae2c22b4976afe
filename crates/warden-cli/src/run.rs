//! `warden run --lock NAME -- CMD`: run a command under a lock.

use crate::child::{self, Signals};
use crate::common::*;
use clap::Args;
use std::time::Duration;

/// Arguments of `warden run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The lock (resource) to hold while CMD runs.
    #[arg(long)]
    pub lock: String,
    /// Lease TTL; renewed about every third of it while CMD runs.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub ttl: Duration,
    /// How long to wait for the lock (0 = try once).
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub wait: Duration,
    /// Take a shared (read) lock instead of an exclusive one.
    #[arg(long)]
    pub shared: bool,
    /// Exit 0 instead of 75 when the lock is held by someone else (for cron).
    #[arg(long)]
    pub skip_if_held: bool,
    /// After SIGTERM to CMD (lease lost), wait this long before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub grace: Duration,
    /// Backend URL.
    #[arg(long, env = "WARDEN_BACKEND", default_value = DEFAULT_BACKEND)]
    pub backend: String,
    /// Client id recorded with the lease (default: host:pid).
    #[arg(long, env = "WARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub cmd: Vec<String>,
}

pub async fn run(a: RunArgs) -> CliResult<u8> {
    let mut signals = Signals::new()?;
    let warden = connect(&a.backend).await?;
    let client = a.client_id.clone().unwrap_or_else(host_pid);
    let acquire = warden
        .lock(a.lock.as_str())
        .kind(kind(a.shared))
        .ttl(a.ttl)
        .wait(a.wait)
        .client_id(client)
        .acquire();
    let mut guard = tokio::select! {
        r = acquire => match r {
            Ok(g) => g,
            Err(warden::Error::Timeout { .. }) if a.skip_if_held => {
                eprintln!("warden: lock `{}` is held by someone else; skipping (--skip-if-held)", a.lock);
                return Ok(0);
            }
            Err(warden::Error::Timeout { .. }) => {
                return Err(CliError::new(EXIT_NOT_ACQUIRED, format!(
                    "lock `{}` is held by someone else and was not acquired within {}: retry later, raise --wait, \
                     or pass --skip-if-held", a.lock, human(a.wait))));
            }
            Err(e) => return Err(explain(&a.backend, e)),
        },
        sig = signals.recv() => return Ok((128 + sig) as u8),
    };
    let env = [
        ("WARDEN_LOCK", a.lock.clone()),
        ("WARDEN_LOCK_ID", guard.lock_id().to_string()),
        ("WARDEN_FENCING_TOKEN", guard.fencing_token().to_string()),
    ];
    let mut proc = match child::spawn(&a.cmd, &env) {
        Ok(p) => p,
        Err(e) => {
            let _ = guard.release().await;
            return Err(e);
        }
    };
    let ended = child::supervise(&mut proc, &mut signals, guard.lost(), a.grace).await;
    let released = guard.release().await;
    let status = match ended? {
        child::Ended::Exited(status) => status,
        child::Ended::LeaseLost => {
            return Err(CliError::new(
                EXIT_LEASE_LOST,
                format!(
                    "the command was stopped because the lease on `{}` was lost (renewal refused or not confirmed \
                     in time); its work may be incomplete",
                    a.lock
                ),
            ))
        }
    };
    if let Err(e) = released {
        eprintln!("warden: the command finished but releasing `{}` failed: {e}", a.lock);
    }
    Ok(child::exit_code(status))
}
