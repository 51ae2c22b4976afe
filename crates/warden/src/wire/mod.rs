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

/// RFC 3339 UTC with milliseconds, always three digits (`2026-12-01T10:00:00.000Z`).
pub fn rfc3339(t: SystemTime) -> String {
    const FORMAT: &[time::format_description::FormatItem<'static>] =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from(t)
        .format(FORMAT)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Parses an RFC 3339 timestamp.
pub fn parse_rfc3339(s: &str) -> Option<SystemTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    #[test]
    fn timestamps_always_carry_milliseconds() {
        let whole = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
        assert_eq!(super::rfc3339(whole), "2027-01-15T08:00:00.000Z");
        let odd = whole + std::time::Duration::from_micros(1_234_567);
        assert_eq!(super::rfc3339(odd), "2027-01-15T08:00:01.234Z");
        assert_eq!(
            super::parse_rfc3339(&super::rfc3339(odd)),
            Some(whole + std::time::Duration::from_millis(1234))
        );
    }
}
