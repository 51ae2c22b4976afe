//! A held lease: its guard, its context, and its release.

#[allow(unused_imports)]
use super::*;

/// What a critical section run by [`LockBuilder::run`] gets: the fencing token and the lost signal.
#[derive(Debug, Clone)]
pub struct LeaseContext {
    pub(super) fencing_token: u64,
    pub(super) lock_id: String,
    pub(super) lost: CancellationToken,
}

impl LeaseContext {
    /// The lease's fencing token (as [`LockGuard::fencing_token`]): hand it to the protected resource with every
    /// write, so that a write of a holder whose lease has ended is refused.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }
    /// The lease's lock id (as [`LockGuard::lock_id`]): its owner's secret.
    pub fn lock_id(&self) -> &str {
        &self.lock_id
    }
    /// Resolves when the lease can no longer be trusted.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }
    /// Whether the lease is already lost.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
}

#[derive(Debug)]
pub(super) struct LeaseState {
    pub(super) valid_until: Instant,
    pub(super) next_renew: Instant,
    pub(super) expires_at: SystemTime,
    pub(super) renewal_count: u32,
    pub(super) ttl: Duration,
    pub(super) capped: bool,
    /// The lease was handed over for less than its ttl: one renewal claims the rest, even without auto-renew.
    pub(super) claim: bool,
}

pub(super) struct GuardShared {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) analytics: Arc<Analytics>,
    pub(super) req: AcquireRequest,
    pub(super) fencing_token: u64,
    pub(super) acquired_at: SystemTime,
    pub(super) state: Mutex<LeaseState>,
    pub(super) lost: CancellationToken,
    pub(super) stop: CancellationToken,
    pub(super) changed: Notify,
}

impl GuardShared {
    pub(super) fn state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A held lease. Renews itself (unless disabled), fires [`LockGuard::lost`] when the lease can no longer be
/// trusted, and releases in the background when dropped without [`LockGuard::release`].
pub struct LockGuard {
    pub(super) shared: Arc<GuardShared>,
    pub(super) released: bool,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("resource", &self.shared.req.resource)
            .field("fencing_token", &self.shared.fencing_token)
            .field("lost", &self.shared.lost.is_cancelled())
            .finish()
    }
}

impl LockGuard {
    pub(super) fn start(
        warden: &Warden,
        req: AcquireRequest,
        sent: Instant,
        grant: crate::types::Grant,
        auto_renew: bool,
        lost: CancellationToken,
    ) -> Self {
        let ttl = req.ttl;
        // A lease found granted earlier, or handed over for less than the ttl, had only `remaining` left at
        // `sent`; the drift allowance is taken over that span.
        let left = grant.remaining.unwrap_or(ttl).min(ttl);
        let valid_until = sent + left.saturating_sub(drift(left));
        let shared = Arc::new(GuardShared {
            backend: warden.backend.clone(),
            analytics: warden.analytics.clone(),
            fencing_token: grant.fencing_token,
            acquired_at: grant.acquired_at,
            state: Mutex::new(LeaseState {
                valid_until,
                next_renew: sent + left / 3,
                expires_at: grant.expires_at,
                renewal_count: 0,
                ttl,
                capped: false,
                claim: left < ttl,
            }),
            req,
            lost,
            stop: CancellationToken::new(),
            changed: Notify::new(),
        });
        if valid_until <= Instant::now() {
            shared.lost.cancel();
        } else {
            tokio::spawn(watchdog(shared.clone(), auto_renew));
        }
        LockGuard {
            shared,
            released: false,
        }
    }

    /// The lease's secret lock id.
    pub fn lock_id(&self) -> &str {
        &self.shared.req.lock_id
    }
    /// The locked resource.
    pub fn resource(&self) -> &str {
        &self.shared.req.resource
    }
    /// The lease's kind.
    pub fn kind(&self) -> LockKind {
        self.shared.req.kind
    }
    /// The fencing token: pass it to the protected resource, which must reject tokens lower than the
    /// highest it has seen.
    pub fn fencing_token(&self) -> u64 {
        self.shared.fencing_token
    }
    /// When the backend granted the lease (backend clock).
    pub fn acquired_at(&self) -> SystemTime {
        self.shared.acquired_at
    }
    /// When the backend will expire the lease unless renewed (backend clock).
    pub fn expires_at(&self) -> SystemTime {
        self.shared.state().expires_at
    }
    /// Renewals so far.
    pub fn renewal_count(&self) -> u32 {
        self.shared.state().renewal_count
    }
    /// The local monotonic deadline until which the lease can be trusted.
    pub fn valid_until(&self) -> Instant {
        self.shared.state().valid_until
    }
    /// Remaining trusted validity (zero once lost).
    pub fn remaining(&self) -> Duration {
        if self.is_lost() {
            return Duration::ZERO;
        }
        self.valid_until().saturating_duration_since(Instant::now())
    }
    /// Whether the lease can no longer be trusted.
    pub fn is_lost(&self) -> bool {
        self.shared.lost.is_cancelled()
    }
    /// Resolves when the lease can no longer be trusted: renewal refused, not confirmed before the
    /// validity deadline, or the deadline passed without renewal. Select on it in the critical section.
    pub async fn lost(&self) {
        self.shared.lost.cancelled().await
    }
    /// A token that is cancelled when the lease is lost (to hand to other tasks).
    pub fn lost_token(&self) -> CancellationToken {
        self.shared.lost.child_token()
    }
    /// The fencing token and lost signal, cloneable into tasks.
    pub fn context(&self) -> LeaseContext {
        LeaseContext {
            fencing_token: self.fencing_token(),
            lock_id: self.lock_id().to_string(),
            lost: self.lost_token(),
        }
    }

