//! `memory://`: the embedded in-process store, and the service's default backend.
//!
//! Same semantics as the Redis scripts: strict FIFO with waiter leases, notifications to the queue's head,
//! time-seeded fencing tokens, expiry measured on a monotonic clock. All state sits behind one mutex; every
//! operation is a short, non-blocking critical section.

mod resource;
mod store;
#[cfg(test)]
mod tests;
mod views;

use resource::*;
use store::*;

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

impl MemoryBackend {
    /// A new, empty store for `memory://`. One option: `retain_ms` (100..=86400000, default 60000), how long an
    /// idle resource's last fencing token is remembered after its last grant (conditional acquires read it).
    pub async fn connect(url: &str) -> Result<Self> {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let backend = Self::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("retain_ms", v)) => {
                    backend.lock().retain_us = crate::validate::url_number("retain_ms", v, 100..=86_400_000)? * 1000;
                }
                _ => {
                    return Err(Error::invalid(
                        "backend",
                        "memory://: unknown option; the one option is retain_ms (e.g. memory://?retain_ms=3600000)",
                    ))
                }
            }
        }
        Ok(backend)
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
                m.clear_readers();
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
            semaphores: true,
            fifo: FifoGuarantee::Strict,
            notifications: true,
            fencing: true,
            fencing_survives_data_loss: true,
            shared_across_processes: false,
            conditions: true,
            priorities: true,
            intentions: true,
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
        let want = if req.kind == LockKind::Semaphore {
            req.permits
        } else {
            0
        };
        match res.in_use_as() {
            Some(have) if have != want => return Err(Error::permits_conflict(&req.resource, have, want)),
            None if want > 0 => res.more_mut().permits = want,
            _ => {}
        }
        if let Some(c) = &req.condition {
            // Checked in the same critical section as the grant below.
            c.within_retention(Duration::from_micros(st.retain_us))?;
            c.check(&req.resource, (res.fence > 0).then_some(res.fence), now_micros())?;
        }
        if res.queue_allows(waiter_id, req.kind, now) && res.compatible(req.kind) {
            let fence = (res.fence + 1).max(now_micros());
            res.fence = fence;
            if req.kind.is_exclusive() {
                res.exclusive = t;
            } else {
                res.more_mut().add_reader(t, req.kind);
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
        } else if req.kind.is_exclusive() || req.kind == LockKind::Semaphore {
            res.readers().to_vec()
        } else {
            // Shared and intention holders that exclude this kind.
            let leases = &st.leases;
            res.readers()
                .iter()
                .copied()
                .filter(|t| leases.get(t).is_some_and(|l| !req.kind.compatible_with(l.kind)))
                .collect()
        };
        let mut woke_for_order = false;
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
                let head_start = i64::from(req.priority) * crate::validate::PRIORITY_STEP.as_micros() as i64;
                let overtook = res.more_mut().enqueue(Waiter {
                    id: w.to_string(),
                    client,
                    kind: req.kind,
                    ttl: req.ttl,
                    deadline,
                    place: now_us as i64 - head_start,
                });
                // A waiter that went ahead may now be at the head of a free resource: wake whoever may proceed.
                woke_for_order = overtook;
            }
        }
        if cleaned || woke_for_order {
            let ids = res.eligible(now);
            self.router.wake(ids.iter().map(String::as_str));
        }
        // A semaphore tried once on an idle resource leaves no trace.
        res.shrink();
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
            if res.is_idle() && res.fence + st.retain_us < now_micros() {
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
            st.drop_holder(&l.resource, t, l.kind, now, &self.router);
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
        self.view_lease(lock_id).await
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        self.view_inspect(resource).await
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        self.view_held(client_id).await
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        self.view_stats(top).await
    }

    async fn health(&self) -> Health {
        self.view_health().await
    }
}
