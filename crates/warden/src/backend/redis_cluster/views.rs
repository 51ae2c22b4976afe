//! What operators read, over every primary: a client's leases, statistics (one shared hash, live leases
//! counted by a sweep of every primary's slots), health; and the upkeep that flushes the counts and re-reads
//! the slot map.

#[allow(unused_imports)]
use super::*;
use crate::backend::redis::housekeeping::trim_top;
use crate::backend::redis::read_stats;
use crate::types::{HealthStatus, NodeHealth};
use std::time::Duration;

impl RedisClusterBackend {
    /// Once a second: this process's counts added to the shared statistics; every few seconds: the slot map
    /// read again; once a minute: the per-resource counts kept bounded.
    pub(super) fn spawn_upkeep(&self) -> tokio::task::JoinHandle<()> {
        let topo = self.topo.clone();
        let counters = self.counters.clone();
        let (stats, top) = (self.names.stats.clone(), self.names.top.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut n: u64 = 0;
            loop {
                tick.tick().await;
                n += 1;
                flush(&topo, &counters, &stats, &top).await;
                if n % topology::REFRESH_EVERY.as_secs().max(1) == 0 {
                    let _ = topo.refresh(topo.current().version).await;
                }
                if n % 60 == 0 {
                    if let Some(b) = stats_node(&topo, &stats) {
                        let _ = trim_top(&b.connection(), &top).await;
                    }
                }
            }
        })
    }

    /// Follows the wake-up channels of slots that moved to another primary.
    pub(super) fn spawn_follower(&self) -> tokio::task::JoinHandle<()> {
        let mut maps = self.topo.watch();
        let subscriber = self.subscriber.clone();
        let router = self.router.clone();
        tokio::spawn(async move {
            let mut last = maps.borrow_and_update().clone();
            while maps.changed().await.is_ok() {
                let now = maps.borrow_and_update().clone();
                let moved = now.moved_since(&last);
                last = now;
                if !moved.is_empty() {
                    subscriber.follow(&moved, &router).await;
                }
            }
        })
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        let mut out = Vec::new();
        for b in self.connected()? {
            out.extend(b.held(client_id).await?);
        }
        out.sort_by_key(|l| l.acquired_at);
        Ok(out)
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let unwritten = || Error::BackendUnavailable {
            address: self.topo.url.address.clone(),
            reason: "statistics could not be written".into(),
        };
        if !flush(&self.topo, &self.counters, &self.names.stats, &self.names.top).await {
            return Err(unwritten());
        }
        let mut active = 0;
        for b in self.connected()? {
            active += b.sweep_all().await?;
        }
        if !flush(&self.topo, &self.counters, &self.names.stats, &self.names.top).await {
            return Err(unwritten());
        }
        let b = stats_node(&self.topo, &self.names.stats).ok_or_else(unwritten)?;
        read_stats(
            &b.connection(),
            &self.names,
            top,
            active,
            self.topo.url.opts.timeout,
            b.address(),
        )
        .await
    }

    pub(super) async fn view_health(&self) -> Health {
        let map = self.topo.current();
        let mut nodes = Vec::new();
        for n in &map.nodes {
            match &n.backend {
                Some(b) => nodes.extend(b.health().await.nodes),
                None => nodes.push(NodeHealth::new(n.address.clone(), false, None, n.error.clone())),
            }
        }
        let up = nodes.iter().filter(|n| n.reachable).count();
        // A primary that is down takes its slots' locks with it until a replica is promoted.
        let status = match up {
            0 => HealthStatus::Unhealthy,
            n if n == nodes.len() => HealthStatus::Healthy,
            _ => HealthStatus::Degraded,
        };
        Health::new("redis-cluster", status, nodes, None)
    }

    /// Every primary's backend, or the error of the first that is not connected.
    fn connected(&self) -> Result<Vec<Arc<RedisBackend>>> {
        let map = self.topo.current();
        map.nodes.iter().map(|n| n.connected()).collect()
    }
}

/// The primary that holds the statistics hashes.
fn stats_node(topo: &Topology, stats: &str) -> Option<Arc<RedisBackend>> {
    topo.current().node_of(keys::slot(stats.as_bytes()))?.backend.clone()
}

/// Adds this process's pending counts to the shared hashes.
async fn flush(topo: &Topology, counters: &Counters, stats: &str, top: &str) -> bool {
    match stats_node(topo, stats) {
        Some(b) => counters.flush(&b.connection(), stats, top, topo.url.opts.timeout).await,
        None => false,
    }
}
