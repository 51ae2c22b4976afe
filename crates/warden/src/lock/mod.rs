//! Locks built on a [`Backend`]: the waiting loop, guards, automatic renewal and the lost signal.
//!
//! - this file: [`Warden`], the handle, and the calls that take a lock id;
//! - `builder`: [`LockBuilder`], one acquisition's options, and the clean-up of a cancelled acquire;
//! - `wait`: the waiting loop every backend shares;
//! - `guard`: [`LockGuard`] and [`LeaseContext`];
//! - `group`: [`GroupBuilder`] and [`GroupGuard`], several resources held as one lease;
//! - `renew`: the watchdog that renews a guard's lease, and release retries.

mod builder;
mod group;
mod guard;
mod path;
mod renew;
mod wait;

pub use builder::LockBuilder;
use builder::*;
pub use group::{group_id, group_lock_ids, GroupBuilder, GroupGuard};
use guard::*;
pub use guard::{LeaseContext, LockGuard};
pub use path::{path_members, PathBuilder};
use renew::*;
use wait::*;

use crate::analytics::{Analytics, Outcome};
use crate::backend::{self, Backend};
use crate::error::{Error, Result};
use crate::token;
use crate::types::{
    AcquireRequest, Attempt, Capabilities, Condition, Health, LeaseInfo, LockKind, Released, Renewal, ResourceInfo,
    Stats,
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
    analytics: Arc<Analytics>,
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
            analytics: Arc::default(),
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

    /// What this handle (and its clones) saw of each resource: grants, contention, waits, holds, expiries.
    /// See [`crate::analytics`].
    pub fn analytics(&self) -> &Analytics {
        &self.analytics
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
            permits: 0,
            condition: None,
            priority: 0,
        }
    }

    /// Starts building a hold on one of `permits` permits of the semaphore `resource`: shorthand for
    /// `lock(resource).permits(permits)` (see [`LockBuilder::permits`]).
    pub fn semaphore(&self, resource: impl Into<String>, permits: u32) -> LockBuilder<'_> {
        self.lock(resource).permits(permits)
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