    /// Renews now for `ttl` from now. On a refusal the lease is marked lost.
    pub async fn renew(&self, ttl: Duration) -> Result<()> {
        validate::ttl(ttl)?;
        if self.is_lost() {
            return Err(self.lost_error());
        }
        let sent = Instant::now();
        let valid_until = self.valid_until();
        let renewal = self
            .shared
            .backend
            .renew(self.lock_id(), Some(ttl), Some(&self.shared.req.client_id));
        match timeout_at(valid_until, renewal).await {
            Err(_) => {
                self.shared.lost.cancel();
                Err(self.lost_error())
            }
            Ok(Ok(r)) => {
                apply_renewal(&self.shared, sent, ttl, r);
                self.shared.changed.notify_one();
                Ok(())
            }
            Ok(Err(e)) => {
                if !e.is_retryable() {
                    self.shared.lost.cancel();
                }
                Err(e)
            }
        }
    }

    pub(super) fn lost_error(&self) -> Error {
        Error::LeaseLost {
            lock_id: self.lock_id().to_string(),
            resource: self.resource().to_string(),
        }
    }

    /// Releases the lease and reports the outcome. Idempotent: a second call returns `Ok(())`.
    /// Returns [`Error::LeaseLost`] if the lease had already ended (expired or taken away).
    pub async fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        self.shared.stop.cancel();
        match self
            .shared
            .backend
            .release(self.lock_id(), Some(&self.shared.req.client_id))
            .await
        {
            Ok(released) => {
                let held = released
                    .held_for
                    .unwrap_or_else(|| self.shared.acquired_at.elapsed().unwrap_or_default());
                self.shared.analytics.record_release(self.resource(), held);
                Ok(())
            }
            Err(Error::NotFound { .. }) | Err(Error::LeaseLost { .. }) => {
                self.shared.analytics.record_expiry(self.resource(), None);
                self.shared.lost.cancel();
                Err(self.lost_error())
            }
            Err(e) => {
                if e.is_retryable() {
                    spawn_release_retries(self.shared.clone(), RETRY_PAUSE);
                }
                Err(e)
            }
        }
    }
}

impl LockGuard {
    /// Releases without touching the lost signal (which a group's members share): for a lease taken and given
    /// back before its group was whole. What the backend could not take is retried in the background.
    pub(super) async fn let_go(mut self) {
        self.released = true;
        self.shared.stop.cancel();
        let r = self
            .shared
            .backend
            .release(self.lock_id(), Some(&self.shared.req.client_id))
            .await;
        if matches!(r, Err(e) if e.is_retryable()) {
            spawn_release_retries(self.shared.clone(), RETRY_PAUSE);
        }
    }

    /// Stops renewing and hands the lease over as a bare [`LeaseInfo`] (for callers that pass the lock id on,
    /// like the service): nothing releases it any more.
    pub(super) fn into_lease(mut self) -> LeaseInfo {
        self.released = true;
        self.shared.stop.cancel();
        let st = self.shared.state();
        let req = &self.shared.req;
        LeaseInfo {
            lease_handle: crate::lease_handle(&req.lock_id),
            lock_id: req.lock_id.clone(),
            resource: req.resource.clone(),
            kind: req.kind,
            client_id: req.client_id.clone(),
            acquired_at: self.shared.acquired_at,
            expires_at: st.expires_at,
            ttl: st.ttl,
            fencing_token: self.shared.fencing_token,
            renewal_count: st.renewal_count,
            expired: false,
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        if self.released {
            return;
        }
        spawn_release_retries(self.shared.clone(), Duration::ZERO);
    }
}
