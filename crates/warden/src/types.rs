//! Plain data exchanged between the lock API, the backends and the service.

pub use crate::condition::Condition;
use std::time::{Duration, SystemTime};

/// The kind of lock asked for. `Read`/`Write` are the two halves of a read-write lock and behave like
/// `Shared`/`Exclusive`; they are kept apart only so statistics can report them as `read-write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum LockKind {
    /// Excludes every other holder.
    Exclusive,
    /// Coexists with other shared holders.
    Shared,
    /// The read side of a read-write lock (shared).
    Read,
    /// The write side of a read-write lock (exclusive).
    Write,
    /// One of a semaphore's permits: up to [`AcquireRequest::permits`] holders at once, each with its own
    /// lease, lock id and fencing token.
    Semaphore,
    /// Intention to lock something below this resource shared (multi-granularity locking, IS): coexists with
    /// every kind but exclusive and write. Taken on the ancestors of a shared path lock ([`crate::Warden::path`]).
    IntentShared,
    /// Intention to lock something below this resource exclusively (IX): coexists with intentions only. Taken
    /// on the ancestors of an exclusive path lock.
    IntentExclusive,
}

impl LockKind {
    /// Whether this kind excludes every other holder.
    pub fn is_exclusive(self) -> bool {
        matches!(self, LockKind::Exclusive | LockKind::Write)
    }
    /// Whether a holder of this kind and one of `other` may hold one resource at once. Semaphore permits
    /// coexist with each other only; otherwise the matrix of multi-granularity locking, shared and read
    /// being S, exclusive and write X:
    ///
    /// ```
    /// use warden::LockKind::{Exclusive, IntentExclusive, IntentShared, Shared};
    /// assert!(IntentExclusive.compatible_with(IntentExclusive) && IntentShared.compatible_with(Shared));
    /// assert!(!IntentExclusive.compatible_with(Shared) && !IntentShared.compatible_with(Exclusive));
    /// ```
    pub fn compatible_with(self, other: LockKind) -> bool {
        use LockKind::*;
        match (self, other) {
            (Semaphore, o) | (o, Semaphore) => o == Semaphore,
            (Exclusive | Write, _) | (_, Exclusive | Write) => false,
            (IntentShared, _) | (_, IntentShared) => true,
            (IntentExclusive, IntentExclusive) => true,
            (IntentExclusive, _) | (_, IntentExclusive) => false,
            _ => true,
        }
    }
    /// Whether this kind is an intention ([`LockKind::IntentShared`], [`LockKind::IntentExclusive`]).
    pub fn is_intention(self) -> bool {
        matches!(self, LockKind::IntentShared | LockKind::IntentExclusive)
    }
    /// The stable lowercase name used in storage and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            LockKind::Exclusive => "exclusive",
            LockKind::Shared => "shared",
            LockKind::Read => "read",
            LockKind::Write => "write",
            LockKind::Semaphore => "semaphore",
            LockKind::IntentShared => "intent-shared",
            LockKind::IntentExclusive => "intent-exclusive",
        }
    }
    /// The REST API's names for this kind: (`type`, `mode`), e.g. `("read-write", Some("read"))`.
    ///
    /// ```
    /// use warden::LockKind;
    /// assert_eq!(LockKind::Write.to_wire(), ("read-write", Some("write")));
    /// assert_eq!(LockKind::from_wire(Some("read-write"), Some("write")), Ok(LockKind::Write));
    /// assert_eq!(LockKind::from_wire(None, None), Ok(LockKind::Exclusive));
    /// ```
    pub fn to_wire(self) -> (&'static str, Option<&'static str>) {
        match self {
            LockKind::Exclusive => ("exclusive", None),
            LockKind::Shared => ("shared", None),
            LockKind::Read => ("read-write", Some("read")),
            LockKind::Write => ("read-write", Some("write")),
            LockKind::Semaphore => ("semaphore", None),
            LockKind::IntentShared => ("intent", Some("shared")),
            LockKind::IntentExclusive => ("intent", Some("exclusive")),
        }
    }

    /// Parses the REST API's `type` (default `exclusive`) and `mode` (required for `read-write`); the error
    /// is a sentence naming the field.
    pub fn from_wire(lock_type: Option<&str>, mode: Option<&str>) -> Result<Self, String> {
        let shown = |s: &str| s.chars().take(40).collect::<String>();
        match lock_type.unwrap_or("exclusive") {
            "exclusive" => Ok(LockKind::Exclusive),
            "shared" => Ok(LockKind::Shared),
            "semaphore" => Ok(LockKind::Semaphore),
            "read-write" => match mode {
                Some("read") => Ok(LockKind::Read),
                Some("write") => Ok(LockKind::Write),
                Some(other) => Err(format!(
                    "`mode` must be \"read\" or \"write\" for type read-write, got {:?}",
                    shown(other)
                )),
                None => Err("`mode` is required for type read-write: \"read\" or \"write\"".into()),
            },
            "intent" => match mode {
                Some("shared") => Ok(LockKind::IntentShared),
                Some("exclusive") => Ok(LockKind::IntentExclusive),
                Some(other) => Err(format!(
                    "`mode` must be \"shared\" or \"exclusive\" for type intent, got {:?}",
                    shown(other)
                )),
                None => Err("`mode` is required for type intent: \"shared\" or \"exclusive\"".into()),
            },
            other => Err(format!(
                "`type` must be \"exclusive\", \"shared\", \"read-write\", \"semaphore\" or \"intent\", got {:?}",
                shown(other)
            )),
        }
    }

    /// Parses [`LockKind::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "exclusive" => LockKind::Exclusive,
            "shared" => LockKind::Shared,
            "read" => LockKind::Read,
            "write" => LockKind::Write,
            "semaphore" => LockKind::Semaphore,
            "intent-shared" => LockKind::IntentShared,
            "intent-exclusive" => LockKind::IntentExclusive,
            _ => return None,
        })
    }
}

