//! Leases on the wire: the bodies of acquire, release, renew and force-release, and the Lock object.

use super::{parse_rfc3339, rfc3339};
use crate::types::{Condition, LeaseInfo, LockKind};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Body of `POST /api/locks/acquire` and of the type shortcuts.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AcquireBody {
    /// 1..=512 bytes of UTF-8, no control characters.
    pub resource: String,
    /// `exclusive` (default), `shared`, `read-write` (then `mode` is required), `semaphore` (then `permits` is
    /// required) or `intent` (an intention of multi-granularity locking; then `mode` is required).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub lock_type: Option<String>,
    /// `read` or `write`, for `type: read-write`; `shared` or `exclusive`, for `type: intent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// For `type: semaphore`: the resource's number of permits, 1..=1000 (up to that many holders at once). The
    /// first holder or waiter fixes it while the resource is in use; another count is refused with `conflict`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permits: Option<u32>,
    /// Lease length in ms: 10..=86400000, default 30000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
    /// How long to wait in ms: 0 = try once, max 600000, default 5000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_timeout: Option<u64>,
    /// Who asks: 1..=256 bytes.
    pub client_id: String,
    /// Most renewals allowed for this lease (an addition; default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_renewals: Option<u32>,
    /// Longest total hold time in ms, renewals included (an addition; 10..=86400000, default unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_hold: Option<u64>,
    /// Granted only if the resource's last fencing token is still this one: nobody held it since the lease that
    /// received it (an addition). Otherwise 412 `condition_failed`. At most one condition per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_fencing_token: Option<u64>,
    /// Granted only if nobody was granted the resource in the last this many ms (an addition; 1..=86400000, at
    /// most the backend's retention). Otherwise 412 `condition_failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub if_not_granted_within: Option<u64>,
    /// The waiter's priority, -100..=100 (an addition; default 0, plain FIFO): higher priorities are granted
    /// first, FIFO within one; a waiter queues as if it had arrived priority × 100 ms earlier, so it is overtaken
    /// only by higher-priority waiters arriving within the difference × 100 ms after it. 400 on a backend
    /// without priorities (`capabilities.priorities`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

impl AcquireBody {
    /// The condition the body asks for; naming both is an error on `ifNotGrantedWithin`.
    ///
    /// ```
    /// let mut b: warden::wire::AcquireBody =
    ///     serde_json::from_str(r#"{"resource":"r","clientId":"c","ifFencingToken":7}"#).unwrap();
    /// assert_eq!(b.condition(), Ok(Some(warden::Condition::FencingToken(7))));
    /// b.if_not_granted_within = Some(1000);
    /// assert!(b.condition().is_err());
    /// ```
    pub fn condition(&self) -> crate::Result<Option<Condition>> {
        match (self.if_fencing_token, self.if_not_granted_within) {
            (Some(_), Some(_)) => Err(crate::Error::invalid(
                "ifNotGrantedWithin",
                "give one condition: ifFencingToken or ifNotGrantedWithin, not both",
            )),
            (Some(t), None) => Ok(Some(Condition::FencingToken(t))),
            (None, Some(ms)) => Ok(Some(Condition::NotGrantedWithin(Duration::from_millis(ms)))),
            (None, None) => Ok(None),
        }
    }

    /// Sets the condition fields from `condition`.
    pub fn set_condition(&mut self, condition: Option<Condition>) {
        self.if_fencing_token = None;
        self.if_not_granted_within = None;
        match condition {
            Some(Condition::FencingToken(t)) => self.if_fencing_token = Some(t),
            Some(Condition::NotGrantedWithin(d)) => self.if_not_granted_within = Some(d.as_millis() as u64),
            None => {}
        }
    }
}

/// Body of `POST /api/locks/release`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReleaseBody {
    /// The lease's lock id.
    pub lock_id: String,
    /// The client id it was granted to.
    pub client_id: String,
}

/// Body of `POST /api/locks/renew`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RenewBody {
    /// The lease's lock id.
    pub lock_id: String,
    /// The client id it was granted to.
    pub client_id: String,
    /// New lease length from now in ms (default: the lease's ttl).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u64>,
}

