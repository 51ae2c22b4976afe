//! `warden run NAME -- CMD`: run a command under a lock.

use crate::child::{self, Signals};
use crate::common::*;
use clap::Args;
use std::time::Duration;
use warden::GroupGuard;

/// Arguments of `warden run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The lock (resource) to hold while CMD runs.
    #[arg(value_name = "NAME", required_unless_present = "lock")]
    pub name: Option<String>,
    /// The lock, as a flag (the same as NAME).
    #[arg(long, conflicts_with = "name")]
    pub lock: Option<String>,
    /// Lease TTL; renewed about every third of it while CMD runs.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub ttl: Duration,
    /// How long to wait for the lock (0 = try once; `forever` = until granted, keeping its place in the
    /// queue).
    #[arg(long, default_value = "10s", value_parser = wait_duration)]
    pub wait: Wait,
    /// Take a shared (read) lock instead of an exclusive one.
    #[arg(long)]
    pub shared: bool,
    /// Take one of N permits of a semaphore instead of a lock: at most N copies of CMD run at once, fleet-wide
    /// (every caller of NAME must pass the same N).
    #[arg(long, value_name = "N", conflicts_with = "shared", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub permits: Option<u32>,
    /// Hold this lock too, in the same mode, all or nothing with NAME (repeatable): the locks are taken as one
    /// group, in one global order, so two commands naming the same locks in any order never deadlock.
    #[arg(long = "with", value_name = "NAME", conflicts_with = "permits")]
    pub with: Vec<String>,
    /// NAME is a path in a tree (`orders/eu/42`): the lock excludes locks on anything below and above it, never
    /// its siblings (every lock on the tree must be taken with --path).
    #[arg(long, conflicts_with_all = ["permits", "with"])]
    pub path: bool,
    /// The character between a path's segments.
    #[arg(long, value_name = "C", default_value = "/", requires = "path")]
    pub separator: char,
    #[command(flatten)]
    pub condition: ConditionArgs,
    #[command(flatten)]
    pub priority: PriorityArg,
    /// Exit 0 instead of 75 when the lock is held by someone else, or an --if-* condition does not hold (for
    /// cron).
    #[arg(long)]
    pub skip_if_held: bool,
    /// Exit with this code instead of 75 when the lock is held by someone else (as flock's -E).
    #[arg(long, value_name = "N", conflicts_with = "skip_if_held")]
    pub conflict_exit_code: Option<u8>,
    /// Allow a memory:// backend, whose locks exclude nobody outside this process.
    #[arg(long)]
    pub allow_memory: bool,
    /// After SIGTERM to CMD (lease lost), wait this long before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub grace: Duration,
    /// Backend URL.
    #[arg(long, env = "WARDEN_BACKEND", default_value = DEFAULT_BACKEND)]
    pub backend: String,
    /// Client id recorded with the lease (default: this machine's host name, as every command).
    #[arg(long, env = "WARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub cmd: Vec<String>,
}

pub async fn run(a: RunArgs) -> CliResult<u8> {
    let name = a.name.clone().or_else(|| a.lock.clone()).unwrap_or_default();
    refuse_memory(&a.backend, a.allow_memory)?;
    let mut signals = Signals::new()?;
    let warden = connect(&a.backend).await?;
    let client = a.client_id.clone().unwrap_or_else(hostname);
    let condition = a.condition.condition();
    let acquire = async {
        // `forever`: the longest wait the API takes, again and again; the waiter queues again at once.
        let wait = a.wait.0.unwrap_or(warden::validate::MAX_WAIT);
        loop {
            // One lock is a group of one: the same waiting, renewal, lost signal and release.
            let (kind, permits) = kind(a.shared, a.permits);
            // A path is a group too: an intention on each ancestor, then the path itself.
            let members = match a.path {
                true => warden::lock::path_members(&name, a.separator, a.shared)?,
                false => std::iter::once(&name)
                    .chain(&a.with)
                    .map(|n| (n.clone(), kind))
                    .collect(),
            };
            let r = members
                .into_iter()
                .fold(warden.group(Vec::<String>::new()), |g, (n, kind)| {
                    g.member(n, kind, permits)
                })
                .ttl(a.ttl)
                .wait(wait)
                .client_id(client.as_str())
                .condition(condition)
                .priority(a.priority.priority)
                .acquire()
                .await;
            match r {
                Err(warden::Error::Timeout { .. }) if a.wait.0.is_none() => {
                    // The API bounds one wait; the next starts at once, at the back of the queue.
                    eprintln!(
                        "warden: still waiting for `{name}` after {}; queueing again (a waiter that came meanwhile \
                         may go first)",
                        human(wait)
                    );
                    continue;
                }
                other => return other,
            }
        }
    };
    let mut guard = tokio::select! {
        r = acquire => match r {
            Ok(g) => g,
            Err(warden::Error::Timeout { resource, .. }) if a.skip_if_held => {
                eprintln!("warden: {}; skipping (--skip-if-held)", held_by_others(&resource, a.permits));
                return Ok(0);
            }
            Err(warden::Error::Timeout { resource, .. }) => {
                let waited = a.wait.0.map(human).unwrap_or_default();
                let msg = format!(
                    "{} and {} acquired within {waited}: retry later, raise --wait, or pass --skip-if-held",
                    held_by_others(&resource, a.permits),
                    if a.with.is_empty() { "none was" } else { "so none of the locks was" });
                return Err(CliError::new(a.conflict_exit_code.unwrap_or(EXIT_NOT_ACQUIRED), msg));
            }
            Err(e @ warden::Error::ConditionFailed { .. }) if a.skip_if_held => {
                eprintln!("warden: {e}; skipping (--skip-if-held)");
                return Ok(0);
            }
            Err(e @ warden::Error::ConditionFailed { .. }) => {
                return Err(CliError::new(a.conflict_exit_code.unwrap_or(EXIT_NOT_ACQUIRED), e.to_string()));
            }
            Err(e) => return Err(explain(&a.backend, e)),
        },
        sig = signals.recv() => return Ok((128 + sig) as u8),
    };
    let env = env(&guard, &name);
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
                    "the command was stopped because the lease on `{name}` was lost (renewal refused or not \
                     confirmed in time); its work may be incomplete"
                ),
            ))
        }
    };
    if let Err(e) = released {
        eprintln!("warden: the command finished but releasing `{name}` failed: {e}");
    }
    Ok(child::exit_code(status))
}

/// The command's environment: `WARDEN_LOCK`, `WARDEN_LOCK_ID` (the group's id: for one lock, its lock id),
/// `WARDEN_FENCING_TOKEN` (NAME's) and `WARDEN_FENCING_TOKENS`, a JSON object of every lock's fencing token by
/// name.
fn env(held: &GroupGuard, name: &str) -> Vec<(&'static str, String)> {
    let tokens: serde_json::Map<String, serde_json::Value> = held
        .members()
        .iter()
        .map(|m| (m.resource().to_string(), m.fencing_token().into()))
        .collect();
    vec![
        ("WARDEN_LOCK", name.to_string()),
        ("WARDEN_LOCK_ID", held.group_id()),
        (
            "WARDEN_FENCING_TOKEN",
            held.fencing_token(name).unwrap_or_default().to_string(),
        ),
        ("WARDEN_FENCING_TOKENS", serde_json::Value::Object(tokens).to_string()),
    ]
}
