//! Running the command of `warden run` / `warden elect`: spawn it, forward signals, stop it with SIGTERM and
//! then SIGKILL after a grace period, and turn its exit status into ours.

use crate::common::*;
use std::process::ExitStatus;
use std::time::Duration;
use tokio::process::{Child, Command};
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Starts `argv` with `env` added, as the leader of a process group of its own: stopping it stops everything it
/// started (the children of a `sh -c` included). On Linux the child is also killed if warden itself dies (even
/// by SIGKILL).
pub fn spawn(argv: &[String], env: &[(&str, String)]) -> CliResult<Child> {
    let (prog, args) = argv
        .split_first()
        .ok_or_else(|| CliError::new(2, "no command given: put it after `--`, e.g. `-- ./job.sh`"))?;
    // warden becomes the subreaper of what the command starts: a grandchild orphaned when the command exits is
    // handed to warden (not to init), so that after a lost lease warden can wait until it is gone (`terminate`).
    #[cfg(target_os = "linux")]
    // SAFETY: prctl(2) sets a flag on this process; no memory is involved.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1);
    }
    let mut cmd = Command::new(prog);
    cmd.args(args).kill_on_drop(true).process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe and touches only this (child) process.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => CliError::new(EXIT_NOT_FOUND, format!("command `{prog}` not found")),
        std::io::ErrorKind::PermissionDenied => {
            CliError::new(EXIT_CANNOT_EXEC, format!("command `{prog}` is not executable"))
        }
        _ => CliError::new(EXIT_CANNOT_EXEC, format!("cannot start `{prog}`: {e}")),
    })
}

/// Sends `sig` to the child's process group (the child and what it started), if the child was started.
pub fn send(group: i32, sig: i32) {
    // SAFETY: kill(2) of the process group our child leads (pid == pgid, see `spawn`); no memory is involved.
    unsafe {
        libc::kill(-group, sig);
    }
}

/// SIGTERM to the whole group, then SIGKILL to what is left of it after `grace` (or once the child exited);
/// returns the child's exit status once nothing of the group is left running.
pub async fn terminate(child: &mut Child, group: i32, grace: Duration) -> Option<ExitStatus> {
    send(group, libc::SIGTERM);
    let status = match tokio::time::timeout(grace, child.wait()).await {
        Ok(r) => r.ok(),
        Err(_) => {
            send(group, libc::SIGKILL);
            child.wait().await.ok()
        }
    };
    // Whatever the child left running in its group must not outlive the lease either.
    send(group, libc::SIGKILL);
    reap_group(group).await;
    status
}

/// Waits until every member of the group has died: kill(2) only queues the signal, and a process is torn down a
/// moment later, so without this warden could report the command stopped while a grandchild still runs. The
/// members orphaned by the child's exit are warden's own children (it is their subreaper, see `spawn`), so
/// waitpid(2) on the group waits for exactly them. A member that does not die within `REAP_WITHIN` (stuck in the
/// kernel) is left to the system.
#[cfg(target_os = "linux")]
async fn reap_group(group: i32) {
    const REAP_WITHIN: Duration = Duration::from_secs(5);
    let reap = tokio::task::spawn_blocking(move || loop {
        let mut status = 0;
        // SAFETY: waitpid(2) for children in our child's process group, into a local status word.
        let r = unsafe { libc::waitpid(-group, &mut status, 0) };
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return; // ECHILD: none left
        }
    });
    let _ = tokio::time::timeout(REAP_WITHIN, reap).await;
}

#[cfg(not(target_os = "linux"))]
async fn reap_group(_group: i32) {}

/// Our exit code for the child's status: its code, or 128 + the signal that ended it.
pub fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(c), _) => c.clamp(0, 255) as u8,
        (None, Some(s)) => (128 + s).clamp(0, 255) as u8,
        _ => EXIT_FAILURE,
    }
}

/// How a supervised command ended.
pub enum Ended {
    /// It exited on its own (or after a forwarded signal).
    Exited(ExitStatus),
    /// The lease or leadership was lost first; the command was stopped.
    LeaseLost,
}

/// Waits for the command to exit, forwarding the signals warden receives. If `lost` resolves first, stops it
/// (SIGTERM, then SIGKILL after `grace`).
pub async fn supervise(
    proc: &mut Child,
    signals: &mut Signals,
    lost: impl std::future::Future<Output = ()>,
    grace: Duration,
) -> CliResult<Ended> {
    tokio::pin!(lost);
    let group = proc.id().map(|p| p as i32).unwrap_or(0);
    loop {
        tokio::select! {
            s = proc.wait() => {
                let status = s.map_err(|e| CliError::new(EXIT_FAILURE, format!("lost track of the command: {e}")))?;
                return Ok(Ended::Exited(status));
            }
            _ = &mut lost => {
                if group > 0 {
                    let _ = terminate(proc, group, grace).await;
                }
                return Ok(Ended::LeaseLost);
            }
            sig = signals.recv() => if group > 0 { send(group, sig) },
        }
    }
}

/// The signals warden forwards to its command.
pub struct Signals {
    int: Signal,
    term: Signal,
    hup: Signal,
}

impl Signals {
    pub fn new() -> CliResult<Self> {
        let mk = |k| signal(k).map_err(|e| CliError::new(EXIT_FAILURE, format!("cannot install signal handlers: {e}")));
        Ok(Signals {
            int: mk(SignalKind::interrupt())?,
            term: mk(SignalKind::terminate())?,
            hup: mk(SignalKind::hangup())?,
        })
    }

    /// The next signal received.
    pub async fn recv(&mut self) -> i32 {
        tokio::select! {
            _ = self.int.recv() => libc::SIGINT,
            _ = self.term.recv() => libc::SIGTERM,
            _ = self.hup.recv() => libc::SIGHUP,
        }
    }
}