/// One acquire attempt as the lock layer hands it to a backend. Built and validated by
/// [`crate::LockBuilder`]; backends may assume every field is in range.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AcquireRequest {
    /// The resource name.
    pub resource: String,
    /// Exclusive, shared, read or write.
    pub kind: LockKind,
    /// Lease length.
    pub ttl: Duration,
    /// Who asks (free text).
    pub client_id: String,
    /// The lease's secret token, generated by the caller (128 random bits).
    pub lock_id: String,
    /// Refuse renewals after this many.
    pub max_renewals: Option<u32>,
    /// Never extend the lease past `acquired + max_hold`.
    pub max_hold: Option<Duration>,
    /// How long a queued waiter stays in the queue without a heartbeat.
    pub waiter_lease: Duration,
    /// For [`LockKind::Semaphore`]: the resource's number of permits (1..=[`MAX_PERMITS`](crate::validate::MAX_PERMITS)),
    /// fixed by its first holder or waiter while it has any; 0 for every other kind.
    pub permits: u32,
    /// A condition the grant must meet, checked by the backend atomically with it
    /// ([`Capabilities::conditions`]).
    pub condition: Option<Condition>,
    /// The waiter's priority, -100..=100 (0: plain FIFO). A waiter queues as if it had arrived `priority` ×
    /// [`PRIORITY_STEP`](crate::validate::PRIORITY_STEP) earlier ([`Capabilities::priorities`]).
    pub priority: i32,
}

impl AcquireRequest {
    /// A request without caps (for backend tests and tools; [`crate::LockBuilder`] validates its inputs).
    pub fn new(
        resource: &str,
        kind: LockKind,
        ttl: Duration,
        client_id: &str,
        lock_id: &str,
        waiter_lease: Duration,
    ) -> Self {
        AcquireRequest {
            resource: resource.into(),
            kind,
            ttl,
            client_id: client_id.into(),
            lock_id: lock_id.into(),
            max_renewals: None,
            max_hold: None,
            waiter_lease,
            permits: 0,
            condition: None,
            priority: 0,
        }
    }
}

/// The kind as backends store it: its name, and for a semaphore its permits (`semaphore:3`), so that every
/// holder's and waiter's record says how many permits the resource has.
pub(crate) fn stored_kind(req: &AcquireRequest) -> String {
    match req.kind {
        LockKind::Semaphore => format!("semaphore:{}", req.permits),
        k => k.as_str().into(),
    }
}

/// Parses a stored kind (see [`stored_kind`]).
pub(crate) fn parse_kind(s: &str) -> Option<LockKind> {
    LockKind::parse(s.split_once(':').map_or(s, |(k, _)| k))
}

/// The permits of a stored usage (`semaphore:3` → 3; `lock` or a lock's kind → 0).
pub(crate) fn stored_permits(s: &str) -> u32 {
    s.strip_prefix("semaphore:").and_then(|n| n.parse().ok()).unwrap_or(0)
}

/// What a backend answers to one acquire attempt.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Attempt {
    /// The lease was granted.
    Granted(Grant),
    /// Not granted now. If a waiter id was given, it is (still) queued.
    /// `retry_in`: when the current holder's lease ends, if known (wake then even without a notification).
    NotGranted {
        /// Time until the blocking lease expires, if known.
        retry_in: Option<Duration>,
        /// The backend's clock when it answered, from backends that hand a released lock to the head of the
        /// queue: a grant that arrives later with a notification is dated from this answer.
        backend_now: Option<SystemTime>,
    },
}

