//! Locks built on a [`Backend`]: the waiting loop, guards, automatic renewal and the lost signal.

use crate::backend::{self, Backend};
use crate::error::{Error, Result};
use crate::token;
use crate::types::{
    AcquireRequest, Attempt, Capabilities, Health, LeaseInfo, LockKind, Released, Renewal, ResourceInfo, Stats,
};
use crate::validate;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::Notify;
use tokio::time::{sleep_until, timeout_at, Instant};
use tokio_util::sync::CancellationToken;

/// Default lease length.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// Default wait for [`LockBuilder::acquire`].
pub const DEFAULT_WAIT: Duration = Duration::from_secs(5);
/// Default queue lease of a waiter: a waiter that stops heartbeating leaves the queue after this long.
pub const DEFAULT_WAITER_LEASE: Duration = Duration::from_secs(3);

/// The clock drift allowance subtracted from every lease's validity: 1% of the TTL plus 2 ms.
pub fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// A handle to a lock backend: the entry point of the library.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let warden = warden::Warden::connect("memory://").await?;
/// let mut guard = warden.lock("inventory:sku-1").ttl(std::time::Duration::from_secs(10)).acquire().await?;
/// let fence = guard.fencing_token(); // hand this to the protected resource with every write
/// assert!(fence > 0);
/// guard.release().await?;
/// # Ok::<(), warden::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Warden {
    backend: Arc<dyn Backend>,
    client_id: String,
    waiter_lease: Duration,
}

impl std::fmt::Debug for Warden {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Warden")
            .field("backend", &self.backend.kind())
            .field("client_id", &self.client_id)
            .finish()
    }
}

impl Warden {
    /// Connects to the backend named by `url` (see [`backend::connect`]).
    pub async fn connect(url: &str) -> Result<Self> {
        Ok(Self::with_backend(backend::connect(url).await?))
    }

    /// Wraps an already opened backend.
    pub fn with_backend(backend: Arc<dyn Backend>) -> Self {
        Warden {
            backend,
            client_id: format!("pid-{}", std::process::id()),
            waiter_lease: DEFAULT_WAITER_LEASE,
        }
    }

    /// Sets the default client id of locks taken through this handle.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Result<Self> {
        let id = client_id.into();
        validate::client_id(&id)?;
        self.client_id = id;
        Ok(self)
    }

    /// Sets how long a queued waiter stays queued without a heartbeat (it heartbeats every third of it).
    pub fn with_waiter_lease(mut self, lease: Duration) -> Result<Self> {
        if lease < Duration::from_millis(30) || lease > Duration::from_secs(60) {
            return Err(Error::invalid("waiter_lease", "must be 30..=60000 ms"));
        }
        self.waiter_lease = lease;
        Ok(self)
    }

    /// The backend under this handle.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The default client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// What the backend can promise.
    pub fn capabilities(&self) -> Capabilities {
        self.backend.capabilities()
    }

    /// Starts building a lock on `resource` (exclusive, 30 s TTL, 5 s wait, auto-renewing by default).
    pub fn lock(&self, resource: impl Into<String>) -> LockBuilder<'_> {
        LockBuilder {
            warden: self,
            resource: resource.into(),
            kind: LockKind::Exclusive,
            ttl: DEFAULT_TTL,
            wait: DEFAULT_WAIT,
            client_id: None,
            max_renewals: None,
            max_hold: None,
            auto_renew: true,
        }
    }

    /// Runs `f` under an exclusive lock on `resource` (default options) and always releases afterwards.
    /// See [`LockBuilder::run`].
    pub async fn with_lock<T, F, Fut>(&self, resource: impl Into<String>, f: F) -> Result<T>
    where
        F: FnOnce(LeaseContext) -> Fut,
        Fut: Future<Output = T>,
    {
        self.lock(resource).run(f).await
    }

    /// Releases a lease by lock id (for callers that hold only the id, like the service).
    pub async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        validate::lock_id(lock_id)?;
        self.backend.release(lock_id, client_id).await
    }

    /// Renews a lease by lock id for `ttl` from now (`None`: for the lease's own ttl).
    pub async fn renew(
        &self,
        lock_id: &str,
        ttl: impl Into<Option<Duration>>,
        client_id: Option<&str>,
    ) -> Result<Renewal> {
        let ttl = ttl.into();
        validate::lock_id(lock_id)?;
        if let Some(t) = ttl {
            validate::ttl(t)?;
        }
        self.backend.renew(lock_id, ttl, client_id).await
    }

    /// The lease with this lock id, if still known.
    pub async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        validate::lock_id(lock_id)?;
        self.backend.lease(lock_id).await
    }

    /// Who holds `resource` and who waits for it.
    pub async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        validate::resource(resource)?;
        self.backend.inspect(resource).await
    }

    /// Leases held now by `client_id`.
    pub async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        validate::client_id(client_id)?;
        self.backend.held(client_id).await
    }

    /// Cluster-wide statistics with the ten most-granted resources.
    pub async fn stats(&self) -> Result<Stats> {
        self.backend.stats(10).await
    }

    /// The counters of [`Warden::stats`] without the top resources: cheap enough for liveness probes.
    pub async fn counts(&self) -> Result<Stats> {
        self.backend.stats(0).await
    }

    /// Reachability of the backend.
    pub async fn health(&self) -> Health {
        self.backend.health().await
    }
}

