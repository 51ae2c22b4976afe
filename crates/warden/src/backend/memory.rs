//! `memory://`: the embedded in-process store, and the service's default backend.
//!
//! Same semantics as the Redis scripts: strict FIFO with waiter leases, notifications to the queue's head,
//! time-seeded fencing tokens, expiry measured on a monotonic clock. All state sits behind one mutex; every
//! operation is a short, non-blocking critical section.

use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, LockKind, NodeHealth,
    QueueEntry, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
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

/// A lease token (128 random bits) as two words, so maps of tokens keep 8-byte alignment.
type Tok = (u64, u64);
/// "No holder" (tokens are never all zero).
const NO_TOK: Tok = (0, 0);

// Memory layout: a held lease costs one entry in `leases`, one in `resources` (shared by the resource's holders
// and waiters) and the resource name. Expiry is lazy: an operation on a resource or lease first ends whatever
// of it has expired, every operation also checks a couple of leases from a rotating cursor, and `stats` sweeps
// everything; waiters do not need an expiry index, they wake at the blocking lease's expiry on their own.
// B-trees rather than hash maps: at a million entries a
// hash table sits right after a doubling, at half load, and costs twice its entries; a B-tree stays about
// three-quarters full. Times are microseconds since `epoch` (8 bytes instead of 16 for an `Instant`).
#[derive(Debug)]
struct State {
    epoch: Instant,
    resources: BTreeMap<Arc<str>, Res>,
    leases: BTreeMap<Tok, Lease>,
    /// Interned client ids with the number of leases each holds.
    clients: HashMap<Arc<str>, u32>,
    /// Where the incremental sweep continues.
    cursor: Tok,
    grants: [u64; 4],
    released: [u64; 4],
    expired: [u64; 4],
    hold_ms: u64,
    top: HashMap<Arc<str>, u64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            epoch: Instant::now(),
            resources: BTreeMap::new(),
            leases: BTreeMap::new(),
            clients: HashMap::new(),
            cursor: NO_TOK,
            grants: [0; 4],
            released: [0; 4],
            expired: [0; 4],
            hold_ms: 0,
            top: HashMap::new(),
        }
    }
}

#[derive(Debug, Default)]
struct Res {
    fence: u64,
    exclusive: Tok,
    /// Readers and waiters, boxed: most resources have neither.
    more: Option<Box<More>>,
}

#[derive(Debug, Default)]
struct More {
    readers: Vec<Tok>,
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
    /// µs since the store's epoch.
    acquired: u64,
    /// µs since the store's epoch.
    expires: u64,
    fence: u64,
    ttl_ms: u32,
    renewals: u32,
    /// `u32::MAX` = no cap.
    max_renewals: u32,
    /// 0 = no cap.
    max_hold_ms: u32,
    kind: LockKind,
}

fn kind_index(k: LockKind) -> usize {
    match k {
        LockKind::Exclusive => 0,
        LockKind::Shared => 1,
        LockKind::Read => 2,
        LockKind::Write => 3,
    }
}

fn parse_token(lock_id: &str) -> Option<Tok> {
    if lock_id.len() != 32 {
        return None;
    }
    let v = u128::from_str_radix(lock_id, 16).ok()?;
    let t = ((v >> 64) as u64, v as u64);
    (t != NO_TOK).then_some(t)
}

