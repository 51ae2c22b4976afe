//! What this client remembers between calls: waiter scores, attempt tokens, fence hints and lease ends.

#[allow(unused_imports)]
use super::*;

impl RedlockBackend {
    pub(super) fn score_for(&self, waiter: &str) -> u64 {
        let mut m = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAP_CAP && !m.contains_key(waiter) {
            m.clear();
        }
        *m.entry(waiter.to_string()).or_insert_with(now_micros)
    }

    pub(super) fn forget_waiter(&self, waiter: &str) {
        self.scores.lock().unwrap_or_else(|p| p.into_inner()).remove(waiter);
    }

    /// The token of the next attempt of the acquire call `lock_id`.
    pub(super) fn next_token(&self, lock_id: &str) -> String {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAP_CAP && !m.contains_key(lock_id) {
            m.clear();
        }
        let n = m.entry(lock_id.to_string()).or_insert(0);
        *n += 1;
        format!("{lock_id}-{n}")
    }

    pub(super) fn fence_hint(&self, resource: &str) -> Option<u64> {
        self.fence_hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .copied()
    }

    pub(super) fn remember_fence(&self, resource: &str, fence: u64) {
        let mut m = self.fence_hints.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_FENCE_HINTS && !m.contains_key(resource) {
            m.clear();
        }
        let e = m.entry(resource.to_string()).or_insert(fence);
        *e = (*e).max(fence);
    }

    pub(super) fn forget_fence(&self, resource: &str) {
        self.fence_hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(resource);
    }

    /// Releases `token` on every node in the background (a failed attempt's clean-up), retrying on nodes
    /// that cannot be reached until the attempt's lease would have ended.
    pub(super) fn release_everywhere(&self, token: String, ttl: Duration) {
        let (token, deadline): (Arc<str>, Instant) = (Arc::from(token), Instant::now() + ttl);
        for n in &self.nodes {
            tokio::spawn(n.clone().release(token.clone(), None, deadline));
        }
    }

    /// Notes that the lease `token` is valid until `until` on this client's clock.
    pub(super) fn remember_lease(&self, token: &str, until: Instant) {
        let mut m = self.lease_ends.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAP_CAP && !m.contains_key(token) {
            m.clear();
        }
        m.insert(token.to_string(), until);
    }

    /// Until when a release of `token` is worth retrying: the lease's end if this client granted or renewed
    /// it, else [`UNKNOWN_LEASE_RETRY`] from now.
    pub(super) fn lease_end(&self, token: &str) -> Instant {
        self.lease_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
            .unwrap_or_else(|| Instant::now() + UNKNOWN_LEASE_RETRY)
    }
}
