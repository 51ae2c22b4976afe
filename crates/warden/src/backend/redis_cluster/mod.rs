//! `redis+cluster://`: Redis Cluster.
//!
//! Every key of a lock lies in its resource's hash slot (see the single-node backend's `keys`), so each
//! operation is one script call on the primary of that slot. Each primary is driven by the single-node backend
//! in its cluster-node role (its own group commit, its share of the sweep); this module routes each operation
//! to the primary of its slot by a slot map of its own (`topology`), rather than through redis-rs's cluster
//! client, because operations of different slots on one primary share a script call. A call that fails
//! makes it read the map again; the operation is sent again only if its slot now has another primary (a
//! failover, a moved slot), so a step is never applied twice on one primary. Wake-ups travel on shard
//! channels (`subscriber`). Statistics are counted in each process and added once a second to one hash.

mod subscriber;
mod topology;
mod url;
mod views;

use super::redis::counters::Counters;
use super::redis::{keys, Names, RedisBackend, CAPABILITIES};
use super::Backend;
use crate::error::{Error, Result};
use crate::types::{AcquireRequest, Attempt, Capabilities, Health, LeaseInfo, Released, Renewal, ResourceInfo, Stats};
use crate::wake::WakeRouter;
use std::future::Future;
use std::sync::Arc;
use subscriber::ShardSubscriber;
use topology::Topology;

/// Operations are sent at most this many times (the first, and after each change of the slot's primary).
const MAX_SENDS: usize = 3;

/// The Redis Cluster backend.
pub struct RedisClusterBackend {
    topo: Arc<Topology>,
    router: Arc<WakeRouter>,
    counters: Arc<Counters>,
    names: Names,
    subscriber: Arc<ShardSubscriber>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RedisClusterBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisClusterBackend")
            .field("address", &self.topo.url.address)
            .finish()
    }
}

impl Drop for RedisClusterBackend {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RedisClusterBackend {
    /// Connects to the cluster of the seed nodes in `url`
    /// (`redis+cluster://[user:password@]host1:port1,host2:port2[?prefix=app:&timeout_ms=1000]`, or
    /// `rediss+cluster://` for TLS with the same options as `rediss://`): reads the slot map, connects every
    /// primary and the subscriber. Fails with [`Error::BackendUnavailable`] if no seed answers.
    pub async fn connect(url: &str) -> Result<Self> {
        let url = url::ClusterUrl::parse(url)?;
        let router = Arc::new(WakeRouter::default());
        let counters = Arc::new(Counters::default());
        let names = Names::cluster(&url.opts.prefix);
        let topo = Topology::connect(url, router.clone(), counters.clone()).await?;
        check_version(&topo).await?;
        let url = &topo.url;
        let nodes = url
            .seeds
            .iter()
            .map(|s| url.driver_url(s))
            .collect::<Result<Vec<_>>>()?;
        let (subscriber, reader) = ShardSubscriber::connect(
            nodes,
            url.opts.ca.clone(),
            url.opts.timeout,
            names.channel.clone(),
            url.address.clone(),
            router.clone(),
        )
        .await?;
        let mut me = RedisClusterBackend {
            topo,
            router,
            counters,
            names,
            subscriber,
            tasks: vec![reader],
        };
        me.tasks.push(me.spawn_upkeep());
        me.tasks.push(me.spawn_follower());
        Ok(me)
    }

    /// The seed nodes, as `redis+cluster://h1:p1,h2:p2` (no credentials).
    pub fn address(&self) -> &str {
        &self.topo.url.address
    }

    /// The primaries and the slots each serves now, as `host:port`, for tools and tests.
    pub fn primaries(&self) -> Vec<String> {
        self.topo.current().nodes.iter().map(|n| n.address.clone()).collect()
    }

    /// The slot of `resource`'s lock key.
    pub fn slot_of(&self, resource: &str) -> u16 {
        keys::slot(format!("{}{}", self.topo.url.opts.prefix, resource).as_bytes())
    }

