//! `memory://`: the embedded in-process store, and the service's default backend.
//!
//! Same semantics as the Redis scripts: strict FIFO with waiter leases, notifications to the queue's head,
//! time-seeded fencing tokens, expiry measured on a monotonic clock. All state sits behind one mutex; every
//! operation is a short, non-blocking critical section.

use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, LockKind, NodeHealth,
    QueueEntry, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::time::Instant;

/// Most waiters queued on one resource.
pub const MAX_WAITERS_PER_RESOURCE: usize = 10_000;
/// Resources remembered for `top_resources`; trimmed to half when exceeded.
const TOP_CAP: usize = 10_000;

/// The in-process backend. Cheap to create; share it with `Arc`.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    state: Mutex<State>,
    router: Arc<WakeRouter>,
}

#[derive(Debug, Default)]
struct State {
    resources: HashMap<Arc<str>, Res>,
    leases: HashMap<u128, Lease>,
    by_client: HashMap<Arc<str>, HashSet<u128>>,
    expiry: BTreeSet<(Instant, u128)>,
    grants: [u64; 4],
    released: [u64; 4],
    expired: [u64; 4],
    hold_ms: u64,
    top: HashMap<Arc<str>, u64>,
}

#[derive(Debug, Default)]
struct Res {
    fence: u64,
    exclusive: Option<u128>,
    readers: Vec<u128>,
    queue: VecDeque<Waiter>,
}

#[derive(Debug)]
struct Waiter {
    id: String,
    client: Arc<str>,
    kind: LockKind,
    ttl: Duration,
    deadline: Instant,
}

#[derive(Debug)]
struct Lease {
    resource: Arc<str>,
    client: Arc<str>,
    kind: LockKind,
    acquired_sys: SystemTime,
    acquired: Instant,
    expires: Instant,
    ttl: Duration,
    fence: u64,
    renewals: u32,
    max_renewals: Option<u32>,
    max_hold: Option<Duration>,
}

fn kind_index(k: LockKind) -> usize {
    match k {
        LockKind::Exclusive => 0,
        LockKind::Shared => 1,
        LockKind::Read => 2,
        LockKind::Write => 3,
    }
}

fn parse_token(lock_id: &str) -> Option<u128> {
    if lock_id.len() != 32 {
        return None;
    }
    u128::from_str_radix(lock_id, 16).ok()
}

