//! The conformance harness over etcd: one member, or three; recording grants or not.

use crate::etcd_server::EtcdCluster;
use crate::harness::{Counter, Harness};
use std::sync::{Arc, Mutex};
use warden::backend::etcd::EtcdBackend;
use warden::Warden;

/// A throwaway etcd cluster for one test.
pub struct EtcdHarness {
    /// The cluster (public so tests can kill or pause members).
    pub cluster: Mutex<EtcdCluster>,
    url: String,
}

impl EtcdHarness {
    /// One member.
    pub fn new() -> Self {
        Self::with_members(1)
    }

    /// `n` members.
    pub fn with_members(n: usize) -> Self {
        Self::start(n, "")
    }

    /// One member, recording grants (`conditions=on`: conditional acquires offered).
    pub fn recording() -> Self {
        Self::start(1, "&conditions=on")
    }

    fn start(n: usize, options: &str) -> Self {
        let cluster = EtcdCluster::start(n);
        let url = format!("{}?timeout_ms=500{options}", cluster.url());
        EtcdHarness {
            cluster: Mutex::new(cluster),
            url,
        }
    }

    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn cluster(&self) -> std::sync::MutexGuard<'_, EtcdCluster> {
        self.cluster.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for EtcdHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Harness for EtcdHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        let prefix = EtcdBackend::resource_prefix("warden/", resource);
        self.cluster().etcdctl(&["del", "--prefix", &prefix]);
    }
    async fn restart_losing_data(&self) -> bool {
        false
    }
    async fn kill(&self) -> bool {
        self.cluster().kill_all();
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("etcd://{addr}?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let endpoints: Vec<String> = {
            let c = self.cluster();
            (0..c.members.len()).map(|i| c.endpoint(i)).collect()
        };
        let client = etcd_client::Client::connect(endpoints, None)
            .await
            .expect("etcd counter client");
        Arc::new(EtcdCounter { client })
    }
}

/// A counter in etcd, read with GET and written with PUT (no atomic ops).
pub struct EtcdCounter {
    client: etcd_client::Client,
}

#[async_trait::async_trait]
impl Counter for EtcdCounter {
    async fn get(&self) -> u64 {
        let r = self
            .client
            .kv_client()
            .get("conformance/counter", None)
            .await
            .expect("etcd GET");
        r.kvs()
            .first()
            .and_then(|kv| kv.value_str().ok()?.parse().ok())
            .unwrap_or(0)
    }
    async fn set(&self, v: u64) {
        self.client
            .kv_client()
            .put("conformance/counter", v.to_string(), None)
            .await
            .expect("etcd PUT");
    }
}