    /// Runs `f` on the primary of `slot`. After a failure the map is read again, and `f` runs again if the slot
    /// now has another primary.
    async fn on_slot<T, F, Fut>(&self, slot: u16, f: F) -> Result<T>
    where
        F: Fn(Arc<RedisBackend>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let mut last = None;
        for _ in 0..MAX_SENDS {
            let map = self.topo.current();
            let Some(node) = map.node_of(slot).cloned() else {
                let _ = self.topo.refresh(map.version).await;
                break;
            };
            // A primary that could not be connected fails like a call to it.
            let sent = match node.connected() {
                Ok(backend) => f(backend).await,
                Err(e) => Err(e),
            };
            match sent {
                Err(e @ (Error::BackendUnavailable { .. } | Error::Protocol(_))) => {
                    let _ = self.topo.refresh(map.version).await;
                    let moved = self
                        .topo
                        .current()
                        .node_of(slot)
                        .is_some_and(|n| n.address != node.address);
                    last = Some(e);
                    if !moved {
                        break;
                    }
                }
                other => return other,
            }
        }
        Err(last.unwrap_or_else(|| self.no_primary(slot)))
    }

    fn no_primary(&self, slot: u16) -> Error {
        Error::BackendUnavailable {
            address: self.topo.url.address.clone(),
            reason: format!("no primary serves slot {slot} now"),
        }
    }

    fn slot_of_lock_id(lock_id: &str) -> Option<u16> {
        keys::tag_of_lock_id(lock_id).map(|t| keys::slot(t.as_bytes()))
    }
}

/// Refuses a cluster older than Redis 7, which has no sharded pub/sub (`SPUBLISH`) for the wake-ups.
async fn check_version(topo: &Topology) -> Result<()> {
    let map = topo.current();
    let Some(b) = map.nodes.iter().find_map(|n| n.backend.clone()) else {
        return Ok(());
    };
    let mut c = b.connection();
    let info: String = tokio::time::timeout(
        topo.url.opts.timeout,
        redis::cmd("INFO").arg("server").query_async(&mut c),
    )
    .await
    .map_err(|_| Error::BackendUnavailable {
        address: b.address().to_string(),
        reason: "no answer to INFO".into(),
    })?
    .map_err(|e| super::redis::map_err(b.address(), e))?;
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    match version.split('.').next().and_then(|m| m.parse::<u32>().ok()) {
        Some(major) if major < 7 => Err(Error::invalid(
            "backend",
            format!(
                "{} runs Redis {version}: redis+cluster:// needs Redis 7 or later (sharded pub/sub, SPUBLISH, \
                 carries its wake-ups); upgrade the cluster or use one node with redis://",
                b.address()
            ),
        )),
        _ => Ok(()),
    }
}

#[async_trait::async_trait]
impl Backend for RedisClusterBackend {
    fn kind(&self) -> &'static str {
        "redis-cluster"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    fn new_lock_id(&self, resource: &str) -> String {
        keys::new_lock_id(&format!("{}{}", self.topo.url.opts.prefix, resource))
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        let slot = self.slot_of(&req.resource);
        if waiter_id.is_some() {
            // Before the attempt that may queue the waiter: a release after it is heard.
            self.subscriber.ensure(slot).await?;
        }
        self.on_slot(slot, |b| async move { b.attempt(req, waiter_id).await })
            .await
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        self.on_slot(self.slot_of(resource), |b| async move {
            b.leave_queue(resource, waiter_id).await
        })
        .await
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let Some(slot) = Self::slot_of_lock_id(lock_id) else {
            return Err(Error::NotFound {
                lock_id: lock_id.into(),
            });
        };
        self.on_slot(slot, |b| async move { b.release(lock_id, client_id).await })
            .await
    }

    async fn renew(&self, lock_id: &str, ttl: Option<std::time::Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let Some(slot) = Self::slot_of_lock_id(lock_id) else {
            return Err(Error::NotFound {
                lock_id: lock_id.into(),
            });
        };
        self.on_slot(slot, |b| async move { b.renew(lock_id, ttl, client_id).await })
            .await
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let Some(slot) = Self::slot_of_lock_id(lock_id) else {
            return Ok(None);
        };
        self.on_slot(slot, |b| async move { b.lease(lock_id).await }).await
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        self.on_slot(self.slot_of(resource), |b| async move { b.inspect(resource).await })
            .await
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
