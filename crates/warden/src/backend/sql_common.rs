//! What the SQL backends (`postgres://`, `mysql://`) share: their URL options' checks, times on the database's
//! clock, the lease record they store, how a refused release or renewal reads, and their tasks' guard.

use crate::error::{Error, Result};
use crate::types::{AcquireRequest, Attempt, Grant, LeaseInfo, LockKind, Released, Renewal};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Most waiters queued on one resource.
pub const MAX_WAITERS_PER_RESOURCE: i32 = 10_000;

/// What a SQL backend's lease operation answers: one row of the same columns for every operation, each setting
/// the fields its status reads.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub status: String,
    pub resource: Option<String>,
    pub kind: Option<String>,
    pub client: Option<String>,
    pub fence: Option<i64>,
    pub now_us: Option<i64>,
    pub expires_us: Option<i64>,
    pub remaining_us: Option<i64>,
    pub retry_us: Option<i64>,
    pub held_us: Option<i64>,
    pub acquired_us: Option<i64>,
    pub ttl_ms: Option<i64>,
    pub renewals: Option<i32>,
    /// What waiters were told (see `WakeRouter::deliver`): the calling process delivers it to its own.
    pub told: Option<String>,
    /// MySQL: the bells (listening connections) of the other processes told something.
    pub bells: Option<String>,
}

impl Reply {
    /// An acquire attempt's answer: 'granted', 'queued', 'full' or 'conflict' (kind: the resource's usage). `unexpected` names a reply that is none.
    pub(crate) fn attempt(&self, req: &AcquireRequest, unexpected: impl Fn(&str) -> Error) -> Result<Attempt> {
        let missing = || unexpected("a grant without its times");
        match self.status.as_str() {
            "granted" => {
                let now = self.now_us.ok_or_else(missing)?;
                let expires = self.expires_us.ok_or_else(missing)?;
                let mut grant = Grant::new(self.fence.ok_or_else(missing)? as u64, at(now), at(expires));
                if let Some(left) = self.remaining_us {
                    grant = grant.found_with(Duration::from_micros(left.max(0) as u64));
                }
                Ok(Attempt::Granted(grant))
            }
            "queued" => Ok(Attempt::NotGranted {
                retry_in: self.retry_us.map(|us| Duration::from_micros(us.max(0) as u64)),
                // In whole milliseconds, as a handover's grant is dated: one made after this answer is never
                // dated before it.
                backend_now: self.now_us.map(|us| at(us - us.rem_euclid(1000))),
            }),
            "conflict" => Err(Error::permits_conflict(
                &req.resource,
                crate::types::stored_permits(self.kind.as_deref().unwrap_or("lock")),
                req.permits,
            )),
            "condition" => {
                let (last, now) = (self.fence.map(|f| f as u64), self.now_us.unwrap_or(0).max(0) as u64);
                let refused = req.condition.and_then(|c| c.refused(&req.resource, last, now));
                Err(refused.unwrap_or_else(|| unexpected("a condition the grant's own check found to hold")))
            }
            "full" => Err(Error::LimitExceeded {
                what: format!(
                    "{MAX_WAITERS_PER_RESOURCE} waiters already queued on `{}`",
                    req.resource
                ),
            }),
            other => Err(unexpected(other)),
        }
    }

    /// A release's answer: 'released' or a refusal.
    pub(crate) fn released(
        self,
        lock_id: &str,
        client: Option<&str>,
        unexpected: impl Fn(&str) -> Error,
    ) -> Result<Released> {
        match self.status.as_str() {
            "released" => Ok(Released::after(
                self.held_us.map(|h| Duration::from_micros(h.max(0) as u64)),
            )),
            other => Err(refusal(other, lock_id, client, self.resource).unwrap_or_else(|| unexpected(other))),
        }
    }

    /// A renewal's answer: 'renewed' (the lease's new state), 'capped' or a refusal.
    pub(crate) fn renewal(
        self,
        lock_id: &str,
        client: Option<&str>,
        unexpected: impl Fn(&str) -> Error,
    ) -> Result<Renewal> {
        let missing = || unexpected("a row without the lease");
        match self.status.as_str() {
            "renewed" => {
                let (now, expires) = (self.now_us.ok_or_else(missing)?, self.expires_us.ok_or_else(missing)?);
                let lease = lease(
                    lock_id.to_string(),
                    self.resource.ok_or_else(missing)?,
                    self.kind.as_deref().ok_or_else(missing)?,
                    self.client.ok_or_else(missing)?,
                    [
                        self.acquired_us.ok_or_else(missing)?,
                        expires,
                        self.ttl_ms.ok_or_else(missing)?,
                        self.fence.ok_or_else(missing)?,
                    ],
                    self.renewals.ok_or_else(missing)?,
                    false,
                )?;
                Ok(Renewal::Renewed {
                    lease,
                    granted: Duration::from_micros((expires - now).max(0) as u64),
                })
            }
            "capped" => Ok(Renewal::Capped {
                expires_at: at(self.expires_us.ok_or_else(missing)?),
            }),
            other => Err(refusal(other, lock_id, client, self.resource).unwrap_or_else(|| unexpected(other))),
        }
    }
}

/// A database's health: one node, reachable if `answer` (a trivial query, which took `took`) succeeded.
pub(crate) fn health(kind: &'static str, address: &str, answer: Result<()>, took: Duration) -> crate::types::Health {
    use crate::types::{Health, HealthStatus, NodeHealth};
    let node = match answer {
        Ok(()) => NodeHealth::new(address.to_string(), true, Some(took.as_secs_f64() * 1000.0), None),
        Err(e) => NodeHealth::new(address.to_string(), false, None, Some(e.to_string())),
    };
    let status = if node.reachable {
        HealthStatus::Healthy
    } else {
        HealthStatus::Unhealthy
    };
    Health::new(kind, status, vec![node], None)
}

/// A number option of a backend URL within `range`.
pub(crate) use crate::validate::url_number as ranged;

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
    crate::types::parse_kind(s).ok_or_else(|| Error::Protocol(format!("unknown lock kind `{s}` in the leases table")))
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

pub(crate) use super::AbortOnDrop;

/// A group commit lane's next batch: the next operation, then, after one turn of the scheduler, everything
/// queued meanwhile, up to `max`; `None` once the senders are gone. The turn lets the tasks the lane's last
/// answer woke (a holder handed the lock, a worker about to queue again) put their operations in this batch
/// rather than the next transaction. No timer: nothing waits longer than the tasks already runnable take to run.
pub(crate) async fn next_batch<T>(rx: &mut tokio::sync::mpsc::UnboundedReceiver<T>, max: usize) -> Option<Vec<T>> {
    let first = rx.recv().await?;
    tokio::task::yield_now().await;
    let mut jobs = vec![first];
    while jobs.len() < max {
        match rx.try_recv() {
            Ok(j) => jobs.push(j),
            Err(_) => break,
        }
    }
    Some(jobs)
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