/// Options of one lock acquisition. Created by [`Warden::lock`].
#[derive(Debug, Clone)]
#[must_use = "a LockBuilder does nothing until acquire() is awaited"]
pub struct LockBuilder<'a> {
    warden: &'a Warden,
    resource: String,
    kind: LockKind,
    ttl: Duration,
    wait: Duration,
    client_id: Option<String>,
    max_renewals: Option<u32>,
    max_hold: Option<Duration>,
    auto_renew: bool,
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
    /// Any [`LockKind`].
    pub fn kind(mut self, kind: LockKind) -> Self {
        self.kind = kind;
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

    fn request(&self) -> Result<AcquireRequest> {
        validate::resource(&self.resource)?;
        validate::ttl(self.ttl)?;
        validate::wait(self.wait)?;
        let client_id = self.client_id.clone().unwrap_or_else(|| self.warden.client_id.clone());
        validate::client_id(&client_id)?;
        if let Some(h) = self.max_hold {
            if h < validate::MIN_TTL || h > validate::MAX_TTL {
                return Err(Error::invalid("maxHold", "must be 10..=86400000 ms"));
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
        })
    }

    /// Acquires the lock, waiting in FIFO order up to the configured wait.
    /// Fails with [`Error::Timeout`] when the wait runs out. Cancel-safe: dropping the future leaves the queue
    /// and releases a grant that raced with the cancellation.
    pub async fn acquire(self) -> Result<LockGuard> {
        let mut req = self.request()?;
        let (sent, mut grant) = wait_for_grant(&self.warden.backend, &req, self.wait, false).await?;
        if let Some(id) = grant.lock_id.take() {
            req.lock_id = id;
        }
        Ok(LockGuard::start(
            self.warden.backend.clone(),
            req,
            sent,
            grant,
            self.auto_renew,
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
        let (_, g) = wait_for_grant(&self.warden.backend, &req, self.wait, true).await?;
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
struct CancelCleanup {
    backend: Arc<dyn Backend>,
    resource: String,
    waiter_id: Option<String>,
    lock_id: String,
    client_id: String,
    ttl: Duration,
    armed: bool,
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

/// The waiting loop shared by every backend: attempt, then sleep until a notification, the blocking lease's
/// expiry, the next queue heartbeat or the deadline, whichever comes first. Returns the instant the
/// granting request was sent (validity is measured from it) and the grant.
async fn wait_for_grant(
    backend: &Arc<dyn Backend>,
    req: &AcquireRequest,
    wait: Duration,
    claim_now: bool,
) -> Result<(Instant, crate::types::Grant)> {
    if backend.capabilities().remote_wait {
        return wait_remotely(backend, req, wait).await;
    }
    let start = Instant::now();
    let deadline = start + wait;
    let registration = (!wait.is_zero()).then(|| backend.wake_router().register(token::waiter_id()));
    let mut cleanup = CancelCleanup {
        backend: backend.clone(),
        resource: req.resource.clone(),
        waiter_id: registration.as_ref().map(|r| r.id().to_string()),
        lock_id: req.lock_id.clone(),
        client_id: req.client_id.clone(),
        ttl: req.ttl,
        armed: true,
    };
    let heartbeat = req.waiter_lease / 3;
    loop {
        let sent = Instant::now();
        let outcome = backend.attempt(req, registration.as_ref().map(|r| r.id())).await;
        // The answer that left this waiter queued: when it was sent, and the backend's clock in it.
        let queued: Option<(Instant, SystemTime)>;
        let retry_in = match outcome {
            Ok(Attempt::Granted(g)) => {
                cleanup.armed = false;
                return Ok((sent, g));
            }
            Ok(Attempt::NotGranted { retry_in, backend_now }) => {
                queued = backend_now.map(|t| (sent, t));
                retry_in
            }
            // The cleanup (still armed) leaves the queue and releases a grant the failed attempt may have made.
            Err(e) => return Err(e),
        };
        let Some(reg) = registration.as_ref() else {
            cleanup.armed = false;
            return Err(Error::Timeout {
                resource: req.resource.clone(),
                waited: Duration::ZERO,
            });
        };
        let now = Instant::now();
        let mut wake_at = (now + heartbeat).min(deadline);
        if let Some(r) = retry_in {
            // Wake when the blocking lease ends (+1 ms: expiry is strict), even without a notification.
            wake_at = wake_at.min(now + r + Duration::from_millis(1));
        }
        let timer_fired = loop {
            tokio::select! {
                _ = reg.notified() => break false,
                _ = reg.retimed() => {
                    // The lock went to the waiter ahead: wake when its lease ends, unless earlier anyway.
                    if let Some(at) = reg.take_blocked_until() {
                        wake_at = wake_at.min(at.max(Instant::now()));
                    }
                }
                _ = sleep_until(wake_at) => break true,
            }
        };
        // A grant handed over with a notification wins over a deadline that passed meanwhile.
        let handed = reg.take_grant();
        if timer_fired && handed.is_none() && Instant::now() >= deadline {
            cleanup.armed = false;
            if let Ok(false) = backend.leave_queue(&req.resource, reg.id()).await {
                // No longer queued: a release may have handed this waiter the lock just now.
                let _ = backend.release(&req.lock_id, Some(&req.client_id)).await;
            }
            return Err(Error::Timeout {
                resource: req.resource.clone(),
                waited: start.elapsed(),
            });
        }
        if let (Some(g), Some((q_sent, q_now))) = (handed, queued) {
            // Handed over by a release after the answer that queued us, which the backend dated q_now: the
            // lease began at least (acquired_at - q_now) after q_sent. Counted at 99% (the stated clock-rate
            // allowance) less 1 ms for the backend's millisecond clock, so the anchor is never late.
            let Ok(later) = g.acquired_at.duration_since(q_now) else {
                // Handed over *before* that answer, which said this waiter did not hold the lock: the grant
                // has ended already (its notification was read late, e.g. after this process was stopped).
                // Trusting it would anchor a dead lease at q_sent; keep waiting instead.
                tracing::debug!(resource = %req.resource, "ignoring a handover older than the last queue answer");
                continue;
            };
            let anchor = (q_sent + (later * 99 / 100).saturating_sub(Duration::from_millis(1))).min(Instant::now());
            cleanup.armed = false;
            // Handed over for less than the ttl (min(ttl, waiter lease)): a guard claims the rest with one
            // renewal a third into that span (none if released before); a bare lease claims it now.
            if claim_now && g.remaining.is_some_and(|r| r < req.ttl) {
                return reanchor(backend, req, anchor, g).await;
            }
            return Ok((anchor, g));
        }
    }
}

/// Acquire through a backend that waits on the far side. Dropping the future drops the request, which gives
/// up the place in the remote queue. When the grant came after a long wait, the moment it was made is not
/// known closely enough to bound the lease's validity, so one renewal re-anchors it: its send time is a safe
/// lower bound for the new lease start.
async fn wait_remotely(
    backend: &Arc<dyn Backend>,
    req: &AcquireRequest,
    wait: Duration,
) -> Result<(Instant, crate::types::Grant)> {
    let sent = Instant::now();
    let grant = backend.acquire_waiting(req, wait).await?;
    if sent.elapsed() <= req.ttl / 4 {
        return Ok((sent, grant));
    }
    reanchor(backend, req, sent, grant).await
}

/// Renews a fresh grant for its full ttl, so its validity is measured from the renewal's send time (a safe
/// lower bound for the renewed lease's start). If a cap refuses, the grant keeps `anchor`; if the renewal
/// fails, the grant is released and the error returned.
async fn reanchor(
    backend: &Arc<dyn Backend>,
    req: &AcquireRequest,
    anchor: Instant,
    mut grant: crate::types::Grant,
) -> Result<(Instant, crate::types::Grant)> {
    let lock_id = grant.lock_id.clone().unwrap_or_else(|| req.lock_id.clone());
    let renew_sent = Instant::now();
    match backend.renew(&lock_id, Some(req.ttl), Some(&req.client_id)).await {
        Ok(crate::types::Renewal::Renewed { lease, granted }) => {
            grant.expires_at = lease.expires_at;
            grant.remaining = Some(granted);
            Ok((renew_sent, grant))
        }
        Ok(_) => Ok((anchor, grant)),
        Err(e) => {
            let _ = backend.release(&lock_id, Some(&req.client_id)).await;
            Err(e)
        }
    }
}

/// What a critical section run by [`LockBuilder::run`] gets: the fencing token and the lost signal.
#[derive(Debug, Clone)]
pub struct LeaseContext {
    /// The lease's fencing token.
    pub fencing_token: u64,
    /// The lease's lock id.
    pub lock_id: String,
    lost: CancellationToken,
}

impl LeaseContext {
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
struct LeaseState {
    valid_until: Instant,
    next_renew: Instant,
    expires_at: SystemTime,
    renewal_count: u32,
    ttl: Duration,
    capped: bool,
    /// The lease was handed over for less than its ttl: one renewal claims the rest, even without auto-renew.
    claim: bool,
}

struct GuardShared {
    backend: Arc<dyn Backend>,
    req: AcquireRequest,
    fencing_token: u64,
    acquired_at: SystemTime,
    state: Mutex<LeaseState>,
    lost: CancellationToken,
    stop: CancellationToken,
    changed: Notify,
}

impl GuardShared {
    fn state(&self) -> std::sync::MutexGuard<'_, LeaseState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A held lease. Renews itself (unless disabled), fires [`LockGuard::lost`] when the lease can no longer be
/// trusted, and releases in the background when dropped without [`LockGuard::release`].
pub struct LockGuard {
    shared: Arc<GuardShared>,
    released: bool,
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
    fn start(
        backend: Arc<dyn Backend>,
        req: AcquireRequest,
        sent: Instant,
        grant: crate::types::Grant,
        auto_renew: bool,
    ) -> Self {
        let ttl = req.ttl;
        // A lease found granted earlier, or handed over for less than the ttl, had only `remaining` left at
        // `sent`; the drift allowance is taken over that span.
        let left = grant.remaining.unwrap_or(ttl).min(ttl);
        let valid_until = sent + left.saturating_sub(drift(left));
        let shared = Arc::new(GuardShared {
            backend,
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
            lost: CancellationToken::new(),
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

    fn lost_error(&self) -> Error {
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
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) | Err(Error::LeaseLost { .. }) => {
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

/// First pause before a release the backend could not take is tried again; it doubles up to 1 s.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Releases in the background, first after `pause`, retrying while the backend cannot be reached, until
/// the lease would have ended anyway: a holder that let go is never what keeps a recovered backend's lock
/// blocked for the rest of the lease.
fn spawn_release_retries(shared: Arc<GuardShared>, first_pause: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let left = {
        let st = shared.state();
        st.expires_at.duration_since(SystemTime::now()).unwrap_or_default()
    };
    let until = Instant::now() + left;
    rt.spawn(async move {
        let mut pause = first_pause;
        loop {
            if Instant::now() + pause >= until {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).clamp(RETRY_PAUSE, Duration::from_secs(1));
            match shared
                .backend
                .release(&shared.req.lock_id, Some(&shared.req.client_id))
                .await
            {
                Err(e) if e.is_retryable() => tracing::debug!(error = %e, "release failed, retrying"),
                _ => return,
            }
        }
    });
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

fn apply_renewal(shared: &GuardShared, sent: Instant, ttl: Duration, r: Renewal) {
    let mut st = shared.state();
    match r {
        Renewal::Renewed { lease, granted } => {
            st.valid_until = sent + granted.saturating_sub(drift(ttl));
            st.next_renew = sent + granted / 3;
            st.expires_at = lease.expires_at;
            st.renewal_count = lease.renewal_count;
            st.ttl = ttl;
            st.claim = false;
        }
        Renewal::Capped { expires_at } => {
            st.expires_at = expires_at;
            st.capped = true;
        }
    }
}

/// Renews the lease about every ttl/3 and fires the lost signal when validity cannot be confirmed.
async fn watchdog(shared: Arc<GuardShared>, auto_renew: bool) {
    loop {
        let (valid_until, next_renew, ttl, capped, claim) = {
            let st = shared.state();
            (st.valid_until, st.next_renew, st.ttl, st.capped, st.claim)
        };
        let renew_at = ((auto_renew || claim) && !capped).then_some(next_renew);
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = sleep_until(valid_until) => {
                shared.lost.cancel();
                return;
            }
            _ = shared.changed.notified() => continue,
            _ = sleep_until(renew_at.unwrap_or(valid_until)), if renew_at.is_some() => {}
        }
        let sent = Instant::now();
        let renewal = tokio::select! {
            _ = shared.stop.cancelled() => return,
            r = timeout_at(valid_until, shared.backend.renew(&shared.req.lock_id, Some(ttl), Some(&shared.req.client_id))) => r,
        };
        match renewal {
            Err(_) => {
                tracing::warn!(resource = %shared.req.resource, "renewal not confirmed before the lease's validity ended");
                shared.lost.cancel();
                return;
            }
            Ok(Ok(r)) => apply_renewal(&shared, sent, ttl, r),
            Ok(Err(e)) if e.is_retryable() => {
                // Transient: try again soon, but never past the validity deadline (the select above fires first).
                let retry = (ttl / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
                shared.state().next_renew = Instant::now() + retry;
                tracing::debug!(resource = %shared.req.resource, error = %e, "renewal failed, retrying");
            }
            Ok(Err(e)) => {
                // Not the error's sentence: it names the lock id, which no log may show.
                let why = match e {
                    Error::NotFound { .. } => "not found",
                    Error::NotOwner { .. } => "not owner",
                    Error::LeaseLost { .. } => "taken over or expired",
                    _ => "refused",
                };
                tracing::warn!(resource = %shared.req.resource, why, "renewal refused; lease lost");
                shared.lost.cancel();
                return;
            }
        }
    }
}
