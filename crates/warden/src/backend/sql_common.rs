//! What the SQL backends (`postgres://`, `mysql://`) share: their URL options' checks, times on the database's
//! clock, the lease record they store, how a refused release or renewal reads, and their tasks' guard.

use crate::error::{Error, Result};
use crate::types::{LeaseInfo, LockKind};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A number option of a backend URL within `range`.
pub(crate) fn ranged(name: &'static str, v: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64> {
    v.parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| Error::invalid(name, format!("must be {}..={}, got `{v}`", range.start(), range.end())))
}

/// A table prefix: it is spliced into SQL, so only lowercase letters, digits and `_`, starting with a letter.
pub(crate) fn valid_prefix(v: &str) -> Result<String> {
    let ok = !v.is_empty()
        && v.len() <= 32
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(v.to_string())
    } else {
        Err(Error::invalid(
            "prefix",
            format!("must be 1..=32 lowercase letters, digits or `_`, starting with a letter, got `{v}`"),
        ))
    }
}

/// Microseconds since the epoch (the database clock) as a time.
pub(crate) fn at(us: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(us.max(0) as u64)
}

/// Whole milliseconds, as the SQL backends store durations.
pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis().min(i64::MAX as u128) as i64
}

/// A lease as the SQL backends store it: `times` are acquired (µs), expires (µs), ttl (ms) and fence.
pub(crate) fn lease(
    lock_id: String,
    resource: String,
    kind_name: &str,
    client_id: String,
    times: [i64; 4],
    renewals: i32,
    expired: bool,
) -> Result<LeaseInfo> {
    let [acquired, expires, ttl_ms, fence] = times;
    Ok(LeaseInfo {
        lease_handle: crate::lease_handle(&lock_id),
        lock_id,
        resource,
        kind: kind(kind_name)?,
        client_id,
        acquired_at: at(acquired),
        expires_at: at(expires),
        ttl: Duration::from_millis(ttl_ms.max(0) as u64),
        fencing_token: fence as u64,
        renewal_count: renewals.max(0) as u32,
        expired,
    })
}

/// Parses a kind stored by a SQL backend.
pub(crate) fn kind(s: &str) -> Result<LockKind> {
    LockKind::parse(s).ok_or_else(|| Error::Protocol(format!("unknown lock kind `{s}` in the leases table")))
}

/// The error for a release or renewal a SQL backend refused with `status`; `None` for a status that is no
/// refusal.
pub(crate) fn refusal(status: &str, lock_id: &str, client: Option<&str>, resource: Option<String>) -> Option<Error> {
    let lock_id = lock_id.to_string();
    Some(match status {
        "not_found" => Error::NotFound { lock_id },
        "not_owner" => Error::NotOwner {
            lock_id,
            client_id: client.unwrap_or_default().to_string(),
        },
        "lost" => Error::LeaseLost {
            lock_id,
            resource: resource.unwrap_or_default(),
        },
        _ => return None,
    })
}

/// The database is unreachable (or did not answer in time): retryable.
pub(crate) fn unavailable(address: &str, reason: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

/// Aborts a task when dropped.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A stable 32-bit hash of a resource name (FNV-1a): the order in which a batch takes resources.
pub(crate) fn resource_hash(resource: &str) -> u32 {
    resource
        .bytes()
        .fold(0x811c_9dc5_u32, |h, b| (h ^ u32::from(b)).wrapping_mul(0x0100_0193))
}

/// The resource hash a lock id made by this backend ends with (0 for another shape).
pub(crate) fn lock_hash(lock_id: &str) -> u32 {
    lock_id
        .rsplit_once('-')
        .and_then(|(_, h)| u32::from_str_radix(h, 16).ok())
        .unwrap_or(0)
}
