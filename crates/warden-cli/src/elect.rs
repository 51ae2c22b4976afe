//! `warden elect NAME -- CMD`: run a command only while leader.

use crate::child::{self, Signals};
use crate::common::*;
use clap::Args;
use std::time::Duration;

/// Arguments of `warden elect`.
#[derive(Args, Debug)]
pub struct ElectArgs {
    /// The election's name.
    pub name: String,
    /// Leadership lease TTL: a leader that dies silently is replaced after about this long.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub ttl: Duration,
    /// After SIGTERM to CMD, wait this long before SIGKILL.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub grace: Duration,
    /// This candidate's id (default: host:pid).
    #[arg(long, env = "WARDEN_CANDIDATE")]
    pub candidate: Option<String>,
    /// Backend URL.
    #[arg(long, env = "WARDEN_BACKEND", default_value = DEFAULT_BACKEND)]
    pub backend: String,
    /// Allow a memory:// backend, whose elections exclude nobody outside this process.
    #[arg(long)]
    pub allow_memory: bool,
    /// The command and its arguments.
    #[arg(last = true, required = true, num_args = 1..)]
    pub cmd: Vec<String>,
}

pub async fn elect(a: ElectArgs) -> CliResult<u8> {
    refuse_memory(&a.backend, a.allow_memory)?;
    let mut signals = Signals::new()?;
    let warden = connect(&a.backend).await?;
    let candidate = a.candidate.clone().unwrap_or_else(host_pid);
    let election = warden.election(a.name.as_str()).ttl(a.ttl);
    // A follower says once that it waits, and for whom.
    if let Ok(Some(leader)) = election.leader().await {
        eprintln!(
            "warden: `{candidate}` waits to lead `{}`: `{}` leads it now",
            a.name, leader.candidate_id
        );
    }
    let leadership = tokio::select! {
        r = election.campaign(&candidate) => r.map_err(|e| explain(&a.backend, e))?,
        sig = signals.recv() => return Ok((128 + sig) as u8),
    };
    eprintln!(
        "warden: `{candidate}` leads `{}` (fencing token {}); starting the command",
        a.name,
        leadership.fencing_token()
    );
    let env = [
        ("WARDEN_ELECTION", a.name.clone()),
        ("WARDEN_CANDIDATE", candidate.clone()),
        ("WARDEN_LOCK_ID", leadership.lock_id().to_string()),
        ("WARDEN_FENCING_TOKEN", leadership.fencing_token().to_string()),
    ];
    let mut proc = match child::spawn(&a.cmd, &env) {
        Ok(p) => p,
        Err(e) => {
            let _ = leadership.resign().await;
            return Err(e);
        }
    };
    // Graceful stop: the command gets the signal; when it exits we resign, and the next candidate takes over.
    let ended = child::supervise(&mut proc, &mut signals, leadership.lost(), a.grace).await?;
    let status = match ended {
        child::Ended::Exited(status) => status,
        child::Ended::LeaseLost => {
            return Err(CliError::new(
                EXIT_LEASE_LOST,
                format!("the command was stopped because leadership of `{}` was lost", a.name),
            ))
        }
    };
    // Resign first: the next candidate should not wait for our bookkeeping.
    let resigned = leadership.resign().await;
    if let Err(e) = resigned {
        eprintln!(
            "warden: resigning from `{}` failed (it ends with the lease's TTL): {e}",
            a.name
        );
    }
    Ok(child::exit_code(status))
}
