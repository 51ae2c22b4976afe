//! Backends: where leases live. One module per backend; the lock layer talks to them through [`Backend`].
//!
//! Backends never import the primitives built on them (`lock`, `election`): the dependency goes one way.

#[cfg(feature = "etcd")]
pub mod etcd;
#[cfg(feature = "http")]
pub mod http;
pub mod memory;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(any(feature = "etcd", feature = "zookeeper"))]
mod queue_record;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "redis")]
pub mod redis_cluster;
#[cfg(feature = "redis")]
pub mod redis_sentinel;
#[cfg(feature = "redis")]
pub mod redlock;
mod registry;

/// Aborts a task when dropped: what a backend keeps of the background tasks that must end with it.
#[allow(dead_code)] // Every backend that spawns tasks is behind a feature.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
mod sql_common;
#[cfg(any(feature = "etcd", feature = "zookeeper"))]
mod table;
#[cfg(feature = "zookeeper")]
pub mod zookeeper;

use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, Grant, Health, LeaseInfo, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
pub use registry::{Scheme, SCHEMES};
use std::sync::Arc;
use std::time::Duration;

/// The storage protocol every backend implements. The lock layer builds waiting, renewal, guards and
/// the lost signal on top of it; a backend only answers single, atomic steps.
///
/// The lease core every backend must implement: [`attempt`](Backend::attempt),
/// [`leave_queue`](Backend::leave_queue), [`release`](Backend::release), [`renew`](Backend::renew) (plus
/// `kind`, `capabilities` and `wake_router`). Everything else is optional: remote waiting
/// ([`acquire_waiting`](Backend::acquire_waiting)) and the operator views (`lease`, `inspect`, `held`,
/// `stats`, `health`) answer [`Error::Unsupported`] (health: a node that says it reports nothing) unless a
/// backend offers them. `tests/minimal_backend.rs` is a whole backend in that core alone.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    /// Short name: `memory`, `redis`, `redlock`, `http`.
    fn kind(&self) -> &'static str;

    /// What this backend can promise.
    fn capabilities(&self) -> Capabilities;

    /// The router that delivers wake-ups for waiters of this process.
    fn wake_router(&self) -> &Arc<WakeRouter>;

    /// A fresh lock id (secret, at least 122 random bits) for a lease on `resource`. A backend may fold into it
    /// what it needs to find the lease's keys (Redis: the resource's hash-slot tag).
    fn new_lock_id(&self, resource: &str) -> String {
        let _ = resource;
        crate::token::lock_id()
    }

    /// One atomic acquire attempt. If `waiter_id` is given and the lock is not granted, the waiter is
    /// queued (or its queue lease refreshed); when granted it leaves the queue.
    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt>;

    /// For backends that wait on the far side ([`Capabilities::remote_wait`]): acquires, waiting up to
    /// `wait` in the remote FIFO queue, in one call. Dropping the future must give up the place in the queue.
    /// The default says the backend does not wait remotely.
    async fn acquire_waiting(&self, req: &AcquireRequest, wait: std::time::Duration) -> Result<Grant> {
        let _ = (req, wait);
        Err(Error::Unsupported {
            backend: self.kind(),
            what: "remote waiting".into(),
        })
    }

    /// Removes a waiter from the queue of `resource` and wakes whoever may proceed because of it.
    /// `Ok(false)`: the waiter was no longer queued, and a backend that hands the lock to the head of its
    /// queue on release may have granted it meanwhile; the caller then releases its lock id.
    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool>;

    /// Releases a lease. `client_id`, when given, must match the holder's.
    /// Errors: [`Error::NotFound`], [`Error::NotOwner`], [`Error::LeaseLost`] (it had already expired).
    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released>;

    /// Extends a lease by `ttl` from now. Errors as for [`Backend::release`].
    /// `ttl: None` renews for the lease's own ttl.
    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal>;

    /// The lease with this lock id, if the backend still knows it.
    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let _ = lock_id;
        Err(self.unsupported("reading a lease by lock id"))
    }

    /// Holders and queue of one resource.
    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let _ = resource;
        Err(self.unsupported("inspecting a resource's holders and queue"))
    }

    /// Leases held now by one client id.
    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        let _ = client_id;
        Err(self.unsupported("listing a client's leases"))
    }

    /// Counters over all leases.
    /// Counters, and the `top` most-granted resources (0: skip finding them, which on Redis means no scan of
    /// the per-resource counts: what liveness probes and metric scrapes want).
    async fn stats(&self, top: usize) -> Result<Stats> {
        let _ = top;
        Err(self.unsupported("statistics"))
    }

    /// Reachability and latency of the backend's nodes.
    async fn health(&self) -> Health {
        let silent = crate::types::NodeHealth::new(
            self.kind().into(),
            false,
            None,
            Some("this backend does not report its health".into()),
        );
        Health::new(self.kind(), crate::types::HealthStatus::Unhealthy, vec![silent], None)
    }

    /// Notifications of changes to `resource` (grants, lease ends, queue changes), where the backend offers them
    /// to bystanders: each item means "look again"; the stream ends when the notifications stop (look by timer
    /// then). `None` (the default): the backend notifies only its waiters, so bystanders poll.
    fn changes(&self, resource: &str) -> Option<futures::stream::BoxStream<'static, ()>> {
        let _ = resource;
        None
    }

    /// The error of an optional operation this backend does not offer.
    fn unsupported(&self, what: &str) -> Error {
        Error::Unsupported {
            backend: self.kind(),
            what: what.into(),
        }
    }
}

