//! What every subcommand shares: connecting, client ids, durations, and errors that say what to do next.

use std::time::Duration;
use warden::Warden;

/// Exit code: generic failure.
pub const EXIT_FAILURE: u8 = 1;
/// Exit code: the command line is wrong.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the backend (or warden server) cannot be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code: the lease (or leadership) was lost while the command ran.
pub const EXIT_LEASE_LOST: u8 = 70;
/// Exit code: the lock was not acquired before the wait ran out.
pub const EXIT_NOT_ACQUIRED: u8 = 75;
/// Exit code: the command could not be executed.
pub const EXIT_CANNOT_EXEC: u8 = 126;
/// Exit code: the command was not found.
pub const EXIT_NOT_FOUND: u8 = 127;

/// A failure: one line for stderr and the exit code.
#[derive(Debug)]
pub struct CliError {
    pub code: u8,
    pub message: String,
}

impl CliError {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
        }
    }
}

pub type CliResult<T> = Result<T, CliError>;

/// The backend URL every subcommand but `serve` defaults to: the local `warden serve`.
pub const DEFAULT_BACKEND: &str = "http://127.0.0.1:7070";

/// Explains a library error for a human, with what to do next.
pub fn explain(backend: &str, e: warden::Error) -> CliError {
    use warden::Error as E;
    let shown = crate::serve::redact(backend);
    match e {
        E::ServerBackendUnavailable { reason, .. } => CliError::new(
            EXIT_UNAVAILABLE,
            format!("the warden server at {shown} cannot reach its backend: {reason}"),
        ),
        // The reason says what failed and what to do (start `warden serve`, check the CA, ...).
        E::BackendUnavailable { reason, .. } if backend.starts_with("http") => {
            CliError::new(EXIT_UNAVAILABLE, format!("warden server at {shown}: {reason}"))
        }
        E::BackendUnavailable { .. } | E::QuorumUnavailable { .. } => CliError::new(
            EXIT_UNAVAILABLE,
            format!("backend {shown} is unavailable: {e}; check that it runs, or pass another --backend"),
        ),
        E::InvalidArgument { .. } => CliError::new(EXIT_USAGE, format!("{e}")),
        E::Conflict { .. } => CliError::new(EXIT_USAGE, format!("{e}")),
        E::Unauthorized { reason, .. } => CliError::new(
            EXIT_FAILURE,
            format!("warden server at {shown} refused the request: {reason}"),
        ),
        E::Forbidden { reason, .. } => CliError::new(EXIT_FAILURE, format!("warden server at {shown}: {reason}")),
        E::NotFound { .. } => CliError::new(EXIT_FAILURE, format!("{e}")),
        other => CliError::new(EXIT_FAILURE, format!("{other}")),
    }
}

static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The API key from `--token` / `WARDEN_TOKEN`, for every connection to a warden server.
pub fn set_token(token: String) {
    let _ = TOKEN.set(token);
}

/// The API key from `--token` / `WARDEN_TOKEN`, if one was given.
pub fn token() -> Option<&'static str> {
    TOKEN.get().map(String::as_str)
}

/// `backend` with the API key as the URL's password, when it is a warden server's URL without one.
pub fn with_token(backend: &str) -> String {
    let Some(token) = TOKEN.get() else {
        return backend.to_string();
    };
    match url::Url::parse(backend) {
        Ok(mut u) if matches!(u.scheme(), "http" | "https") && u.password().is_none() && u.username().is_empty() => {
            if u.set_password(Some(token)).is_ok() {
                return u.to_string();
            }
            backend.to_string()
        }
        _ => backend.to_string(),
    }
}

/// Connects to `backend` (with the API key, if one was given).
pub async fn connect(backend: &str) -> CliResult<Warden> {
    Warden::connect(&with_token(backend))
        .await
        .map_err(|e| explain(backend, e))
}

