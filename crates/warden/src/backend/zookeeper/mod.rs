//! `zk://`: locks on a ZooKeeper ensemble, which keeps them through the loss of a minority of servers.
//!
//! The recipe is Curator's (InterProcessMutex and InterProcessReadWriteLock): each holder and waiter is one
//! ephemeral sequential node under the resource's directory, ordered by its sequence; the first nodes hold the
//! lock; a waiter watches the node just ahead of it, so a release wakes one waiter, not all. The fencing
//! token is the node's czxid: the ensemble's transaction id of its creation, strictly increasing across the
//! whole ensemble and never reused (its high half is the leader's epoch), replicated by Zab like the node. Every
//! node is ephemeral to this process's session ([`session`]): a dead process's nodes go when the ensemble
//! expires its session. A lease's own ttl (milliseconds, finer than a session) is kept by elapsed time: the
//! process that wrote the node last deletes it when the ttl passes unrenewed, and any process that sees it at
//! the head of a queue unchanged for its ttl may delete it too (the same clock-rate assumption as every
//! lease). See the README's guarantees table.

mod acquire;
mod dir_watch;
mod lease;
mod local;
mod names;
mod options;
mod queued;
mod records;
mod session;
mod tasks;
mod views;

use crate::error::Result;
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Health, LeaseInfo, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use session::Zk;
use std::sync::Arc;
use std::time::Duration;

/// A backend over one ZooKeeper ensemble. Cheap to share with `Arc`; dropping it stops its tasks and closes
/// its session, so its nodes go at once.
pub struct ZkBackend {
    zk: Arc<Zk>,
    local: Arc<local::Shared>,
    router: Arc<WakeRouter>,
    /// Set when the ensemble records grants (conditional acquires offered).
    records: Option<records::Records>,
    _tasks: tasks::Tasks,
    _forget: Option<crate::backend::AbortOnDrop>,
}

impl std::fmt::Debug for ZkBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZkBackend")
            .field("address", &self.zk.opts.address)
            .finish()
    }
}

impl ZkBackend {
    /// Connects to `zk://h1:2181,h2:2181,h3:2181/warden?timeout_ms=2000&session_timeout=10s` and opens a
    /// session, creating the chroot (`/warden` unless the URL names another) if missing. Fails with
    /// [`crate::Error::BackendUnavailable`] naming the ensemble within the timeout if no server answers.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = options::parse_url(url)?;
        let zk = Zk::connect(opts).await?;
        let records = Self::records(&zk).await?;
        let forget = records
            .as_ref()
            .map(|r| crate::backend::AbortOnDrop(tokio::spawn(records::forget(Arc::downgrade(&zk), r.retain))));
        let local = Arc::new(local::Shared::default());
        let tasks = tasks::Tasks::start(zk.clone(), local.clone());
        Ok(ZkBackend {
            zk,
            local,
            router: Arc::new(WakeRouter::default()),
            records,
            _tasks: tasks,
            _forget: forget,
        })
    }

    /// Whether this process records grants: asked to (then the ensemble remembers it for every process that
    /// connects later), or the ensemble says so.
    async fn records(zk: &Arc<Zk>) -> Result<Option<records::Records>> {
        let opts = &zookeeper_client::CreateMode::Persistent.with_acls(zk.acls());
        let on = if zk.opts.conditions {
            for p in [records::SETTINGS, records::SETTING, names::GRANTS] {
                zk.run(|c| async move {
                    match c.create(p, b"on", opts).await {
                        Ok(_) | Err(zookeeper_client::Error::NodeExists) => Ok(()),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            }
            true
        } else {
            zk.run(|c| async move { c.check_stat(records::SETTING).await })
                .await?
                .is_some()
        };
        Ok(on.then(|| records::Records::new(zk.clone(), zk.opts.retain)))
    }

    /// The directory (under the chroot) holding `resource`'s holders and waiters (for tools and tests).
    pub fn resource_dir(resource: &str) -> String {
        names::dir(&crate::backend::queue_record::resource_hash(resource))
    }
}

#[async_trait::async_trait]
impl crate::backend::Backend for ZkBackend {
    fn kind(&self) -> &'static str {
        "zookeeper"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: true,
            semaphores: true,
            fifo: FifoGuarantee::Strict,
            notifications: true,
            fencing: true,
            // Transaction ids start again on an ensemble rebuilt from nothing.
            fencing_survives_data_loss: false,
            shared_across_processes: true,
            conditions: self.records.is_some(),
            priorities: false,
            intentions: true,
            remote_wait: false,
        }
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    fn new_lock_id(&self, resource: &str) -> String {
        names::new_lock_id(resource)
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        self.attempt_now(req, waiter_id).await
    }

    async fn leave_queue(&self, _resource: &str, waiter_id: &str) -> Result<bool> {
        self.leave(waiter_id).await
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        self.release_now(lock_id, client_id).await
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        self.renew_now(lock_id, ttl, client_id).await
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
