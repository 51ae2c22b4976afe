//! Expiries, for the audit trail and the analytics. Backends end leases silently (Redis by the clock, not by
//! a message), so the instance that granted a lease looks at it once when it should have ended: still
//! extended (renewed, maybe through another instance) means look again at the new end; ended and not
//! released means an `expiry` event and an expiry counted for its resource. A release through this instance
//! stops the watch and counts the hold time. At most [`MAX_WATCHED`] leases are watched at once (more are
//! counted in `warden_audit_unwatched_total`).

use crate::audit::{Audit, Event};
use crate::state::AppState;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::Instant;
use warden::{LeaseInfo, Warden};

/// Most leases watched at once per instance.
pub const MAX_WATCHED: usize = 100_000;
/// Stale heap entries tolerated beyond twice the watched leases before the heap is rebuilt.
const COMPACT_SLACK: usize = 4096;
/// How long after its end a lease is looked at (backend clocks and the renewal in flight settle).
const GRACE: Duration = Duration::from_millis(50);

#[derive(Default)]
struct Inner {
    due: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// lock id -> (sequence of its current entry in `due`, the lease as last seen).
    leases: HashMap<String, (u64, LeaseInfo)>,
    seq: u64,
}

/// The leases this instance granted, by when they should end.
#[derive(Default)]
pub struct ExpiryWatch {
    inner: Mutex<Inner>,
    wake: Notify,
}

impl std::fmt::Debug for ExpiryWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The keys are lock ids: never shown.
        let n = self.inner.lock().map(|g| g.leases.len()).unwrap_or(0);
        f.debug_struct("ExpiryWatch").field("watched", &n).finish()
    }
}

/// Counts the hold time of a watched lease released through this instance.
pub(crate) fn count_release(state: &AppState, lease: &LeaseInfo, released: &warden::Released) {
    let held = released
        .held_for
        .unwrap_or_else(|| lease.acquired_at.elapsed().unwrap_or_default());
    state.warden().analytics().record_release(&lease.resource, held);
}

/// Counts a lease that ended unreleased, and tells the trail.
fn count_expiry(warden: &Warden, audit: &Audit, lease: &LeaseInfo) {
    let held = lease.expires_at.duration_since(lease.acquired_at).ok();
    warden.analytics().record_expiry(&lease.resource, held);
    if audit.active() {
        audit.emit(Event::new("expiry", "-").lease(lease));
    }
}

fn deadline(l: &LeaseInfo) -> Instant {
    let left = l.expires_at.duration_since(SystemTime::now()).unwrap_or_default();
    Instant::now() + left + GRACE
}

impl ExpiryWatch {
    /// Watches `lease` until it ends.
    pub fn watch(&self, lease: &LeaseInfo) {
        self.watch_at(lease, deadline(lease));
    }

    fn watch_at(&self, lease: &LeaseInfo, at: Instant) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.leases.len() >= MAX_WATCHED && !g.leases.contains_key(&lease.lock_id) {
            metrics::counter!("warden_audit_unwatched_total").increment(1);
            return;
        }
        g.seq += 1;
        let seq = g.seq;
        let earliest = g.due.peek().is_none_or(|Reverse((t, _, _))| at < *t);
        g.due.push(Reverse((at, seq, lease.lock_id.clone())));
        g.leases.insert(lease.lock_id.clone(), (seq, lease.clone()));
        drop(g);
        if earliest {
            self.wake.notify_one();
        }
    }

    /// Stops watching a lease (released), answering what was known of it.
    pub fn forget(&self, lock_id: &str) -> Option<LeaseInfo> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        // Its heap entry stays and is skipped when due: its sequence no longer matches. Released leases would
        // pile up there for a ttl each (600,000 entries at 20k grants/s of 30 s leases): past twice the watched
        // leases, the heap is rebuilt from them (amortised: one rebuild per as many releases as are watched).
        let known = g.leases.remove(lock_id).map(|(_, l)| l);
        if g.due.len() > 2 * g.leases.len() + COMPACT_SLACK {
            let Inner { due, leases, .. } = &mut *g;
            *due = leases
                .iter()
                .map(|(id, (seq, l))| Reverse((deadline(l), *seq, id.clone())))
                .collect();
        }
        known
    }

    /// The lease as last seen, if watched.
    pub fn peek(&self, lock_id: &str) -> Option<LeaseInfo> {
        let g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        g.leases.get(lock_id).map(|(_, l)| l.clone())
    }

    /// Leases due now, removed from the watch.
    fn take_due(&self) -> (Vec<LeaseInfo>, Option<Instant>) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut due = Vec::new();
        while g.due.peek().is_some_and(|Reverse((at, _, _))| *at <= now) {
            let Some(Reverse((_, seq, id))) = g.due.pop() else {
                break;
            };
            if g.leases.get(&id).is_some_and(|(s, _)| *s == seq) {
                if let Some((_, l)) = g.leases.remove(&id) {
                    due.push(l);
                }
            }
        }
        let next = g.due.peek().map(|Reverse((at, _, _))| *at);
        (due, next)
    }

    /// Runs until the process ends: looks at each lease when due.
    pub async fn run(self: Arc<Self>, warden: Warden, audit: Arc<Audit>) {
        loop {
            let (due, next) = self.take_due();
            for l in due {
                match warden.lease(&l.lock_id).await {
                    Ok(Some(now)) if !now.expired && now.expires_at > SystemTime::now() => self.watch(&now),
                    Ok(Some(now)) => count_expiry(&warden, &audit, &now),
                    // A store of this process alone forgets a lease when it expires, and every release went
                    // through here (and stopped the watch): gone means expired.
                    Ok(None) if !warden.capabilities().shared_across_processes => count_expiry(&warden, &audit, &l),
                    // A shared store keeps an expired lease's record a while: gone means released through
                    // another instance (whose trail has it), or expired long ago while this one was behind.
                    Ok(None) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot look at a lease for the audit trail; retrying");
                        self.watch_at(&l, Instant::now() + Duration::from_secs(1));
                    }
                }
            }
            match next {
                Some(at) => tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = self.wake.notified() => {}
                },
                None => self.wake.notified().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use warden::types::{AcquireRequest, Grant};
    use warden::LockKind;

    fn lease(i: usize) -> LeaseInfo {
        let (ttl, now) = (Duration::from_secs(30), SystemTime::now());
        let req = AcquireRequest::new("r", LockKind::Exclusive, ttl, "c", &format!("{i:032x}"), ttl);
        LeaseInfo::granted(&req, &Grant::new(i as u64 + 1, now, now + ttl))
    }

    #[test]
    fn released_leases_do_not_pile_up_in_the_heap() {
        let watch = ExpiryWatch::default();
        for i in 0..50_000 {
            let l = lease(i);
            watch.watch(&l);
            assert!(watch.forget(&l.lock_id).is_some());
        }
        let kept = lease(50_000);
        watch.watch(&kept);
        let g = watch.inner.lock().unwrap_or_else(|p| p.into_inner());
        assert!(
            g.due.len() <= COMPACT_SLACK + 3,
            "{} heap entries for 1 watched lease",
            g.due.len()
        );
        assert_eq!(g.leases.len(), 1);
    }
}
