//! The JSON shapes of the REST API (shared/API.md), with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use std::time::SystemTime;
use utoipa::ToSchema;
use warden::LeaseInfo;

/// Body of `POST /api/locks/acquire` and of the type shortcuts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AcquireBody {
    /// 1..=512 bytes of UTF-8, no control characters.
    pub resource: String,
    /// `exclusive` (default), `shared` or `read-write` (then `mode` is required).
    #[serde(rename = "type")]
    pub lock_type: Option<String>,
    /// `read` or `write`, for `type: read-write`.
    pub mode: Option<String>,
    /// Lease length in ms: 10..=86400000, default 30000.
    pub ttl: Option<u64>,
    /// How long to wait in ms: 0 = try once, max 600000, default 5000.
    pub wait_timeout: Option<u64>,
    /// Who asks: 1..=256 bytes.
    pub client_id: String,
    /// Most renewals allowed for this lease (an addition; default unlimited).
    pub max_renewals: Option<u32>,
    /// Longest total hold time in ms, renewals included (an addition; 10..=86400000, default unlimited).
    pub max_hold: Option<u64>,
}

/// Body of `POST /api/locks/release`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReleaseBody {
    /// The lease's lock id.
    pub lock_id: String,
    /// The client id it was granted to.
    pub client_id: String,
}

/// Body of `POST /api/locks/renew`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RenewBody {
    /// The lease's lock id.
    pub lock_id: String,
    /// The client id it was granted to.
    pub client_id: String,
    /// New lease length from now in ms (default: the lease's ttl).
    pub ttl: Option<u64>,
}

/// A lease.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
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
    /// `exclusive`, `shared` or `read-write`.
    #[serde(rename = "type")]
    pub lock_type: String,
    /// `read` or `write` for read-write leases (an addition to the v1 shape).
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
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LockStatus {
    /// The lease.
    #[serde(flatten)]
    pub lock: Lock,
    /// Whether its expiry has passed.
    pub is_expired: bool,
}

/// RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let dt = time::OffsetDateTime::from(t);
    let dt = dt.replace_nanosecond(dt.millisecond() as u32 * 1_000_000).unwrap_or(dt);
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
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

impl From<&warden::ResourceInfo> for QueueDto {
    fn from(info: &warden::ResourceInfo) -> Self {
        let queue: Vec<QueueEntryDto> = info
            .queue
            .iter()
            .map(|w| {
                let (t, mode) = w.kind.to_wire();
                QueueEntryDto {
                    client_id: w.client_id.clone(),
                    lock_type: t.into(),
                    mode: mode.map(Into::into),
                    ttl: w.ttl.as_millis() as u64,
                }
            })
            .collect();
        QueueDto {
            waiting_clients: queue.len() as u64,
            queue,
            holders: info.holders.iter().map(Lock::seen).collect(),
            foreign_holder: info.foreign_holder,
        }
    }
}

/// Currently held leases by type.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, Default)]
pub struct LockTypes {
    /// Exclusive leases held now.
    pub exclusive: u64,
    /// Shared leases held now.
    pub shared: u64,
    /// Read-write leases (either mode) held now.
    #[serde(rename = "read-write")]
    pub read_write: u64,
}

/// One of the most-granted resources.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TopResource {
    /// The resource.
    pub resource: String,
    /// Grants ever made on it.
    pub locks: u64,
}

/// Cluster-wide statistics.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct StatsDto {
    /// Grants ever made.
    pub total_locks: u64,
    /// Leases held now.
    pub active_locks: u64,
    /// Leases that ended by expiry.
    pub expired_locks: u64,
    /// Mean hold time in ms over ended leases.
    pub average_hold_time: u64,
    /// Held leases by type.
    pub lock_types: LockTypes,
    /// Most-granted resources.
    pub top_resources: Vec<TopResource>,
}

impl From<warden::Stats> for StatsDto {
    fn from(s: warden::Stats) -> Self {
        StatsDto {
            total_locks: s.total_locks,
            active_locks: s.active_locks,
            expired_locks: s.expired_locks,
            average_hold_time: s.average_hold_time_ms,
            lock_types: LockTypes {
                exclusive: s.active_exclusive,
                shared: s.active_shared,
                read_write: s.active_read_write,
            },
            top_resources: s
                .top_resources
                .into_iter()
                .map(|(resource, locks)| TopResource { resource, locks })
                .collect(),
        }
    }
}

