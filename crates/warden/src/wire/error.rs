//! The failure envelope and its machine codes.

use serde::{Deserialize, Serialize};

/// The machine code of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// 400 (413 for a body over the limit): malformed JSON, a missing or out-of-range field.
    InvalidRequest,
    /// 401: auth is on and the key is missing or unknown.
    Unauthorized,
    /// 403: the key's role or namespaces do not allow the call.
    Forbidden,
    /// 404: unknown lock id (or no live lease matches a force-release).
    NotFound,
    /// 408: the request body arrived too slowly.
    RequestTimeout,
    /// 409: not acquired before `waitTimeout` ran out.
    LockTimeout,
    /// 409: release or renew by someone who does not hold the lease.
    NotOwner,
    /// 409: the lease has ended.
    LeaseLost,
    /// 409: a renewal or hold-time cap forbids extending.
    RenewalCapped,
    /// 409: the resource is in use in a way the request does not match (a semaphore with another permit count,
    /// or a semaphore asked for as a lock, or the reverse); `error` says how it is in use.
    Conflict,
    /// 412: a conditional acquire's condition does not hold; `error` says what the resource's history shows.
    ConditionFailed,
    /// 429: this instance's waiter caps are reached.
    TooManyWaiters,
    /// 429: the principal is over its request rate.
    RateLimited,
    /// 503: the backend (or a Redlock quorum) cannot be reached.
    BackendUnavailable,
    /// 503: the server is shutting down.
    ShuttingDown,
    /// 500: a bug.
    Internal,
    /// A code this version does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The code as it appears on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::LockTimeout => "lock_timeout",
            ErrorCode::NotOwner => "not_owner",
            ErrorCode::LeaseLost => "lease_lost",
            ErrorCode::RenewalCapped => "renewal_capped",
            ErrorCode::Conflict => "conflict",
            ErrorCode::ConditionFailed => "condition_failed",
            ErrorCode::TooManyWaiters => "too_many_waiters",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::BackendUnavailable => "backend_unavailable",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"success": false, "error": "<sentence>", "code": "<code>", "field"?: "<field>"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    /// Always false.
    pub success: bool,
    /// A sentence naming what was wrong and what to do.
    pub error: String,
    /// The machine code.
    pub code: ErrorCode,
    /// The request field that was wrong, for `invalid_request` (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