fn fmt_token(t: u128) -> String {
    format!("{t:032x}")
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Converts a monotonic instant to wall-clock time for display.
fn to_system(at: Instant, now: Instant, now_sys: SystemTime) -> SystemTime {
    if at >= now {
        now_sys + (at - now)
    } else {
        now_sys - (now - at)
    }
}

impl Res {
    fn holds(&self, t: u128) -> bool {
        self.exclusive == Some(t) || self.readers.contains(&t)
    }
    fn is_idle(&self) -> bool {
        self.exclusive.is_none() && self.readers.is_empty() && self.queue.is_empty()
    }
    /// Drops waiters at the head whose queue lease ran out. Returns whether any was dropped.
    fn clean_head(&mut self, now: Instant) -> bool {
        let mut cleaned = false;
        while self.queue.front().is_some_and(|w| w.deadline < now) {
            self.queue.pop_front();
            cleaned = true;
        }
        cleaned
    }
    /// Whether FIFO order lets `me` (a queued waiter id, or a newcomer) take a lock of `kind` now.
    fn queue_allows(&self, me: Option<&str>, kind: LockKind, now: Instant) -> bool {
        let Some(head) = self.queue.front() else {
            return true;
        };
        if kind.is_exclusive() {
            return me == Some(head.id.as_str());
        }
        for w in &self.queue {
            if me == Some(w.id.as_str()) {
                return true;
            }
            if w.deadline >= now && w.kind.is_exclusive() {
                return false;
            }
        }
        true
    }
    fn compatible(&self, kind: LockKind) -> bool {
        if kind.is_exclusive() {
            self.exclusive.is_none() && self.readers.is_empty()
        } else {
            self.exclusive.is_none()
        }
    }
    /// Waiters that may proceed now: the exclusive head of a free lock, or the run of shared waiters at the head.
    fn eligible(&self, now: Instant) -> Vec<String> {
        let Some(head) = self.queue.front() else {
            return Vec::new();
        };
        if head.kind.is_exclusive() {
            if self.compatible(head.kind) {
                return vec![head.id.clone()];
            }
            return Vec::new();
        }
        if self.exclusive.is_some() {
            return Vec::new();
        }
        self.queue
            .iter()
            .filter(|w| w.deadline >= now)
            .take_while(|w| !w.kind.is_exclusive())
            .take(1000)
            .map(|w| w.id.clone())
            .collect()
    }
}

impl State {
    /// Ends every lease whose expiry has passed, as an expiry (not a release).
    fn expire_due(&mut self, now: Instant, router: &WakeRouter) {
        while let Some(&(at, t)) = self.expiry.first() {
            if at >= now {
                break;
            }
            self.expiry.pop_first();
            if let Some(l) = self.leases.remove(&t) {
                self.expired[kind_index(l.kind)] += 1;
                self.hold_ms += (l.expires - l.acquired).as_millis() as u64;
                self.forget_client(&l.client, t);
                self.drop_holder(&l.resource, t, now, router);
            }
        }
    }

    fn forget_client(&mut self, client: &Arc<str>, t: u128) {
        if let Some(set) = self.by_client.get_mut(client) {
            set.remove(&t);
            if set.is_empty() {
                self.by_client.remove(client);
            }
        }
    }

    /// Removes `t` from the holders of `resource`, wakes the next waiters, forgets idle resources.
    fn drop_holder(&mut self, resource: &Arc<str>, t: u128, now: Instant, router: &WakeRouter) {
        let Some(res) = self.resources.get_mut(resource) else {
            return;
        };
        if res.exclusive == Some(t) {
            res.exclusive = None;
        }
        res.readers.retain(|r| *r != t);
        res.clean_head(now);
        let ids = res.eligible(now);
        router.wake(ids.iter().map(String::as_str));
        // Forget an idle resource only once the clock is past its fence, so a re-seeded fence still grows.
        if res.is_idle() && res.fence < now_micros() {
            self.resources.remove(resource);
        }
    }

    fn intern_client(&mut self, client: &str) -> Arc<str> {
        match self.by_client.get_key_value(client) {
            Some((k, _)) => k.clone(),
            None => Arc::from(client),
        }
    }

    fn info(&self, t: u128, l: &Lease, now: Instant, now_sys: SystemTime) -> LeaseInfo {
        let held = self.resources.get(&l.resource).is_some_and(|r| r.holds(t));
        LeaseInfo {
            lock_id: fmt_token(t),
            resource: l.resource.to_string(),
            kind: l.kind,
            client_id: l.client.to_string(),
            acquired_at: l.acquired_sys,
            expires_at: to_system(l.expires, now, now_sys),
            ttl: l.ttl,
            fencing_token: l.fence,
            renewal_count: l.renewals,
            expired: !held || l.expires < now,
        }
    }

    /// The lease and whether `client_id` may act on it.
    fn owned(&self, lock_id: &str, client_id: Option<&str>) -> Result<(u128, &Lease)> {
        let t = parse_token(lock_id).ok_or_else(|| Error::NotFound {
            lock_id: lock_id.to_string(),
        })?;
        let l = self.leases.get(&t).ok_or_else(|| Error::NotFound {
            lock_id: lock_id.to_string(),
        })?;
        if let Some(c) = client_id {
            if &*l.client != c {
                return Err(Error::NotOwner {
                    lock_id: lock_id.to_string(),
                    client_id: c.to_string(),
                });
            }
        }
        Ok((t, l))
    }
}

impl MemoryBackend {
    /// A new, empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that breaks
        // exclusion more than the panic itself did; keep serving.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Test hook: takes every holder of `resource` away behind their backs, as `DEL key` does on Redis.
    /// Their leases are then no longer held; renewals fail and the lost signal fires.
    pub fn revoke(&self, resource: &str) {
        let mut st = self.lock();
        let now = Instant::now();
        if let Some(res) = st.resources.get_mut(resource) {
            res.exclusive = None;
            res.readers.clear();
            let ids = res.eligible(now);
            self.router.wake(ids.iter().map(String::as_str));
        }
    }

    /// Number of leases currently stored (for memory measurements).
    pub fn lease_count(&self) -> usize {
        self.lock().leases.len()
    }
}

#[async_trait::async_trait]
impl Backend for MemoryBackend {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: true,
            fifo: FifoGuarantee::Strict,
            notifications: true,
            fencing: true,
            fencing_survives_data_loss: true,
            shared_across_processes: false,
            remote_wait: false,
        }
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let client = st.intern_client(&req.client_id);
        let key: Arc<str> = match st.resources.get_key_value(req.resource.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(req.resource.as_str()),
        };
        let res = st.resources.entry(key.clone()).or_default();
        let cleaned = res.clean_head(now);
        if res.queue_allows(waiter_id, req.kind, now) && res.compatible(req.kind) {
            let t = parse_token(&req.lock_id).ok_or_else(|| Error::invalid("lockId", "must be 32 hex characters"))?;
            let fence = (res.fence + 1).max(now_micros());
            res.fence = fence;
            if req.kind.is_exclusive() {
                res.exclusive = Some(t);
            } else {
                res.readers.push(t);
            }
            if let Some(w) = waiter_id {
                res.queue.retain(|q| q.id != w);
            }
            let expires = now + req.ttl;
            st.leases.insert(
                t,
                Lease {
                    resource: key.clone(),
                    client: client.clone(),
                    kind: req.kind,
                    acquired_sys: now_sys,
                    acquired: now,
                    expires,
                    ttl: req.ttl,
                    fence,
                    renewals: 0,
                    max_renewals: req.max_renewals,
                    max_hold: req.max_hold,
                },
            );
            st.expiry.insert((expires, t));
            st.by_client.entry(client).or_default().insert(t);
            st.grants[kind_index(req.kind)] += 1;
            *st.top.entry(key).or_default() += 1;
            if st.top.len() > TOP_CAP {
                let mut counts: Vec<u64> = st.top.values().copied().collect();
                counts.sort_unstable();
                let cut = counts[counts.len() / 2];
                st.top.retain(|_, c| *c > cut);
            }
            return Ok(Attempt::Granted(Grant::new(fence, now_sys, now_sys + req.ttl)));
        }
        // Not granted: when does the blocking lease end?
        let blocking = if res.exclusive.is_some() {
            res.exclusive.into_iter().collect::<Vec<_>>()
        } else if req.kind.is_exclusive() {
            res.readers.clone()
        } else {
            Vec::new()
        };
        if let Some(w) = waiter_id {
            let deadline = now + req.waiter_lease;
            if let Some(q) = res.queue.iter_mut().find(|q| q.id == w) {
                q.deadline = deadline;
            } else if res.queue.len() >= MAX_WAITERS_PER_RESOURCE {
                return Err(Error::LimitExceeded {
                    what: format!(
                        "{MAX_WAITERS_PER_RESOURCE} waiters already queued on `{}`",
                        req.resource
                    ),
                });
            } else {
                res.queue.push_back(Waiter {
                    id: w.to_string(),
                    client: client.clone(),
                    kind: req.kind,
                    ttl: req.ttl,
                    deadline,
                });
            }
        }
        if cleaned {
            let ids = res.eligible(now);
            self.router.wake(ids.iter().map(String::as_str));
        }
        let retry_in = blocking
            .iter()
            .filter_map(|t| st.leases.get(t))
            .map(|l| l.expires.saturating_duration_since(now))
            .min();
        Ok(Attempt::NotGranted { retry_in })
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<()> {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(res) = st.resources.get_mut(resource) {
            res.queue.retain(|w| w.id != waiter_id);
            res.clean_head(now);
            let ids = res.eligible(now);
            self.router.wake(ids.iter().map(String::as_str));
            if res.is_idle() && res.fence < now_micros() {
                st.resources.remove(resource);
            }
        }
        Ok(())
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<()> {
        let now = Instant::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let (t, _) = st.owned(lock_id, client_id)?;
        let Some(l) = st.leases.remove(&t) else {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        };
        st.expiry.remove(&(l.expires, t));
        st.forget_client(&l.client, t);
        let held = st.resources.get(&l.resource).is_some_and(|r| r.holds(t));
        if held {
            st.released[kind_index(l.kind)] += 1;
            st.hold_ms += (now - l.acquired).as_millis() as u64;
            st.drop_holder(&l.resource, t, now, &self.router);
            Ok(())
        } else {
            st.expired[kind_index(l.kind)] += 1;
            st.hold_ms += (l.expires.min(now) - l.acquired).as_millis() as u64;
            Err(Error::LeaseLost {
                lock_id: lock_id.to_string(),
                resource: l.resource.to_string(),
            })
        }
    }

    async fn renew(&self, lock_id: &str, ttl: Duration, client_id: Option<&str>) -> Result<Renewal> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let (t, l) = st.owned(lock_id, client_id)?;
        if !st.resources.get(&l.resource).is_some_and(|r| r.holds(t)) {
            return Err(Error::LeaseLost {
                lock_id: lock_id.to_string(),
                resource: l.resource.to_string(),
            });
        }
        let old = l.expires;
        let capped = Renewal::Capped {
            expires_at: to_system(old, now, now_sys),
        };
        if l.max_renewals.is_some_and(|m| l.renewals >= m) {
            return Ok(capped);
        }
        let mut new_exp = now + ttl;
        if let Some(h) = l.max_hold {
            new_exp = new_exp.min(l.acquired + h);
            if new_exp <= now {
                return Ok(capped);
            }
        }
        st.expiry.remove(&(old, t));
        st.expiry.insert((new_exp, t));
        let Some(l) = st.leases.get_mut(&t) else {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        };
        l.expires = new_exp;
        l.ttl = ttl;
        l.renewals += 1;
        Ok(Renewal::Renewed {
            expires_at: to_system(new_exp, now, now_sys),
            renewal_count: l.renewals,
            granted: new_exp - now,
        })
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let now = Instant::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let Some(t) = parse_token(lock_id) else {
            return Ok(None);
        };
        Ok(st.leases.get(&t).map(|l| st.info(t, l, now, SystemTime::now())))
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let Some(res) = st.resources.get(resource) else {
            return Ok(ResourceInfo::default());
        };
        let holders = res
            .exclusive
            .iter()
            .chain(res.readers.iter())
            .filter_map(|t| st.leases.get(t).map(|l| st.info(*t, l, now, now_sys)))
            .collect();
        let queue = res
            .queue
            .iter()
            .filter(|w| w.deadline >= now)
            .map(|w| QueueEntry {
                waiter_id: w.id.clone(),
                client_id: w.client.to_string(),
                kind: w.kind,
                ttl: w.ttl,
            })
            .collect();
        Ok(ResourceInfo {
            holders,
            foreign_holder: false,
            queue,
        })
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let Some(set) = st.by_client.get(client_id) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<LeaseInfo> = set
            .iter()
            .filter_map(|t| st.leases.get(t).map(|l| st.info(*t, l, now, now_sys)))
            .filter(|i| !i.expired)
            .collect();
        out.sort_by_key(|i| i.acquired_at);
        Ok(out)
    }

    async fn stats(&self) -> Result<Stats> {
        let now = Instant::now();
        let mut st = self.lock();
        st.expire_due(now, &self.router);
        let mut active = [0u64; 4];
        for l in st.leases.values() {
            active[kind_index(l.kind)] += 1;
        }
        let ended: u64 = st.released.iter().sum::<u64>() + st.expired.iter().sum::<u64>();
        let mut top: Vec<(String, u64)> = st.top.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        top.truncate(10);
        Ok(Stats {
            total_locks: st.grants.iter().sum(),
            active_locks: active.iter().sum(),
            expired_locks: st.expired.iter().sum(),
            average_hold_time_ms: st.hold_ms.checked_div(ended).unwrap_or(0),
            active_exclusive: active[0],
            active_shared: active[1],
            active_read_write: active[2] + active[3],
            top_resources: top,
        })
    }

    async fn health(&self) -> Health {
        Health::new(
            "memory",
            HealthStatus::Healthy,
            vec![NodeHealth::new("in-process".into(), true, Some(0.0), None)],
            None,
        )
    }
}