/// This machine's host name (for default client ids).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf, which we own.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// The default id of an `elect` candidate: `host:pid` (two candidates on one machine must differ).
pub fn host_pid() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// The kind of hold `--shared` / `--permits N` ask for (clap keeps the two apart), with its permits (0 for a
/// lock).
pub fn kind(shared: bool, permits: Option<u32>) -> (warden::LockKind, u32) {
    match (shared, permits) {
        (_, Some(n)) => (warden::LockKind::Semaphore, n),
        (true, None) => (warden::LockKind::Shared, 0),
        (false, None) => (warden::LockKind::Exclusive, 0),
    }
}

/// A lock builder for the kind of hold `--shared` / `--permits N` ask for.
pub fn mode(b: warden::LockBuilder<'_>, shared: bool, permits: Option<u32>) -> warden::LockBuilder<'_> {
    match kind(shared, permits) {
        (warden::LockKind::Semaphore, n) => b.permits(n),
        (k, _) => b.kind(k),
    }
}

/// `--if-fencing-token` / `--if-not-granted-within`: a condition on the lock's history, judged with the grant.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConditionArgs {
    /// Acquire only if nobody held NAME since the lease that got this fencing token (a restarted job resumes
    /// only if nobody took over; `warden run` gives CMD its token in WARDEN_FENCING_TOKEN). Else exit 75.
    #[arg(long, value_name = "TOKEN", conflicts_with = "if_not_granted_within")]
    pub if_fencing_token: Option<u64>,
    /// Acquire only if nobody was granted NAME within this long (at most one run per period, fleet-wide; at
    /// most the backend's retain_ms). Else exit 75.
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub if_not_granted_within: Option<Duration>,
}

/// `--priority N`: the waiter's priority.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PriorityArg {
    /// Wait with this priority, -100..=100 (default 0): higher priorities are granted first, FIFO within one; a
    /// waiter queues as if it had arrived N x 100 ms earlier, so none starves. Backends: memory, redis (single,
    /// Cluster, Sentinel) and a warden server over them.
    #[arg(long, value_name = "N", default_value_t = 0, allow_negative_numbers = true)]
    pub priority: i32,
}

impl ConditionArgs {
    /// The condition asked for, if any.
    pub fn condition(&self) -> Option<warden::Condition> {
        match (self.if_fencing_token, self.if_not_granted_within) {
            (Some(t), _) => Some(warden::Condition::FencingToken(t)),
            (None, Some(d)) => Some(warden::Condition::NotGrantedWithin(d)),
            (None, None) => None,
        }
    }
}

/// What a refusal of a hold says: the lock is held, or every permit of the semaphore is.
pub fn held_by_others(name: &str, permits: Option<u32>) -> String {
    match permits {
        Some(n) => format!("all {n} permits of `{name}` are held by others"),
        None => format!("lock `{name}` is held by someone else"),
    }
}

/// `--ttl 30s`, `--wait 500ms`, ...
pub fn duration(s: &str) -> Result<Duration, String> {
    warden::validate::parse_duration(s)
}

/// How long `--wait` may take: a duration, or `forever` (none).
#[derive(Debug, Clone, Copy)]
pub struct Wait(pub Option<Duration>);

/// `--wait 10s`, `--wait 0`, `--wait forever`.
pub fn wait_duration(s: &str) -> Result<Wait, String> {
    if s.trim() == "forever" {
        return Ok(Wait(None));
    }
    duration(s).map(|d| Wait(Some(d)))
}

/// Refuses `memory://` for `run` and `elect` unless allowed: its locks live in this one process, so they would
/// exclude no other `warden run`.
pub fn refuse_memory(backend: &str, allowed: bool) -> CliResult<()> {
    if backend.starts_with("memory:") && !allowed {
        return Err(CliError::new(
            2,
            "memory:// keeps locks inside this one process, so they exclude no other `warden run` or `elect`: use a \
             shared backend (start `warden serve` and use its default http://127.0.0.1:7070, or redis://, \
             postgres://, ...), or pass --allow-memory if that is really what you want",
        ));
    }
    Ok(())
}

/// Human form of a duration.
pub fn human(d: Duration) -> String {
    if d.as_millis() % 1000 == 0 {
        format!("{}s", d.as_secs())
    } else if d >= Duration::from_secs(1) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        format!("{}ms", d.as_millis())
    }
}
