//! The conformance suite's harnesses over a real Redis Cluster (3 primaries, 1 replica each) and a real Redis
//! Sentinel set.

use crate::harness::{Counter, Harness, RedisCounter};
use crate::RedisCluster;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::Warden;

/// A fresh cluster per harness; clients connect with every node as a seed.
pub struct RedisClusterHarness {
    /// The cluster (public so tests can kill, pause or restart its nodes).
    pub cluster: Mutex<RedisCluster>,
    url: String,
}

impl RedisClusterHarness {
    /// Starts 3 primaries with a replica each.
    pub fn new() -> Self {
        let cluster = RedisCluster::start(3, 1, Duration::from_millis(2000));
        let url = format!("{}?timeout_ms=500", cluster.url());
        RedisClusterHarness {
            cluster: Mutex::new(cluster),
            url,
        }
    }

    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn owner_port(&self, key: &str) -> u16 {
        let c = self.cluster.lock().expect("cluster");
        let slot = c.keyslot(key);
        c.nodes[c.owner_of(slot)].port()
    }
}

impl Default for RedisClusterHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Harness for RedisClusterHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        let r = crate::redis_cluster::cli(self.owner_port(resource), &["DEL", resource]);
        assert!(r.trim().parse::<u64>().is_ok(), "DEL answered {r}");
    }
    async fn restart_losing_data(&self) -> bool {
        let mut c = self.cluster.lock().expect("cluster");
        // All down first: no replica is left to take over with the old data.
        for n in &mut c.nodes {
            n.kill();
        }
        for n in &mut c.nodes {
            n.restart(false);
        }
        c.wait_ok();
        true
    }
    async fn kill(&self) -> bool {
        for n in &mut self.cluster.lock().expect("cluster").nodes {
            n.kill();
        }
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("redis+cluster://{addr}?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let key = "conformance:counter";
        let url = format!("redis://127.0.0.1:{}", self.owner_port(key));
        Arc::new(RedisCounter::new(&url, key).await)
    }
}

/// The conformance suite's harness over a Redis Sentinel set (one primary, one replica, three sentinels).
pub struct RedisSentinelHarness {
    /// The set (public so tests can kill or restart its nodes).
    pub set: Mutex<crate::redis_sentinel::SentinelSet>,
    url: String,
}

impl RedisSentinelHarness {
    /// Starts a fresh set.
    pub fn new() -> Self {
        let set = crate::redis_sentinel::SentinelSet::start();
        let url = format!("{}?timeout_ms=500", set.url());
        RedisSentinelHarness {
            set: Mutex::new(set),
            url,
        }
    }

    fn primary_port(&self) -> u16 {
        let s = self.set.lock().expect("set");
        s.nodes[s.primary()].port()
    }
}

impl Default for RedisSentinelHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Harness for RedisSentinelHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        let r = crate::redis_cluster::cli(self.primary_port(), &["DEL", resource]);
        assert!(r.trim().parse::<u64>().is_ok(), "DEL answered {r}");
    }
    async fn restart_losing_data(&self) -> bool {
        let mut s = self.set.lock().expect("set");
        // Both data nodes down first: the replica cannot bring the old data back.
        for n in &mut s.nodes {
            n.kill();
        }
        for n in &mut s.nodes {
            n.restart(false);
        }
        s.wait_settled();
        true
    }
    async fn kill(&self) -> bool {
        for n in &mut self.set.lock().expect("set").nodes {
            n.kill();
        }
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("redis+sentinel://{addr}/mymaster?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let url = format!("redis://127.0.0.1:{}", self.primary_port());
        Arc::new(RedisCounter::new(&url, "conformance:counter").await)
    }
}
