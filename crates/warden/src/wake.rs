//! Routes wake-up notifications to the waiters of this process.
//!
//! A waiter registers its id *before* its first queued attempt, so a notification published after the
//! backend queued it always finds it (tokio's `Notify` keeps one permit if nobody is waiting yet).
//! A notification may carry a grant: a backend that hands the lock to the head of the queue when it is
//! released tells the waiter what it was granted, so the waiter needs no round trip of its own.

use crate::types::Grant;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Map from waiter id to the waiter's wake-up handle.
#[derive(Debug, Default)]
pub struct WakeRouter {
    waiters: Mutex<HashMap<String, Arc<Slot>>>,
}

#[derive(Debug, Default)]
struct Slot {
    notify: Notify,
    grant: Mutex<Option<Grant>>,
    /// When the lease now blocking this waiter ends, if the backend said so after the waiter's last attempt
    /// (a release handed the lock to the waiter ahead of it): the waiter re-times its sleep, no round trip.
    blocked_until: Mutex<Option<Instant>>,
    retimed: Notify,
}

/// A registered waiter; deregisters on drop.
#[derive(Debug)]
pub struct Registration {
    router: Arc<WakeRouter>,
    id: String,
    slot: Arc<Slot>,
}

impl Registration {
    /// The waiter id to hand to the backend.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Resolves when a notification for this waiter arrived (or arrived since the last call).
    pub async fn notified(&self) {
        self.slot.notify.notified().await
    }
    /// The grant a notification delivered (a lock handed over on release), if any; taken once.
    pub fn take_grant(&self) -> Option<Grant> {
        self.slot.grant.lock().ok()?.take()
    }
    /// Resolves when the backend told this waiter when the lease blocking it ends ([`Registration::take_blocked_until`]).
    pub async fn retimed(&self) {
        self.slot.retimed.notified().await
    }
    /// When the lease blocking this waiter ends, if a notification said so since the last call; taken once.
    pub fn take_blocked_until(&self) -> Option<Instant> {
        self.slot.blocked_until.lock().ok()?.take()
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.router.waiters.lock() {
            m.remove(&self.id);
        }
    }
}

impl WakeRouter {
    /// Registers a waiter under `id`.
    pub fn register(self: &Arc<Self>, id: String) -> Registration {
        let slot = Arc::new(Slot::default());
        if let Ok(mut m) = self.waiters.lock() {
            m.insert(id.clone(), slot.clone());
        }
        Registration {
            router: self.clone(),
            id,
            slot,
        }
    }

    /// Wakes the named waiters that live in this process; unknown ids are ignored.
    pub fn wake<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(m) = self.waiters.lock() {
            for id in ids {
                if let Some(s) = m.get(id) {
                    s.notify.notify_one();
                }
            }
        }
    }

    /// Tells a waiter of this process that the lock was handed to it (unknown ids are ignored); whether `id` is
    /// one of this process's waiters.
    pub fn grant(&self, id: &str, grant: Grant) -> bool {
        let Ok(m) = self.waiters.lock() else {
            return false;
        };
        let Some(s) = m.get(id) else {
            return false;
        };
        if let Ok(mut g) = s.grant.lock() {
            *g = Some(grant);
        }
        s.notify.notify_one();
        true
    }

    /// Tells a waiter of this process when the lease now blocking it ends (unknown ids are ignored).
    pub fn blocked_until(&self, id: &str, at: Instant) {
        if let Ok(m) = self.waiters.lock() {
            if let Some(s) = m.get(id) {
                if let Ok(mut b) = s.blocked_until.lock() {
                    *b = Some(b.map_or(at, |old| old.min(at)));
                }
                s.retimed.notify_one();
            }
        }
    }

    /// Delivers one notification of a backend that hands locks over: space-separated waiter ids to wake, each
    /// either bare or, when a release handed the lock over, `waiter_id:fence:acquired_ms:expires_ms` (times in
    /// ms since the epoch on the backend's clock); after a handover, `waiter_id@ms` tells the next waiter in line
    /// that the lease just handed over ends in `ms`. Unknown ids and malformed items are ignored or only wake.
    /// Answers how many grants went to this process's waiters.
    ///
    /// ```
    /// let router = std::sync::Arc::new(warden::wake::WakeRouter::default());
    /// let w = router.register("w1".into());
    /// assert_eq!(router.deliver("w1:42:1000:1300 w2@300 w3:43:1300:1600"), 1, "w3 waits elsewhere");
    /// let g = w.take_grant().expect("handed over");
    /// assert_eq!(g.fencing_token, 42);
    /// assert_eq!(g.remaining, Some(std::time::Duration::from_millis(300)));
    /// ```
    pub fn deliver(&self, payload: &str) -> usize {
        let mut granted = 0;
        for item in payload.split(' ') {
            if let Some((id, ms)) = item.split_once('@') {
                if let Ok(ms) = ms.parse::<u64>() {
                    // +1 ms: expiry is strict, and the backend's clock was read in whole milliseconds.
                    self.blocked_until(id, Instant::now() + std::time::Duration::from_millis(ms + 1));
                }
                continue;
            }
            let Some((id, grant)) = item.split_once(':') else {
                self.wake([item]);
                continue;
            };
            let mut f = grant.splitn(3, ':').map(|x| x.parse::<u64>().ok());
            match (f.next().flatten(), f.next().flatten(), f.next().flatten()) {
                (Some(fence), Some(acq), Some(exp)) if exp >= acq => {
                    let at = |ms: u64| std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
                    let g = Grant::new(fence, at(acq), at(exp)).found_with(std::time::Duration::from_millis(exp - acq));
                    granted += usize::from(self.grant(id, g));
                }
                _ => self.wake([id]),
            }
        }
        granted
    }

    /// Wakes every local waiter (after a notification channel was interrupted, messages may be lost).
    pub fn wake_all(&self) {
        if let Ok(m) = self.waiters.lock() {
            for s in m.values() {
                s.notify.notify_one();
            }
        }
    }

    /// Number of registered waiters.
    pub fn len(&self) -> usize {
        self.waiters.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True if no waiter is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
