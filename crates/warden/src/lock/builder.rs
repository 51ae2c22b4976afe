//! One acquisition's options, and what happens when an acquire is cancelled.

#[allow(unused_imports)]
use super::*;

/// Options of one lock acquisition. Created by [`Warden::lock`].
#[derive(Debug, Clone)]
#[must_use = "a LockBuilder does nothing until acquire() is awaited"]
pub struct LockBuilder<'a> {
    pub(super) warden: &'a Warden,
    pub(super) resource: String,
    pub(super) kind: LockKind,
    pub(super) ttl: Duration,
    pub(super) wait: Duration,
    pub(super) client_id: Option<String>,
    pub(super) max_renewals: Option<u32>,
    pub(super) max_hold: Option<Duration>,
    pub(super) auto_renew: bool,
    pub(super) permits: u32,
    pub(super) condition: Option<Condition>,
    pub(super) priority: i32,
}

impl LockBuilder<'_> {
    /// Exclusive mode (the default).
    pub fn exclusive(mut self) -> Self {
        self.kind = LockKind::Exclusive;
        self
    }
    /// Shared mode: coexists with other shared holders.
    pub fn shared(mut self) -> Self {
        self.kind = LockKind::Shared;
        self
    }
    /// Any [`LockKind`] ([`LockKind::Semaphore`] also needs [`permits`](Self::permits)).
    pub fn kind(mut self, kind: LockKind) -> Self {
        self.kind = kind;
        self
    }
    /// One of `n` permits of a semaphore (1..=1000): up to `n` holders at once fleet-wide, each with its own
    /// lease, lock id and fencing token; later callers wait in FIFO order. The first holder or waiter fixes `n`
    /// while the resource is in use; asking with another `n` then fails with [`Error::Conflict`], as does asking
    /// for a lock on a resource in use as a semaphore (and the reverse).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let w = warden::Warden::connect("memory://").await.unwrap();
    /// let a = w.lock("encoder").permits(2).acquire().await.unwrap();
    /// let b = w.lock("encoder").permits(2).acquire().await.unwrap();
    /// assert!(w.lock("encoder").permits(2).try_acquire().await.unwrap().is_none());
    /// assert!(b.fencing_token() > a.fencing_token());
    /// # });
    /// ```
    pub fn permits(mut self, n: u32) -> Self {
        self.kind = LockKind::Semaphore;
        self.permits = n;
        self
    }
    /// Lease length (10 ms ..= 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
    /// How long to wait in the queue (0 = try once; at most 10 min).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = wait;
        self
    }
    /// Client id of this lease (defaults to the handle's).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.client_id = Some(id.into());
        self
    }
    /// Refuse renewals after `n`.
    pub fn max_renewals(mut self, n: u32) -> Self {
        self.max_renewals = Some(n);
        self
    }
    /// Never extend the lease past this long after the grant.
    pub fn max_hold(mut self, d: Duration) -> Self {
        self.max_hold = Some(d);
        self
    }
    /// Renew automatically about every ttl/3 (default true).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.auto_renew = on;
        self
    }

    /// Granted only if the resource's last fencing token is still `token`: nobody held it since the lease that
    /// received `token` (see [`Condition::FencingToken`]). Otherwise [`Error::ConditionFailed`].
    pub fn if_fencing_token(mut self, token: u64) -> Self {
        self.condition = Some(Condition::FencingToken(token));
        self
    }
    /// Granted only if nobody was granted the resource in the last `d` (see [`Condition::NotGrantedWithin`]).
    /// Otherwise [`Error::ConditionFailed`].
    pub fn if_not_granted_within(mut self, d: Duration) -> Self {
        self.condition = Some(Condition::NotGrantedWithin(d));
        self
    }
    /// Any [`Condition`] (or none).
    pub fn condition(mut self, condition: Option<Condition>) -> Self {
        self.condition = condition;
        self
    }

    /// Waits with `priority`, -100..=100 (default 0): a waiter of a higher priority is granted first, FIFO
    /// within one priority. A waiter queues as if it had arrived `priority` × [`validate::PRIORITY_STEP`]
    /// (100 ms) earlier, so it is overtaken only by higher-priority waiters that arrive within (their priority -
    /// its own) × 100 ms after it: waiting raises its effective priority and none starves. Refused with
    /// [`Error::Unsupported`] by a backend without [`Capabilities::priorities`] (unless 0).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let w = warden::Warden::connect("memory://").await.unwrap();
    /// let g = w.lock("printer").priority(10).acquire().await.unwrap();
    /// assert!(w.lock("printer").priority(101).try_acquire().await.is_err());
    /// # drop(g);
    /// # });
    /// ```
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    pub(super) fn request(&self) -> Result<AcquireRequest> {
        validate::resource(&self.resource)?;
        validate::ttl(self.ttl)?;
        validate::wait(self.wait)?;
        let client_id = self.client_id.clone().unwrap_or_else(|| self.warden.client_id.clone());
        validate::client_id(&client_id)?;
        let permits = if self.kind == LockKind::Semaphore {
            if self.permits == 0 {
                return Err(Error::invalid(
                    "permits",
                    "a semaphore needs its number of permits: use .permits(n) with n in 1..=1000",
                ));
            }
            validate::permits(self.permits)?;
            if !self.warden.backend.capabilities().semaphores {
                return Err(self.warden.backend.unsupported("semaphores"));
            }
            self.permits
        } else {
            0
        };
        if let Some(h) = self.max_hold {
            if h < validate::MIN_TTL || h > validate::MAX_TTL {
                return Err(Error::invalid("maxHold", "must be 10..=86400000 ms"));
            }
        }
        validate::priority(self.priority)?;
        if self.priority != 0 && !self.warden.backend.capabilities().priorities {
            return Err(self.warden.backend.unsupported("waiter priorities"));
        }
        if self.kind.is_intention() && !self.warden.backend.capabilities().intentions {
            return Err(self.warden.backend.unsupported("intention kinds (path locks)"));
        }
        if let Some(c) = &self.condition {
            validate::condition(c)?;
            if !self.warden.backend.capabilities().conditions {
                return Err(self.warden.backend.unsupported("conditional acquire"));
            }
        }
        Ok(AcquireRequest {
            resource: self.resource.clone(),
            kind: self.kind,
            ttl: self.ttl,
            client_id,
            lock_id: self.warden.backend.new_lock_id(&self.resource),
            max_renewals: self.max_renewals,
            max_hold: self.max_hold,
            waiter_lease: self.warden.waiter_lease,
            permits,
            condition: self.condition,
            priority: self.priority,
        })
    }

    /// Acquires the lock, waiting in FIFO order up to the configured wait.
    /// Fails with [`Error::Timeout`] when the wait runs out. Cancel-safe: dropping the future leaves the queue
    /// and releases a grant that raced with the cancellation.
    pub async fn acquire(self) -> Result<LockGuard> {
        let mut req = self.request()?;
        let (sent, mut grant) = wait_for_grant(self.warden, &req, self.wait, false).await?;
        if let Some(id) = grant.lock_id.take() {
            req.lock_id = id;
        }
        Ok(LockGuard::start(
            self.warden,
            req,
            sent,
            grant,
            self.auto_renew,
            CancellationToken::new(),
        ))
    }

    /// Tries once without waiting; `Ok(None)` if the lock is held.
    pub async fn try_acquire(self) -> Result<Option<LockGuard>> {
        match self.wait(Duration::ZERO).acquire().await {
            Ok(g) => Ok(Some(g)),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Acquires a bare lease with no guard: nothing renews or releases it (for the service and the CLI's
    /// one-shot commands, which hand the lock id to someone else).
    pub async fn acquire_lease(self) -> Result<LeaseInfo> {
        let req = self.request()?;
        let (_, g) = wait_for_grant(self.warden, &req, self.wait, true).await?;
        let lock_id = g.lock_id.unwrap_or(req.lock_id);
        Ok(LeaseInfo {
            lease_handle: crate::lease_handle(&lock_id),
            lock_id,
            resource: req.resource,
            kind: req.kind,
            client_id: req.client_id,
            acquired_at: g.acquired_at,
            expires_at: g.expires_at,
            ttl: req.ttl,
            fencing_token: g.fencing_token,
            renewal_count: 0,
            expired: false,
        })
    }

    /// Runs `f` under the lock and always releases afterwards, also when `f` panics or is cancelled
    /// (then in the background). Returns [`Error::LeaseLost`] instead of `f`'s value if the lease was lost
    /// before `f` finished: `f` should select on [`LeaseContext::lost`] and stop writing.
    pub async fn run<T, F, Fut>(self, f: F) -> Result<T>
    where
        F: FnOnce(LeaseContext) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut guard = self.acquire().await?;
        let out = f(guard.context()).await;
        let lost = guard.is_lost();
        let released = guard.release().await;
        if lost {
            return Err(Error::LeaseLost {
                lock_id: guard.lock_id().to_string(),
                resource: guard.resource().to_string(),
            });
        }
        released.map(|_| out)
    }
}

/// Removes a waiter from the queue (and releases a racing grant) if the acquire future is dropped.
pub(super) struct CancelCleanup {
    pub(super) backend: Arc<dyn Backend>,
    pub(super) resource: String,
    pub(super) waiter_id: Option<String>,
    pub(super) lock_id: String,
    pub(super) client_id: String,
    pub(super) ttl: Duration,
    pub(super) armed: bool,
}

impl Drop for CancelCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let backend = self.backend.clone();
        let resource = std::mem::take(&mut self.resource);
        let mut waiter = self.waiter_id.take();
        let lock_id = std::mem::take(&mut self.lock_id);
        let client_id = std::mem::take(&mut self.client_id);
        let give_up = Instant::now() + self.ttl;
        rt.spawn(async move {
            // An attempt that failed or was cancelled may still have been applied (a paused node answers
            // late): release its token, retrying while the backend is unreachable, until the lease would
            // have expired anyway.
            let mut backoff = Duration::from_millis(20);
            loop {
                if let Some(w) = &waiter {
                    if backend.leave_queue(&resource, w).await.is_ok() {
                        waiter = None;
                    }
                }
                let released = !matches!(backend.release(&lock_id, Some(&client_id)).await, Err(e) if e.is_retryable());
                if (released && waiter.is_none()) || Instant::now() + backoff >= give_up {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
    }
}