/// A lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    /// Unguessable lease id; with clientId it authorises release and renew. The owner's secret: present only in
    /// the answers to its owner's acquire, renew and status, absent from every other view.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lock_id: Option<String>,
    /// Non-secret handle of the lease (`lh_` + 16 hex): shown in every view, authorises nothing but an admin's
    /// force-release (an addition).
    pub lease_handle: String,
    /// The locked resource.
    pub resource: String,
    /// `exclusive`, `shared`, `read-write` or `semaphore`.
    #[serde(rename = "type")]
    pub lock_type: String,
    /// `read` or `write` for read-write leases, `shared` or `exclusive` for intentions (an addition to the v1
    /// shape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// Who holds it.
    pub client_id: String,
    /// RFC 3339 UTC.
    pub acquired_at: String,
    /// RFC 3339 UTC.
    pub expires_at: String,
    /// Lease length in ms.
    pub ttl: u64,
    /// Strictly increasing per resource; hand it to the protected resource.
    pub fencing_token: u64,
    /// Renewals so far.
    pub renewal_count: u32,
}

/// A lease plus whether it has expired.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    /// The lease.
    #[serde(flatten)]
    pub lock: Lock,
    /// Whether its expiry has passed.
    pub is_expired: bool,
}

impl Lock {
    /// The lease as its owner sees it: with its lock id.
    pub fn owned(l: &LeaseInfo) -> Self {
        Lock {
            lock_id: (!l.lock_id.is_empty()).then(|| l.lock_id.clone()),
            ..Lock::seen(l)
        }
    }

    /// The lease as anyone else sees it: by its handle, without the lock id.
    pub fn seen(l: &LeaseInfo) -> Self {
        let (t, mode) = l.kind.to_wire();
        Lock {
            lock_id: None,
            lease_handle: l.lease_handle.clone(),
            resource: l.resource.clone(),
            lock_type: t.into(),
            mode: mode.map(Into::into),
            client_id: l.client_id.clone(),
            acquired_at: rfc3339(l.acquired_at),
            expires_at: rfc3339(l.expires_at),
            ttl: l.ttl.as_millis() as u64,
            fencing_token: l.fencing_token,
            renewal_count: l.renewal_count,
        }
    }

    /// Back to the library's lease; `expired` as the sender said (else from the expiry time). Names the field
    /// the sender got wrong.
    pub fn to_lease(&self, expired: Option<bool>) -> Result<LeaseInfo, String> {
        let kind = LockKind::from_wire(Some(&self.lock_type), self.mode.as_deref())?;
        let time = |what: &str, s: &str| parse_rfc3339(s).ok_or_else(|| format!("`{what}` is not RFC 3339: {s}"));
        let expires_at = time("expiresAt", &self.expires_at)?;
        let lock_id = self.lock_id.clone().unwrap_or_default();
        Ok(LeaseInfo {
            lease_handle: if self.lease_handle.is_empty() && !lock_id.is_empty() {
                crate::lease_handle(&lock_id)
            } else {
                self.lease_handle.clone()
            },
            lock_id,
            resource: self.resource.clone(),
            kind,
            client_id: self.client_id.clone(),
            acquired_at: time("acquiredAt", &self.acquired_at)?,
            expires_at,
            ttl: Duration::from_millis(self.ttl),
            fencing_token: self.fencing_token,
            renewal_count: self.renewal_count,
            expired: expired.unwrap_or(expires_at <= SystemTime::now()),
        })
    }
}

impl LockStatus {
    /// The status answered to whoever presented the lock id.
    pub fn owned(l: &LeaseInfo) -> Self {
        LockStatus {
            is_expired: l.expired || l.expires_at <= SystemTime::now(),
            lock: Lock::owned(l),
        }
    }
}

/// Body of `POST /api/locks/force-release` (an addition; role admin).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ForceReleaseBody {
    /// The resource whose leases end.
    pub resource: String,
    /// Only this lease (one of several shared holders); default: every holder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_handle: Option<String>,
    /// Why (1..=512 bytes): kept in the audit trail.
    pub reason: String,
}

/// What a force-release ended.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ForceReleased {
    /// The leases ended, by handle.
    pub released: Vec<Lock>,
    /// The reason given.
    pub reason: String,
}