/// Facts the backend reports about a fresh grant (times are the backend's clock).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Grant {
    /// The fencing token: strictly increasing per resource.
    pub fencing_token: u64,
    /// When the backend granted the lease.
    pub acquired_at: SystemTime,
    /// When the backend will consider the lease expired.
    pub expires_at: SystemTime,
    /// The lease id the backend assigned, when it is not the one requested (a warden server names its
    /// own leases).
    pub lock_id: Option<String>,
    /// Set when the attempt found the lease granted earlier (a retried attempt, or a lock handed to this
    /// waiter by a release): the time the lease had left then. Validity is measured from it, not from the ttl.
    pub remaining: Option<std::time::Duration>,
}

impl Grant {
    /// Builds a grant (for backend implementations).
    pub fn new(fencing_token: u64, acquired_at: SystemTime, expires_at: SystemTime) -> Self {
        Grant {
            fencing_token,
            acquired_at,
            expires_at,
            lock_id: None,
            remaining: None,
        }
    }

    /// The same grant, found made earlier with `remaining` of its lease left (for backend implementations).
    pub fn found_with(mut self, remaining: std::time::Duration) -> Self {
        self.remaining = Some(remaining);
        self
    }
}

/// What a release reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Released {
    /// How long the lease was held (grant to release), when the backend knows it.
    pub held_for: Option<Duration>,
}

impl Released {
    /// A release that held the lease for `held_for`.
    pub fn after(held_for: Option<Duration>) -> Self {
        Released { held_for }
    }
}

/// The result of a successful renewal.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Renewal {
    /// The lease was extended; `lease` is its state after the renewal (new expiry, renewal count, ttl).
    Renewed {
        /// The renewed lease, as the backend now records it.
        lease: LeaseInfo,
        /// The granted extension from now (may be shorter than asked under a hold-time cap).
        granted: Duration,
    },
    /// A cap (max renewals or max hold time) forbids extending; the lease still ends at `expires_at`.
    Capped {
        /// Unchanged expiry.
        expires_at: SystemTime,
    },
}

/// Everything known about one lease.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LeaseInfo {
    /// The lease's secret token. Empty when the lease was read through a view that withholds it: a warden
    /// server shows another client's lease by its [`lease_handle`](Self::lease_handle) only.
    pub lock_id: String,
    /// The lease's non-secret handle ([`crate::lease_handle`] of its lock id): what views, events and logs
    /// show, and what an admin's force-release may name.
    pub lease_handle: String,
    /// The resource.
    pub resource: String,
    /// The kind.
    pub kind: LockKind,
    /// The holder's client id.
    pub client_id: String,
    /// When granted (backend clock).
    pub acquired_at: SystemTime,
    /// When it expires unless renewed (backend clock).
    pub expires_at: SystemTime,
    /// The lease length asked for last.
    pub ttl: Duration,
    /// Its fencing token.
    pub fencing_token: u64,
    /// Renewals so far.
    pub renewal_count: u32,
    /// True if the lease is no longer held (expired or taken away) but not yet forgotten.
    pub expired: bool,
}

impl LeaseInfo {
    /// The lease `grant` made for `req` (for backend implementations; set the other fields as they change).
    pub fn granted(req: &AcquireRequest, grant: &Grant) -> Self {
        let lock_id = grant.lock_id.clone().unwrap_or_else(|| req.lock_id.clone());
        LeaseInfo {
            lease_handle: crate::lease_handle(&lock_id),
            lock_id,
            resource: req.resource.clone(),
            kind: req.kind,
            client_id: req.client_id.clone(),
            acquired_at: grant.acquired_at,
            expires_at: grant.expires_at,
            ttl: req.ttl,
            fencing_token: grant.fencing_token,
            renewal_count: 0,
            expired: false,
        }
    }
}

/// One queued waiter, as shown by [`ResourceInfo`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct QueueEntry {
    /// The waiter's id (not secret).
    pub waiter_id: String,
    /// Who waits.
    pub client_id: String,
    /// For which kind of lock.
    pub kind: LockKind,
    /// The lease length it asked for.
    pub ttl: Duration,
}

/// Who holds a resource and who waits for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ResourceInfo {
    /// Current holders (one for exclusive, several for shared).
    pub holders: Vec<LeaseInfo>,
    /// True if the resource is held by a client that is not warden (e.g. a plain `SET NX`).
    pub foreign_holder: bool,
    /// Waiters in grant order.
    pub queue: Vec<QueueEntry>,
}

