//! The one error type of warden, classified by whether a retry can help.

use std::time::Duration;

/// Everything that can go wrong in warden.
///
/// Every variant says whether retrying the same call can help: see [`Error::is_retryable`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// An argument was out of range or malformed. Fix the call; retrying it unchanged cannot help.
    #[error("invalid argument `{field}`: {reason}")]
    InvalidArgument {
        /// The name of the offending field, as the caller spelled it.
        field: &'static str,
        /// What was wrong and the allowed range.
        reason: String,
    },
    /// The lock was not acquired before the wait deadline ran out. Retrying later may succeed.
    #[error("lock `{resource}` not acquired within {} ms: it is held by someone else; wait longer or retry later", waited.as_millis())]
    Timeout {
        /// The resource that was asked for.
        resource: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// No lease with this lock id exists (never existed, released, or expired and swept).
    #[error("no lease with lock id `{lock_id}` (it never existed, was released, or expired)")]
    NotFound {
        /// The lock id asked about.
        lock_id: String,
    },
    /// The lease exists but belongs to another client id; nothing was changed.
    #[error("lease `{lock_id}` is not owned by client `{client_id}`")]
    NotOwner {
        /// The lock id asked about.
        lock_id: String,
        /// The client id that asked.
        client_id: String,
    },
    /// The lease is no longer held: it expired, or its key was taken away. Acquire again.
    #[error("lease `{lock_id}`{} is no longer held (expired or taken over)", on_resource(.resource))]
    LeaseLost {
        /// The lock id of the lost lease.
        lock_id: String,
        /// Its resource.
        resource: String,
    },
    /// The resource is in use in a way this request does not match: a semaphore asked for with another permit
    /// count, or a semaphore asked for as a lock (or a lock as a semaphore). Nothing was changed; ask as the
    /// current users do, or use another resource name.
    #[error("conflict on `{resource}`: {reason}")]
    Conflict {
        /// The resource asked for.
        resource: String,
        /// What it is in use as, and what was asked.
        reason: String,
    },
    /// A conditional acquire's condition did not hold when the lock could have been granted; nothing is held and
    /// the caller left the queue. Retrying cannot help until the resource's history changes.
    #[error("lock `{resource}` not acquired: the condition ({condition}) does not hold: {reason}")]
    ConditionFailed {
        /// The resource asked for.
        resource: String,
        /// The condition, in words.
        condition: String,
        /// What the backend found instead.
        reason: String,
    },
    /// A configured cap (renewals, total hold time, waiters) was reached.
    #[error("limit reached: {what}")]
    LimitExceeded {
        /// Which limit, in words.
        what: String,
    },
    /// The backend could not be reached or did not answer in time. Retrying later may succeed.
    #[error("backend unavailable at {address}: {reason}")]
    BackendUnavailable {
        /// The address (or URL without secrets) of the backend or node.
        address: String,
        /// What happened (refused, timed out, ...).
        reason: String,
    },
    /// A Redlock majority could not be reached. Retrying later may succeed.
    #[error(
        "quorum unavailable: {reachable} of {total} nodes answered, {needed} needed; unreachable: {unreachable} \
         (first: {reason})"
    )]
    QuorumUnavailable {
        /// Nodes that answered.
        reachable: usize,
        /// All nodes.
        total: usize,
        /// The quorum size.
        needed: usize,
        /// Comma-separated addresses of the nodes that did not answer.
        unreachable: String,
        /// Why the first of them did not.
        reason: String,
    },
    /// The backend does not offer this operation; its capabilities say so.
    #[error("unsupported by the {backend} backend: {what}")]
    Unsupported {
        /// The backend kind.
        backend: &'static str,
        /// What was asked.
        what: String,
    },
    /// The backend answered something warden does not understand (a bug, or a foreign key of another type).
    #[error("unexpected backend reply: {0}")]
    Protocol(String),
    /// The process is shutting down; the request was not served.
    #[error("shutting down: {0}")]
    ShuttingDown(String),
    /// A warden server answered, but it cannot reach its own backend (the `http://` backend reports this).
    #[error("the warden server at {server} cannot reach its backend: {reason}")]
    ServerBackendUnavailable {
        /// The warden server.
        server: String,
        /// What the server said.
        reason: String,
    },
    /// The server wants a valid API key (none was given, or it is unknown there).
    #[error("not authenticated by {address}: {reason}")]
    Unauthorized {
        /// The server.
        address: String,
        /// What the server said.
        reason: String,
    },
    /// The API key is valid but its principal may not do this (namespace or role).
    #[error("forbidden by {address}: {reason}")]
    Forbidden {
        /// The server.
        address: String,
        /// What the server said.
        reason: String,
    },
}

impl Error {
    /// Whether retrying the same call later can help.
    ///
    /// ```
    /// let e = warden::Error::InvalidArgument { field: "ttl", reason: "must be at least 10ms".into() };
    /// assert!(!e.is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Timeout { .. }
                | Error::BackendUnavailable { .. }
                | Error::ServerBackendUnavailable { .. }
                | Error::QuorumUnavailable { .. }
                | Error::ShuttingDown(_)
        )
    }

    /// The conflict of a request for `want` permits (0: a lock) on a resource in use with `have` (0: as a lock).
    pub(crate) fn permits_conflict(resource: &str, have: u32, want: u32) -> Self {
        let asked = match want {
            0 => "this request asks for a lock".to_string(),
            n => format!("this request asks for a semaphore with {n} permits"),
        };
        let reason = match have {
            0 => format!("it is in use as a lock and {asked}; ask for a lock, or use another resource name"),
            n => format!("it is in use as a semaphore with {n} permits and {asked}; ask with permits = {n}, or use another resource name"),
        };
        Error::Conflict {
            resource: resource.to_string(),
            reason,
        }
    }

    pub(crate) fn condition_failed(resource: &str, condition: &crate::types::Condition, reason: &str) -> Self {
        Error::ConditionFailed {
            resource: resource.to_string(),
            condition: condition.describe(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

/// Shorthand for `Result<T, warden::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// ` on `resource`` when the resource is known (a warden server does not say which it was).
fn on_resource(resource: &str) -> String {
    if resource.is_empty() {
        String::new()
    } else {
        format!(" on `{resource}`")
    }
}
