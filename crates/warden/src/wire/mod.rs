//! The REST API's messages, shared by the server (`warden serve`) and the `http://` backend: one type per
//! request, response and error, so both sides agree by construction. Errors carry their code and field as data.
//!
//! ```
//! use warden::wire::{ErrorBody, ErrorCode};
//! let e: ErrorBody = serde_json::from_str(
//!     r#"{"success":false,"error":"`ttl` must be 10..=86400000 ms","code":"invalid_request","field":"ttl"}"#,
//! ).unwrap();
//! assert_eq!((e.code, e.field.as_deref()), (ErrorCode::InvalidRequest, Some("ttl")));
//! ```

mod error;
mod lock;
mod views;

pub use error::{ErrorBody, ErrorCode};
pub use lock::{AcquireBody, ForceReleaseBody, ForceReleased, Lock, LockStatus, ReleaseBody, RenewBody};
pub use views::{
    CapabilitiesDto, HealthDto, Liveness, LockTypes, NodeDto, QueueDto, QueueEntryDto, StatsDto, TopResource,
};

use std::time::SystemTime;

/// `{"success": true, "data": ...}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Success<T> {
    /// Always true.
    pub success: bool,
    /// The payload.
    pub data: T,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let dt = dt.replace_nanosecond(dt.millisecond() as u32 * 1_000_000).unwrap_or(dt);
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}
