//! What a process knows of its resources' handovers, so that a queue's handoffs reach the database in the order
//! that keeps the queue moving. A queued resource's release is what its whole queue waits for; a join of the
//! queue will wait its turn anyway.
//!
//! - The lease a waiter of this process may be handed, by lock id: its release locks the resource's row at once
//!   (`release_held`), without first looking up the lease by lock id.
//! - Batons: a release that handed the resource to one of this process's waiters expects that holder's release
//!   next, and this process's next join of the queue waits (at most [`BATON`]) until that release is on its way,
//!   so that it finds the row locked and joins after it. Otherwise both reach the database at once (a worker that
//!   released comes back to queue as the one it handed over to releases), and when the join takes the row first
//!   the release, and the whole queue behind it, waits for the join.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Longest a join waits for the release of the holder this process handed the resource to.
const BATON: Duration = Duration::from_millis(1);
/// Most entries of either kind (past it they are forgotten in bulk; a forgotten one costs a look-up or a race).
const MAX: usize = 65_536;

#[derive(Default)]
pub(super) struct Handovers {
    /// Lock ids of this process's queued exclusive waiters, with their resource.
    queued: Mutex<HashMap<String, String>>,
    /// Resources (by hash) handed to a waiter of this process whose release has not been sent yet.
    batons: Mutex<HashMap<u32, Arc<Notify>>>,
}

fn bounded<K: std::hash::Hash + Eq, V>(m: &mut HashMap<K, V>) -> &mut HashMap<K, V> {
    if m.len() >= MAX {
        m.clear();
    }
    m
}

impl Handovers {
    /// An exclusive waiter of this process joined `resource`'s queue with `lock_id`.
    pub(super) fn queued(&self, lock_id: &str, resource: &str) {
        if let Ok(mut m) = self.queued.lock() {
            bounded(&mut m).insert(lock_id.into(), resource.into());
        }
    }

    /// The resource of a lease this process's waiter may have been handed (forgotten: its release is on its way).
    pub(super) fn take(&self, lock_id: &str) -> Option<String> {
        self.queued.lock().ok()?.remove(lock_id)
    }

    /// A release handed the resource of `hash` to one of this process's waiters.
    pub(super) fn passed(&self, hash: u32) {
        if let Ok(mut m) = self.batons.lock() {
            bounded(&mut m).entry(hash).or_default();
        }
    }

    /// A release of a lease on the resource of `hash` is being sent.
    pub(super) fn returned(&self, hash: u32) {
        if let Some(n) = self.batons.lock().ok().and_then(|mut m| m.remove(&hash)) {
            n.notify_waiters();
        }
    }

    /// Waits until the holder a release handed the resource of `hash` to sends its release ([`BATON`] at most).
    pub(super) async fn wait(&self, hash: u32) {
        let Some(n) = self.batons.lock().ok().and_then(|m| m.get(&hash).cloned()) else {
            return;
        };
        let notified = n.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // Returned between the look-up and `enable`: nothing to wait for.
        if !self
            .batons
            .lock()
            .is_ok_and(|m| m.get(&hash).is_some_and(|x| Arc::ptr_eq(x, &n)))
        {
            return;
        }
        let _ = tokio::time::timeout(BATON, notified).await;
    }
}

#[cfg(test)]
mod tests {
    use super::{Handovers, BATON};
    use std::sync::Arc;
    use tokio::time::Instant;

    #[tokio::test(start_paused = true)]
    async fn a_join_goes_when_the_release_it_waits_for_is_sent() {
        let h = Arc::new(Handovers::default());
        let start = Instant::now();
        h.wait(7).await;
        assert_eq!(start.elapsed().as_micros(), 0, "nothing handed over: no wait");

        h.passed(7);
        let join = tokio::spawn({
            let h = h.clone();
            async move { h.wait(7).await }
        });
        tokio::task::yield_now().await;
        assert!(!join.is_finished(), "waits for the holder's release");
        h.returned(8);
        tokio::task::yield_now().await;
        assert!(!join.is_finished(), "another resource's release is not the one");
        h.returned(7);
        join.await.expect("join");
        assert_eq!(
            start.elapsed().as_micros(),
            0,
            "went as the release was sent, not at the baton's end"
        );

        h.passed(7);
        h.wait(7).await;
        assert!(
            start.elapsed() >= BATON,
            "a holder that does not release soon holds a join {BATON:?} at most"
        );
        h.returned(7);
        h.wait(7).await;
    }

    #[test]
    fn a_queued_lease_is_taken_once() {
        let h = Handovers::default();
        h.queued("id-1", "r");
        assert_eq!(h.take("id-1").as_deref(), Some("r"));
        assert_eq!(h.take("id-1"), None);
    }
}