/// Counters over all leases of a backend (cluster-wide for shared backends).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// Grants ever made.
    pub total_locks: u64,
    /// Leases held now.
    pub active_locks: u64,
    /// Leases that ended by expiry rather than release.
    pub expired_locks: u64,
    /// Mean hold time over ended leases, in milliseconds.
    pub average_hold_time_ms: u64,
    /// Held now, exclusive kind.
    pub active_exclusive: u64,
    /// Held now, shared kind.
    pub active_shared: u64,
    /// Held now, read or write kind.
    pub active_read_write: u64,
    /// Resources with the most grants, most first (at most 10).
    pub top_resources: Vec<(String, u64)>,
}

/// How strictly a backend orders waiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub enum FifoGuarantee {
    /// Waiters are granted strictly in arrival order, across processes.
    Strict,
    /// Arrival order is followed when nodes agree, but may be violated under faults.
    BestEffort,
}

/// What a backend can promise. The conformance suite checks every declared capability.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// Offers shared (read) locks.
    pub shared: bool,
    /// Offers semaphores ([`LockKind::Semaphore`]): N holders at once, FIFO waiters.
    pub semaphores: bool,
    /// How waiters are ordered.
    pub fifo: FifoGuarantee,
    /// Waiters are woken by notifications (not only by expiry times).
    pub notifications: bool,
    /// Fencing tokens strictly increase per resource.
    pub fencing: bool,
    /// Fencing tokens keep increasing after the backend lost its data (restart without persistence),
    /// as long as the backend's clock does not jump back.
    pub fencing_survives_data_loss: bool,
    /// Several processes can share the backend.
    pub shared_across_processes: bool,
    /// Conditional acquires ([`Condition`]): the backend checks the condition atomically with the grant.
    pub conditions: bool,
    /// Waiter priorities ([`AcquireRequest::priority`]): higher first, FIFO within one, aged by waiting time.
    pub priorities: bool,
    /// Intention kinds ([`LockKind::IntentShared`], [`LockKind::IntentExclusive`]), and so path locks
    /// ([`crate::Warden::path`]).
    pub intentions: bool,
    /// Waiting happens on the far side (a warden server): the backend implements
    /// [`crate::Backend::acquire_waiting`], and a waiter that goes away leaves the queue when its connection
    /// closes rather than by its waiter lease.
    pub remote_wait: bool,
}

impl Capabilities {
    /// The least a backend can be: exclusive locks only, best-effort order, no notifications, fencing tokens
    /// that increase while the backend keeps its data, one process. A backend sets the fields it does better:
    ///
    /// ```
    /// let mut caps = warden::Capabilities::basic();
    /// caps.notifications = true;
    /// assert!(caps.fencing && !caps.shared);
    /// ```
    pub fn basic() -> Self {
        Capabilities {
            shared: false,
            semaphores: false,
            fifo: FifoGuarantee::BestEffort,
            notifications: false,
            fencing: true,
            fencing_survives_data_loss: false,
            shared_across_processes: false,
            conditions: false,
            priorities: false,
            intentions: false,
            remote_wait: false,
        }
    }
}

/// Health of one backend node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct NodeHealth {
    /// Address of the node.
    pub address: String,
    /// Whether it answered.
    pub reachable: bool,
    /// Round-trip latency in milliseconds when reachable.
    pub latency_ms: Option<f64>,
    /// The error when not reachable.
    pub error: Option<String>,
}

/// Overall health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum HealthStatus {
    /// Every node answers.
    Healthy,
    /// Some nodes are down but the backend still works (a Redlock minority).
    Degraded,
    /// The backend cannot serve locks.
    Unhealthy,
}

/// Health of a backend.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct Health {
    /// Backend kind (`memory`, `redis`, ...).
    pub kind: &'static str,
    /// Overall status.
    pub status: HealthStatus,
    /// Per node.
    pub nodes: Vec<NodeHealth>,
    /// For quorum backends: whether a majority answers.
    pub quorum: Option<bool>,
}

impl Health {
    /// Builds a health report (for backend implementations).
    pub fn new(kind: &'static str, status: HealthStatus, nodes: Vec<NodeHealth>, quorum: Option<bool>) -> Self {
        Health {
            kind,
            status,
            nodes,
            quorum,
        }
    }
}

impl NodeHealth {
    /// Builds a node report (for backend implementations).
    pub fn new(address: String, reachable: bool, latency_ms: Option<f64>, error: Option<String>) -> Self {
        NodeHealth {
            address,
            reachable,
            // To the µs: a probe's own jitter is larger.
            latency_ms: latency_ms.map(|ms| (ms * 1000.0).round() / 1000.0),
            error,
        }
    }
}
