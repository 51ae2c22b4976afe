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

mod analytics;
mod error;
mod group;
mod lock;
mod views;
mod watch;

pub use analytics::{AnalyticsDto, PercentilesDto, ResourceAnalyticsDto};
pub use error::{ErrorBody, ErrorCode};
pub use group::{Group, GroupAcquireBody, GroupMember, GroupReleaseBody, GroupRenewBody, PathAcquireBody};
pub use lock::{AcquireBody, ForceReleaseBody, ForceReleased, Lock, LockStatus, ReleaseBody, RenewBody};
pub use views::{
    CapabilitiesDto, HealthDto, Liveness, LockTypes, NodeDto, QueueDto, QueueEntryDto, StatsDto, TopResource,
};
pub use watch::change as watch_change;

use std::time::SystemTime;

/// `{"success": true, "data": ...}`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Success<T> {
    /// Always true.
    pub success: bool,
    /// The payload.
    pub data: T,
}

/// `{"success": true, "data": [...], "nextOffset": n}`: one page of a list view (`held`, a queue); `nextOffset`,
/// absent on the last page, is the `offset` that asks for the next.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    /// Always true.
    pub success: bool,
    /// This page's items.
    pub data: Vec<T>,
    /// Where the next page starts, if there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

/// Items on a page of a list view unless `limit` says otherwise.
pub const DEFAULT_PAGE: usize = 1_000;
/// The most items a page may hold (`limit`).
pub const MAX_PAGE: usize = 10_000;

impl<T> Page<T> {
    /// The page of `all` from `offset`, at most `limit` items.
    pub fn of(all: Vec<T>, offset: usize, limit: usize) -> Self {
        let (data, next_offset) = slice(all, offset, limit);
        Page {
            success: true,
            data,
            next_offset,
        }
    }
}

/// `all[offset..offset + limit]`, and where the next slice starts if any is left.
pub fn slice<T>(all: Vec<T>, offset: usize, limit: usize) -> (Vec<T>, Option<usize>) {
    let total = all.len();
    let end = offset.saturating_add(limit).min(total);
    let data: Vec<T> = all.into_iter().skip(offset).take(limit).collect();
    (data, (end < total).then_some(end))
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