fn fmt_token(t: Tok) -> String {
    format!("{:016x}{:016x}", t.0, t.1)
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
    fn readers(&self) -> &[Tok] {
        self.more.as_ref().map(|m| m.readers.as_slice()).unwrap_or(&[])
    }
    fn queue(&self) -> impl Iterator<Item = &Waiter> {
        self.more.iter().flat_map(|m| m.queue.iter())
    }
    fn queue_head(&self) -> Option<&Waiter> {
        self.more.as_ref().and_then(|m| m.queue.front())
    }
    fn queue_len(&self) -> usize {
        self.more.as_ref().map(|m| m.queue.len()).unwrap_or(0)
    }
    fn more_mut(&mut self) -> &mut More {
        self.more.get_or_insert_with(Box::default)
    }
    /// Frees the boxed part once it holds nothing.
    fn shrink(&mut self) {
        if self
            .more
            .as_ref()
            .is_some_and(|m| m.readers.is_empty() && m.queue.is_empty())
        {
            self.more = None;
        }
    }
    fn holds(&self, t: Tok) -> bool {
        self.exclusive == t || self.readers().contains(&t)
    }
    fn is_idle(&self) -> bool {
        self.exclusive == NO_TOK && self.more.is_none()
    }
    /// Drops waiters at the head whose queue lease ran out. Returns whether any was dropped.
    fn clean_head(&mut self, now: Instant) -> bool {
        let Some(m) = self.more.as_mut() else {
            return false;
        };
        let mut cleaned = false;
        while m.queue.front().is_some_and(|w| w.deadline < now) {
            m.queue.pop_front();
            cleaned = true;
        }
        self.shrink();
        cleaned
    }
    /// Whether FIFO order lets `me` (a queued waiter id, or a newcomer) take a lock of `kind` now.
    fn queue_allows(&self, me: Option<&str>, kind: LockKind, now: Instant) -> bool {
        let Some(head) = self.queue_head() else {
            return true;
        };
        if kind.is_exclusive() {
            return me == Some(head.id.as_str());
        }
        for w in self.queue() {
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
            self.exclusive == NO_TOK && self.readers().is_empty()
        } else {
            self.exclusive == NO_TOK
        }
    }
    /// Waiters that may proceed now: the exclusive head of a free lock, or the run of shared waiters at the head.
    fn eligible(&self, now: Instant) -> Vec<String> {
        let Some(head) = self.queue_head() else {
            return Vec::new();
        };
        if head.kind.is_exclusive() {
            if self.compatible(head.kind) {
                return vec![head.id.clone()];
            }
            return Vec::new();
        }
        if self.exclusive != NO_TOK {
            return Vec::new();
        }
        self.queue()
            .filter(|w| w.deadline >= now)
            .take_while(|w| !w.kind.is_exclusive())
            .take(1000)
            .map(|w| w.id.clone())
            .collect()
    }
}