/// Opens the backend named by `url`, by its scheme (see [`SCHEMES`]):
/// - `memory://` — in-process store;
/// - `redis://host:port/db?prefix=app:&timeout_ms=1000&sweep_ms=5000` — one Redis node;
/// - `redlock://h1:p1,h2:p2,h3:p3/db?timeout_ms=200&prefix=app:` — Redlock over N (odd, >= 3) independent nodes;
/// - `postgres://user:password@host:port/db?prefix=warden_&timeout_ms=2000&pool_size=16` — PostgreSQL (also
///   `postgresql://`; TLS with `sslmode=verify-full&sslrootcert=/path/ca.pem`);
/// - `mysql://user:password@host:port/db?prefix=warden_&timeout_ms=2000&pool_size=16` — MySQL or MariaDB (also
///   `mariadb://`);
/// - `etcd://h1:2379,h2:2379,h3:2379?prefix=warden/&timeout_ms=2000&session_ttl=10s` — an etcd cluster (Cargo
///   feature `etcd`);
/// - `zk://h1:2181,h2:2181,h3:2181/warden?timeout_ms=2000&session_timeout=10s` — a ZooKeeper ensemble (also
///   `zookeeper://`);
/// - `http[s]://host:port?timeout_ms=5000` — a warden server (`warden serve`).
///
/// ```
/// # tokio_test_shim::run(async {
/// let backend = warden::backend::connect("memory://").await.unwrap();
/// assert_eq!(backend.kind(), "memory");
/// # });
/// # mod tokio_test_shim { pub fn run<F: std::future::Future>(f: F) -> F::Output {
/// #   tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f) } }
/// ```
pub async fn connect(url: &str) -> Result<Arc<dyn Backend>> {
    let Some((scheme, _)) = url.split_once("://") else {
        // Not repeated: it may hold a password.
        return Err(Error::invalid("backend", format!("not a URL; use {}", known_schemes())));
    };
    #[cfg(not(feature = "etcd"))]
    if scheme == "etcd" {
        return Err(Error::invalid(
            "backend",
            "this build of warden has no etcd support: rebuild with `--features etcd` (building it needs protoc; \
             Debian: apt-get install protobuf-compiler)",
        ));
    }
    match SCHEMES.iter().find(|s| s.scheme == scheme) {
        Some(s) => (s.connect)(url.to_string()).await,
        None => Err(Error::invalid(
            "backend",
            format!("unknown scheme `{scheme}://`; use {}", known_schemes()),
        )),
    }
}

fn known_schemes() -> String {
    SCHEMES.iter().map(|s| s.example).collect::<Vec<_>>().join(", ")
}