/// One backend node.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeDto {
    /// Address (no secrets).
    pub address: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Round-trip time of the probe in ms.
    pub latency_ms: Option<f64>,
    /// Why it did not answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Backend health.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthDto {
    /// `healthy`, `degraded` or `unhealthy`.
    pub status: String,
    /// Backend kind: memory, redis, redlock, http.
    pub backend: String,
    /// Every node.
    pub nodes: Vec<NodeDto>,
    /// Whether a quorum is reachable (Redlock), else null.
    pub quorum: Option<bool>,
    /// Waiters parked on this instance now.
    pub waiters: u64,
    /// What the backend promises (an addition).
    pub capabilities: CapabilitiesDto,
}

/// What the backend promises.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesDto {
    /// Shared (read) locks.
    pub shared: bool,
    /// `strict` or `best-effort`.
    pub fifo: String,
    /// Waiters woken by notifications.
    pub notifications: bool,
    /// Fencing tokens strictly increase per resource.
    pub fencing: bool,
    /// Fencing tokens keep increasing after the backend lost its data.
    pub fencing_survives_data_loss: bool,
    /// Several processes (server instances) can share the backend.
    pub shared_across_processes: bool,
}

impl From<warden::Capabilities> for CapabilitiesDto {
    fn from(c: warden::Capabilities) -> Self {
        CapabilitiesDto {
            shared: c.shared,
            fifo: match c.fifo {
                warden::FifoGuarantee::Strict => "strict".into(),
                _ => "best-effort".into(),
            },
            notifications: c.notifications,
            fencing: c.fencing,
            fencing_survives_data_loss: c.fencing_survives_data_loss,
            shared_across_processes: c.shared_across_processes,
        }
    }
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Liveness {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// Leases held now.
    pub active_locks: u64,
    /// Grants ever made.
    pub total_locks: u64,
}

/// One waiter.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueEntryDto {
    /// Who waits.
    pub client_id: String,
    /// `exclusive`, `shared` or `read-write`.
    #[serde(rename = "type")]
    pub lock_type: String,
    /// `read` or `write` for read-write waiters (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The ttl it asked for, ms.
    pub ttl: u64,
}

/// The waiters of a resource, in grant order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueueDto {
    /// How many wait.
    pub waiting_clients: u64,
    /// In grant order.
    pub queue: Vec<QueueEntryDto>,
    /// Who holds the resource now (an addition).
    pub holders: Vec<Lock>,
    /// Whether a non-warden client holds the key (e.g. a redis-py `Lock`), an addition.
    pub foreign_holder: bool,
}

macro_rules! envelope {
    ($name:ident, $t:ty, $doc:literal) => {
        #[doc = $doc]
        #[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
        pub struct $name {
            /// Always true.
            pub success: bool,
            /// The payload.
            pub data: $t,
        }
    };
}
envelope!(LockEnvelope, Lock, "`{success, data: Lock}`");
envelope!(LockStatusEnvelope, LockStatus, "`{success, data: LockStatus}`");
envelope!(LockListEnvelope, Vec<Lock>, "`{success, data: [Lock]}`");
envelope!(StatsEnvelope, StatsDto, "`{success, data: Stats}`");
envelope!(HealthEnvelope, HealthDto, "`{success, data: Health}`");
envelope!(QueueEnvelope, QueueDto, "`{success, data: Queue}`");

/// `{success: true, message}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageEnvelope {
    /// Always true.
    pub success: bool,
    /// What happened.
    pub message: String,
}

/// `{success: false, error, code}`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always false.
    pub success: bool,
    /// A sentence naming what was wrong.
    pub error: String,
    /// Machine code: invalid_request, not_found, lock_timeout, not_owner, lease_lost, renewal_capped,
    /// too_many_waiters, request_timeout, backend_unavailable, shutting_down, unauthorized, forbidden,
    /// rate_limited.
    pub code: String,
}

/// Body of `POST /api/locks/force-release` (an addition; role admin).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForceReleaseBody {
    /// The resource whose leases end.
    pub resource: String,
    /// Only this lease (one of several shared holders); default: every holder.
    pub lease_handle: Option<String>,
    /// Why (1..=512 bytes): kept in the audit trail.
    pub reason: String,
}

/// What a force-release ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForceReleased {
    /// The leases ended, by handle.
    pub released: Vec<Lock>,
    /// The reason given.
    pub reason: String,
}
envelope!(ForceReleasedEnvelope, ForceReleased, "`{success, data: ForceReleased}`");