impl State {
    fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    fn instant(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    /// Ends lease `t` if its expiry has passed (as an expiry, not a release). Returns whether it did.
    fn expire_lease(&mut self, t: Tok, now: Instant, router: &WakeRouter) -> bool {
        let now_us = self.us(now);
        if self.leases.get(&t).is_none_or(|l| l.expires >= now_us) {
            return false;
        }
        let Some(l) = self.leases.remove(&t) else {
            return false;
        };
        self.expired[kind_index(l.kind)] += 1;
        self.hold_ms += (l.expires - l.acquired) / 1000;
        tracing::debug!(resource = %l.resource, client = %l.client, fence = l.fence, "lease expired");
        self.forget_client(&l.client);
        self.drop_holder(&l.resource, t, now, router);
        true
    }

    /// Ends the expired holders of `resource`.
    fn expire_resource(&mut self, resource: &str, now: Instant, router: &WakeRouter) {
        let Some(res) = self.resources.get(resource) else {
            return;
        };
        let holders: Vec<Tok> = std::iter::once(res.exclusive)
            .filter(|t| *t != NO_TOK)
            .chain(res.readers().iter().copied())
            .collect();
        for t in holders {
            self.expire_lease(t, now, router);
        }
    }

    /// Checks `n` leases from the rotating cursor, so leases nobody touches again are still reclaimed.
    fn sweep_some(&mut self, n: usize, now: Instant, router: &WakeRouter) {
        for _ in 0..n {
            let next = self
                .leases
                .range((Bound::Excluded(self.cursor), Bound::Unbounded))
                .next()
                .or_else(|| self.leases.iter().next())
                .map(|(t, _)| *t);
            let Some(t) = next else {
                return;
            };
            self.cursor = t;
            self.expire_lease(t, now, router);
        }
    }

    /// Ends every expired lease.
    fn sweep_all(&mut self, now: Instant, router: &WakeRouter) {
        let now_us = self.us(now);
        let due: Vec<Tok> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires < now_us)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.expire_lease(t, now, router);
        }
    }

    fn forget_client(&mut self, client: &Arc<str>) {
        if let Some(n) = self.clients.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                self.clients.remove(client);
            }
        }
    }

    /// Removes `t` from the holders of `resource`, wakes the next waiters, forgets idle resources.
    fn drop_holder(&mut self, resource: &Arc<str>, t: Tok, now: Instant, router: &WakeRouter) {
        let Some(res) = self.resources.get_mut(resource) else {
            return;
        };
        if res.exclusive == t {
            res.exclusive = NO_TOK;
        }
        if let Some(m) = res.more.as_mut() {
            m.readers.retain(|r| *r != t);
        }
        res.clean_head(now);
        let ids = res.eligible(now);
        router.wake(ids.iter().map(String::as_str));
        // Forget an idle resource only once the clock is past its fence, so a re-seeded fence still grows.
        if res.is_idle() && res.fence < now_micros() {
            self.resources.remove(resource);
        }
    }

    /// The shared copy of `client`, counting one more lease for it.
    fn intern_client(&mut self, client: &str) -> Arc<str> {
        if let Some((k, n)) = self.clients.get_key_value(client) {
            let k = k.clone();
            let n = *n;
            self.clients.insert(k.clone(), n + 1);
            return k;
        }
        let k: Arc<str> = Arc::from(client);
        self.clients.insert(k.clone(), 1);
        k
    }

    fn info(&self, t: Tok, l: &Lease, now: Instant, now_sys: SystemTime) -> LeaseInfo {
        let held = self.resources.get(&l.resource).is_some_and(|r| r.holds(t));
        let expires = self.instant(l.expires);
        let lock_id = fmt_token(t);
        LeaseInfo {
            lease_handle: crate::lease_handle(&lock_id),
            lock_id,
            resource: l.resource.to_string(),
            kind: l.kind,
            client_id: l.client.to_string(),
            acquired_at: to_system(self.instant(l.acquired), now, now_sys),
            expires_at: to_system(expires, now, now_sys),
            ttl: Duration::from_millis(u64::from(l.ttl_ms)),
            fencing_token: l.fence,
            renewal_count: l.renewals,
            expired: !held || expires < now,
        }
    }

    /// The lease and whether `client_id` may act on it.
    fn owned(&self, lock_id: &str, client_id: Option<&str>) -> Result<(Tok, &Lease)> {
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
    /// A new, empty store for `memory://` (the URL has no options).
    pub async fn connect(url: &str) -> Result<Self> {
        let _ = url;
        Ok(Self::new())
    }

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
            res.exclusive = NO_TOK;
            if let Some(m) = res.more.as_mut() {
                m.readers.clear();
            }
            res.shrink();
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
        let t = parse_token(&req.lock_id).ok_or_else(|| Error::invalid("lockId", "must be 32 hex characters"))?;
        let mut guard = self.lock();
        let st = &mut *guard;
        st.expire_resource(&req.resource, now, &self.router);
        st.sweep_some(2, now, &self.router);
        let now_us = st.us(now);
        let key: Arc<str> = match st.resources.get_key_value(req.resource.as_str()) {
            Some((k, _)) => k.clone(),
            None => Arc::from(req.resource.as_str()),
        };
        let res = st.resources.entry(key.clone()).or_default();
        let cleaned = res.clean_head(now);
        if res.queue_allows(waiter_id, req.kind, now) && res.compatible(req.kind) {
            let fence = (res.fence + 1).max(now_micros());
            res.fence = fence;
            if req.kind.is_exclusive() {
                res.exclusive = t;
            } else {
                res.more_mut().readers.push(t);
            }
            if let Some(w) = waiter_id {
                if let Some(m) = res.more.as_mut() {
                    m.queue.retain(|q| q.id != w);
                }
                res.shrink();
            }
            let expires = now_us + req.ttl.as_micros() as u64;
            let client = st.intern_client(&req.client_id);
            st.leases.insert(
                t,
                Lease {
                    resource: key.clone(),
                    client,
                    acquired: now_us,
                    expires,
                    fence,
                    ttl_ms: req.ttl.as_millis() as u32,
                    renewals: 0,
                    max_renewals: req.max_renewals.unwrap_or(u32::MAX),
                    max_hold_ms: req.max_hold.map(|h| h.as_millis() as u32).unwrap_or(0),
                    kind: req.kind,
                },
            );
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
        let blocking: Vec<Tok> = if res.exclusive != NO_TOK {
            vec![res.exclusive]
        } else if req.kind.is_exclusive() {
            res.readers().to_vec()
        } else {
            Vec::new()
        };
        if let Some(w) = waiter_id {
            let deadline = now + req.waiter_lease;
            let queued = res.queue_len();
            let found = res
                .more
                .as_mut()
                .and_then(|m| m.queue.iter_mut().find(|q| q.id == w))
                .map(|q| q.deadline = deadline)
                .is_some();
            if !found {
                if queued >= MAX_WAITERS_PER_RESOURCE {
                    return Err(Error::LimitExceeded {
                        what: format!(
                            "{MAX_WAITERS_PER_RESOURCE} waiters already queued on `{}`",
                            req.resource
                        ),
                    });
                }
                // `res` borrows `st.resources` only: the client table is a separate field.
                let client = match st.clients.get_key_value(req.client_id.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => Arc::from(req.client_id.as_str()),
                };
                res.more_mut().queue.push_back(Waiter {
                    id: w.to_string(),
                    client,
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
            .map(|l| st.instant(l.expires).saturating_duration_since(now))
            .min();
        Ok(Attempt::NotGranted {
            retry_in,
            backend_now: None,
        })
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(res) = st.resources.get_mut(resource) {
            if let Some(m) = res.more.as_mut() {
                m.queue.retain(|w| w.id != waiter_id);
            }
            res.shrink();
            res.clean_head(now);
            let ids = res.eligible(now);
            self.router.wake(ids.iter().map(String::as_str));
            if res.is_idle() && res.fence < now_micros() {
                st.resources.remove(resource);
            }
        }
        // No handoff here: a waiter is only ever granted by its own attempt.
        Ok(true)
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let now = Instant::now();
        let mut st = self.lock();
        if let Some(t) = parse_token(lock_id) {
            st.expire_lease(t, now, &self.router);
        }
        st.sweep_some(2, now, &self.router);
        let now_us = st.us(now);
        let (t, _) = st.owned(lock_id, client_id)?;
        let Some(l) = st.leases.remove(&t) else {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        };
        st.forget_client(&l.client);
        let held = st.resources.get(&l.resource).is_some_and(|r| r.holds(t));
        if held {
            let held_us = now_us.saturating_sub(l.acquired);
            st.released[kind_index(l.kind)] += 1;
            st.hold_ms += held_us / 1000;
            st.drop_holder(&l.resource, t, now, &self.router);
            Ok(Released::after(Some(Duration::from_micros(held_us))))
        } else {
            st.expired[kind_index(l.kind)] += 1;
            st.hold_ms += l.expires.min(now_us).saturating_sub(l.acquired) / 1000;
            Err(Error::LeaseLost {
                lock_id: lock_id.to_string(),
                resource: l.resource.to_string(),
            })
        }
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        if let Some(t) = parse_token(lock_id) {
            st.expire_lease(t, now, &self.router);
        }
        st.sweep_some(2, now, &self.router);
        let now_us = st.us(now);
        let (t, l) = st.owned(lock_id, client_id)?;
        if !st.resources.get(&l.resource).is_some_and(|r| r.holds(t)) {
            return Err(Error::LeaseLost {
                lock_id: lock_id.to_string(),
                resource: l.resource.to_string(),
            });
        }
        let old = l.expires;
        let capped = Renewal::Capped {
            expires_at: to_system(st.instant(old), now, now_sys),
        };
        if l.max_renewals != u32::MAX && l.renewals >= l.max_renewals {
            return Ok(capped);
        }
        let ttl = ttl.unwrap_or(Duration::from_millis(u64::from(l.ttl_ms)));
        let mut new_exp = now_us + ttl.as_micros() as u64;
        if l.max_hold_ms > 0 {
            new_exp = new_exp.min(l.acquired + u64::from(l.max_hold_ms) * 1000);
            if new_exp <= now_us {
                return Ok(capped);
            }
        }
        let Some(l) = st.leases.get_mut(&t) else {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        };
        l.expires = new_exp;
        l.ttl_ms = ttl.as_millis() as u32;
        l.renewals += 1;
        let lease = st.leases.get(&t).map(|l| st.info(t, l, now, now_sys));
        let lease = lease.ok_or_else(|| Error::NotFound {
            lock_id: lock_id.to_string(),
        })?;
        Ok(Renewal::Renewed {
            lease,
            granted: Duration::from_micros(new_exp - now_us),
        })
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(t) = parse_token(lock_id) else {
            return Ok(None);
        };
        st.expire_lease(t, now, &self.router);
        Ok(st.leases.get(&t).map(|l| st.info(t, l, now, SystemTime::now())))
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.expire_resource(resource, now, &self.router);
        let Some(res) = st.resources.get(resource) else {
            return Ok(ResourceInfo::default());
        };
        let holders = std::iter::once(res.exclusive)
            .filter(|t| *t != NO_TOK)
            .chain(res.readers().iter().copied())
            .filter_map(|t| st.leases.get(&t).map(|l| st.info(t, l, now, now_sys)))
            .collect();
        let queue = res
            .queue()
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
        st.sweep_all(now, &self.router);
        if !st.clients.contains_key(client_id) {
            return Ok(Vec::new());
        }
        // A scan: no per-client index is kept, to keep every lease small (see `State`).
        let mut out: Vec<LeaseInfo> = st
            .leases
            .iter()
            .filter(|(_, l)| &*l.client == client_id)
            .map(|(t, l)| st.info(*t, l, now, now_sys))
            .filter(|i| !i.expired)
            .collect();
        out.sort_by_key(|i| i.acquired_at);
        Ok(out)
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        let now = Instant::now();
        let mut st = self.lock();
        st.sweep_all(now, &self.router);
        let mut active = [0u64; 4];
        for l in st.leases.values() {
            active[kind_index(l.kind)] += 1;
        }
        let ended: u64 = st.released.iter().sum::<u64>() + st.expired.iter().sum::<u64>();
        let mut top_resources: Vec<(String, u64)> = Vec::new();
        if top > 0 {
            top_resources = st.top.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            top_resources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top_resources.truncate(top);
        }
        Ok(Stats {
            total_locks: st.grants.iter().sum(),
            active_locks: active.iter().sum(),
            expired_locks: st.expired.iter().sum(),
            average_hold_time_ms: st.hold_ms.checked_div(ended).unwrap_or(0),
            active_exclusive: active[0],
            active_shared: active[1],
            active_read_write: active[2] + active[3],
            top_resources,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn req(resource: &str, ttl_ms: u64) -> AcquireRequest {
        AcquireRequest::new(
            resource,
            LockKind::Exclusive,
            Duration::from_millis(ttl_ms),
            "c",
            &crate::token::lock_id(),
            Duration::from_millis(300),
        )
    }

    #[tokio::test(start_paused = true)]
    async fn expired_leases_nobody_touches_are_reclaimed_by_the_rotating_sweep() {
        let b = MemoryBackend::new();
        for i in 0..10 {
            let r = b.attempt(&req(&format!("r{i}"), 50), None).await.unwrap();
            assert!(matches!(r, Attempt::Granted(_)));
        }
        assert_eq!(b.lease_count(), 10);
        tokio::time::advance(Duration::from_millis(100)).await;
        // Unrelated operations: each checks two leases from the cursor.
        for _ in 0..5 {
            let _ = b.lease(&crate::token::lock_id()).await;
            let _ = b.release(&crate::token::lock_id(), None).await;
        }
        assert_eq!(b.lease_count(), 0, "untouched expired leases must be reclaimed");
        let s = b.stats(10).await.unwrap();
        assert_eq!((s.expired_locks, s.active_locks, s.total_locks), (10, 0, 10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_holder_frees_the_lock_for_the_next_attempt() {
        let b = MemoryBackend::new();
        assert!(matches!(
            b.attempt(&req("x", 50), None).await.unwrap(),
            Attempt::Granted(_)
        ));
        let second = req("x", 50);
        match b.attempt(&second, None).await.unwrap() {
            Attempt::NotGranted { retry_in, .. } => assert_eq!(retry_in, Some(Duration::from_millis(50))),
            other => panic!("{other:?}"),
        }
        tokio::time::advance(Duration::from_millis(51)).await;
        assert!(matches!(b.attempt(&second, None).await.unwrap(), Attempt::Granted(_)));
        assert_eq!(b.stats(0).await.unwrap().expired_locks, 1);
    }
}
