//! The conformance harness over ZooKeeper: one standalone server, or an ensemble of three; recording grants or not.

use crate::harness::{Counter, Harness};
use crate::zk_server::ZkEnsemble;
use std::sync::{Arc, Mutex};
use warden::backend::zookeeper::ZkBackend;
use warden::Warden;
use zookeeper_client::{Acls, Client, CreateMode};

/// A throwaway ZooKeeper ensemble for one test.
pub struct ZkHarness {
    /// The ensemble (public so tests can kill or pause members).
    pub ensemble: Mutex<ZkEnsemble>,
    url: String,
}

impl ZkHarness {
    /// One server.
    pub fn new() -> Self {
        Self::with_members(1)
    }

    /// `n` servers.
    pub fn with_members(n: usize) -> Self {
        Self::start(n, "")
    }

    /// One server, recording grants (`conditions=on`: conditional acquires offered).
    pub fn recording() -> Self {
        Self::start(1, "&conditions=on")
    }

    fn start(n: usize, options: &str) -> Self {
        let ensemble = ZkEnsemble::start(n);
        let url = format!("{}/warden?timeout_ms=500&session_timeout=4s{options}", ensemble.url());
        ZkHarness {
            ensemble: Mutex::new(ensemble),
            url,
        }
    }

    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn ensemble(&self) -> std::sync::MutexGuard<'_, ZkEnsemble> {
        self.ensemble.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A plain ZooKeeper client of the ensemble (for doing what warden would not).
    pub async fn raw_client(&self) -> Client {
        let hosts = self.ensemble().hosts();
        Client::connect(&hosts).await.expect("zookeeper client")
    }
}

impl Default for ZkHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Harness for ZkHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        let c = self.raw_client().await;
        let dir = format!("/warden{}", ZkBackend::resource_dir(resource));
        // All at once, as one multi-op: deleted one by one, a waiter could take the lock between two deletes.
        for _ in 0..10 {
            let children = c.list_children(&dir).await.unwrap_or_default();
            if children.is_empty() {
                return;
            }
            let mut all = c.new_multi_writer();
            for child in &children {
                all.add_delete(&format!("{dir}/{child}"), None).expect("a delete op");
            }
            if all.commit().await.is_ok() {
                return;
            }
        }
        panic!("could not revoke {resource}: its nodes kept changing");
    }
    async fn restart_losing_data(&self) -> bool {
        false
    }
    async fn kill(&self) -> bool {
        self.ensemble().kill_all();
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("zk://{addr}?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let client = self.raw_client().await;
        match client
            .create("/counter", b"0", &CreateMode::Persistent.with_acls(Acls::anyone_all()))
            .await
        {
            Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
            Err(e) => panic!("create the counter node: {e}"),
        }
        Arc::new(ZkCounter { client })
    }
}

/// A counter in a ZooKeeper node, read and written without version checks (no atomic ops).
pub struct ZkCounter {
    client: Client,
}

#[async_trait::async_trait]
impl Counter for ZkCounter {
    async fn get(&self) -> u64 {
        let (data, _) = self.client.get_data("/counter").await.expect("zookeeper get");
        String::from_utf8_lossy(&data).parse().unwrap_or(0)
    }
    async fn set(&self, v: u64) {
        self.client
            .set_data("/counter", v.to_string().as_bytes(), None)
            .await
            .expect("zookeeper set");
    }
}
