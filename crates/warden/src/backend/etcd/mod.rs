//! `etcd://`: locks on an etcd cluster (v3 API), which keeps them through the loss of a minority of members.
//!
//! The recipe is etcd's own (its `concurrency` package): each holder and waiter is one key under the
//! resource, ordered by create revision; the first keys hold the lock; a waiter is woken by the deletion of
//! the key just ahead of it (one watch per process, on deletions only), so a release wakes one waiter, not
//! all. The fencing token is the key's create revision: etcd's store-wide revision, strictly increasing and
//! never reused, replicated by Raft like the key itself. Every key hangs on this process's session lease
//! ([`session`]): a dead process's keys go when it runs out. A lease's own ttl (milliseconds, finer than
//! etcd's whole-second leases) is kept by elapsed time: the process that wrote the key last deletes it when
//! the ttl passes unrenewed, and any process that sees it at the head of a queue unchanged for its ttl may
//! delete it too (the same clock-rate assumption as every lease). See the README's guarantees table.

mod acquire;
mod batch;
mod keys;
mod local;
mod options;
mod queued;
mod records;
mod release;
mod session;
mod tasks;
mod views;

use crate::error::Result;
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Health, LeaseInfo, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use keys::Keys;
use session::Etcd;
use std::sync::Arc;
use std::time::Duration;

/// A backend over one etcd cluster. Cheap to share with `Arc`; dropping it stops its tasks and revokes its
/// session lease, so its keys go at once.
pub struct EtcdBackend {
    etcd: Arc<Etcd>,
    keys: Keys,
    local: Arc<local::Shared>,
    router: Arc<WakeRouter>,
    /// Set when the store records grants (conditional acquires offered).
    records: Option<records::Records>,
    /// Releases and new keys, sent together (group commit).
    batch: batch::Batcher,
    _tasks: tasks::Tasks,
}

impl std::fmt::Debug for EtcdBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdBackend")
            .field("address", &self.etcd.opts.address)
            .finish()
    }
}

impl EtcdBackend {
    /// Connects to `etcd://h1:2379,h2:2379,h3:2379/?prefix=warden/&timeout_ms=2000&session_ttl=10s`, takes a
    /// session lease and starts watching for releases. Fails with [`crate::Error::BackendUnavailable`] naming
    /// the cluster within the timeout if no member answers.
    pub async fn connect(url: &str) -> Result<Self> {
        let opts = options::parse_url(url)?;
        let keys = Keys {
            prefix: opts.prefix.clone(),
        };
        let etcd = Etcd::connect(opts).await?;
        let records = Self::records(&etcd, &keys).await?;
        let local = Arc::new(local::Shared::default());
        let router = Arc::new(WakeRouter::default());
        let tasks = tasks::Tasks::start(etcd.clone(), keys.clone(), local.clone(), router.clone()).await?;
        Ok(EtcdBackend {
            batch: batch::Batcher::start(etcd.clone()),
            etcd,
            keys,
            local,
            router,
            records,
            _tasks: tasks,
        })
    }

    /// Whether this process records grants: asked to (then the store remembers it for every process that
    /// connects later), or the store says so.
    async fn records(etcd: &Arc<Etcd>, keys: &Keys) -> Result<Option<records::Records>> {
        let setting = keys.conditions_setting();
        let on = if etcd.opts.conditions {
            let put = etcd_client::TxnOp::put(setting, "on", None);
            etcd.txn(etcd_client::Txn::new().and_then([put])).await?;
            true
        } else {
            !etcd.get(setting, None).await?.kvs().is_empty()
        };
        Ok(on.then(|| records::Records::new(etcd.clone(), keys.clone(), etcd.opts.retain)))
    }

    /// The key prefix under which `resource`'s holders and waiters live (for tools and tests).
    pub fn resource_prefix(prefix: &str, resource: &str) -> String {
        Keys { prefix: prefix.into() }.resource(&keys::resource_hash(resource))
    }
}

#[async_trait::async_trait]
impl crate::backend::Backend for EtcdBackend {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: true,
            semaphores: true,
            fifo: FifoGuarantee::Strict,
            notifications: true,
            fencing: true,
            // Revisions start again from 1 on a cluster rebuilt from nothing.
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
        let session = self.etcd.session().id;
        let hash = keys::resource_hash(resource);
        self.local
            .with(|l| l.take_slot(&hash, |slot| keys::new_lock_id(resource, session, slot)))
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
