//! Operator views on the wire: stats, health, queue, liveness, and their conversions from and to the
//! library's types.

use super::lock::Lock;
use crate::types::{Capabilities, FifoGuarantee, LockKind, QueueEntry, ResourceInfo, Stats};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Currently held leases by type.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopResource {
    /// The resource.
    pub resource: String,
    /// Grants ever made on it.
    pub locks: u64,
}

/// Cluster-wide statistics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

impl From<Stats> for StatsDto {
    fn from(s: Stats) -> Self {
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

impl From<StatsDto> for Stats {
    fn from(d: StatsDto) -> Self {
        Stats {
            total_locks: d.total_locks,
            active_locks: d.active_locks,
            expired_locks: d.expired_locks,
            average_hold_time_ms: d.average_hold_time,
            active_exclusive: d.lock_types.exclusive,
            active_shared: d.lock_types.shared,
            active_read_write: d.lock_types.read_write,
            top_resources: d.top_resources.into_iter().map(|t| (t.resource, t.locks)).collect(),
        }
    }
}

/// One backend node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct CapabilitiesDto {
    /// Shared (read) locks.
    pub shared: bool,
    /// Semaphores (`type: semaphore` with `permits`); absent from older servers.
    #[serde(default)]
    pub semaphores: bool,
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
    /// Conditional acquires (`ifFencingToken`, `ifNotGrantedWithin`); absent from older servers.
    #[serde(default)]
    pub conditions: bool,
    /// Waiter priorities (`priority`); absent from older servers.
    #[serde(default)]
    pub priorities: bool,
    /// Intention kinds (`type: intent`) and so path locks (`/api/paths`); absent from older servers.
    #[serde(default)]
    pub intentions: bool,
}

impl From<Capabilities> for CapabilitiesDto {
    fn from(c: Capabilities) -> Self {
        CapabilitiesDto {
            shared: c.shared,
            semaphores: c.semaphores,
            fifo: match c.fifo {
                FifoGuarantee::Strict => "strict".into(),
                _ => "best-effort".into(),
            },
            notifications: c.notifications,
            fencing: c.fencing,
            fencing_survives_data_loss: c.fencing_survives_data_loss,
            shared_across_processes: c.shared_across_processes,
            conditions: c.conditions,
            priorities: c.priorities,
            intentions: c.intentions,
        }
    }
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct QueueEntryDto {
    /// Who waits.
    pub client_id: String,
    /// `exclusive`, `shared`, `read-write` or `semaphore`.
    #[serde(rename = "type")]
    pub lock_type: String,
    /// `read` or `write` for read-write waiters (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// The ttl it asked for, ms.
    pub ttl: u64,
}

/// The waiters of a resource, in grant order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct QueueDto {
    /// How many wait.
    pub waiting_clients: u64,
    /// In grant order.
    pub queue: Vec<QueueEntryDto>,
    /// Who holds the resource now, by lease handle (an addition).
    #[serde(default)]
    pub holders: Vec<Lock>,
    /// Whether a non-warden client holds the key (e.g. a redis-py `Lock`), an addition.
    #[serde(default)]
    pub foreign_holder: bool,
    /// When `queue` is one page of a longer queue: the `offset` of the next page (an addition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_offset: Option<usize>,
}

impl From<&ResourceInfo> for QueueDto {
    fn from(info: &ResourceInfo) -> Self {
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
            next_offset: None,
        }
    }
}

impl QueueDto {
    /// This view with only the waiters from `offset`, at most `limit` of them (`waitingClients` stays the whole
    /// queue's length).
    pub fn page(mut self, offset: usize, limit: usize) -> Self {
        let (queue, next) = super::slice(std::mem::take(&mut self.queue), offset, limit);
        self.queue = queue;
        self.next_offset = next;
        self
    }

    /// Back to the library's view (waiter ids, which the wire does not carry, become their positions).
    pub fn to_resource_info(&self) -> Result<ResourceInfo, String> {
        let mut info = ResourceInfo {
            foreign_holder: self.foreign_holder,
            ..ResourceInfo::default()
        };
        for h in &self.holders {
            info.holders.push(h.to_lease(None)?);
        }
        for (i, w) in self.queue.iter().enumerate() {
            info.queue.push(QueueEntry {
                waiter_id: format!("#{i}"),
                client_id: w.client_id.clone(),
                kind: LockKind::from_wire(Some(&w.lock_type), w.mode.as_deref())?,
                ttl: Duration::from_millis(w.ttl),
            });
        }
        Ok(info)
    }
}
