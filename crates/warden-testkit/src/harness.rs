//! Harnesses: how the conformance suite gets clients of one backend and does harm to it.

use crate::RedisServer;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::backend::memory::MemoryBackend;
use warden::Warden;

/// Waiter lease used by suite clients, short so that dead waiters leave the queue quickly.
pub const TEST_WAITER_LEASE: Duration = Duration::from_millis(300);

/// A client of `url` as every harness hands it out: its own connections, with [`TEST_WAITER_LEASE`].
pub async fn test_client(url: &str) -> Warden {
    Warden::connect(url)
        .await
        .unwrap_or_else(|e| panic!("connect to the test backend: {e}"))
        .with_waiter_lease(TEST_WAITER_LEASE)
        .expect("waiter lease")
}

/// A non-atomic counter for mutual-exclusion tests: `get` and `set` are separate steps.
#[async_trait::async_trait]
pub trait Counter: Send + Sync {
    /// Reads the value.
    async fn get(&self) -> u64;
    /// Writes the value.
    async fn set(&self, v: u64);
}

/// In-process counter; the await between get and set lets other tasks interleave.
#[derive(Debug, Default)]
pub struct LocalCounter(Mutex<u64>);

#[async_trait::async_trait]
impl Counter for LocalCounter {
    async fn get(&self) -> u64 {
        let v = *self.0.lock().expect("counter");
        tokio::task::yield_now().await;
        v
    }
    async fn set(&self, v: u64) {
        tokio::task::yield_now().await;
        *self.0.lock().expect("counter") = v;
    }
}

/// A counter stored in Redis, read with GET and written with SET (no atomic ops).
pub struct RedisCounter {
    conn: redis::aio::MultiplexedConnection,
    key: String,
}

impl RedisCounter {
    /// Connects to `url` and uses `key`.
    pub async fn new(url: &str, key: &str) -> Self {
        let client = redis::Client::open(url).expect("redis url");
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect counter");
        RedisCounter { conn, key: key.into() }
    }
}

#[async_trait::async_trait]
impl Counter for RedisCounter {
    async fn get(&self) -> u64 {
        let mut c = self.conn.clone();
        let v: Option<u64> = redis::cmd("GET").arg(&self.key).query_async(&mut c).await.expect("GET");
        v.unwrap_or(0)
    }
    async fn set(&self, v: u64) {
        let mut c = self.conn.clone();
        let _: () = redis::cmd("SET")
            .arg(&self.key)
            .arg(v)
            .query_async(&mut c)
            .await
            .expect("SET");
    }
}

/// What the conformance suite needs from a backend under test.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    /// A fresh client, as another process would have it (own connections and subscriber where the backend
    /// has them), with [`TEST_WAITER_LEASE`].
    async fn client(&self) -> Warden;
    /// Takes every holder of `resource` away behind their backs (like `DEL key` on Redis).
    async fn revoke(&self, resource: &str);
    /// Restarts the backend so that it loses its data. Returns false if the harness cannot.
    async fn restart_losing_data(&self) -> bool;
    /// Makes the backend unreachable (kill). Returns false if the harness cannot.
    async fn kill(&self) -> bool;
    /// A URL of this backend's kind that nothing answers, if the kind has addresses.
    fn unreachable_url(&self) -> Option<String>;
    /// A counter stored where the backend lives.
    async fn counter(&self) -> Arc<dyn Counter>;
}

/// The in-process backend. "Restart" swaps in a new store, as a new process would have.
#[derive(Default)]
pub struct MemoryHarness {
    backend: Mutex<Arc<MemoryBackend>>,
}

impl MemoryHarness {
    /// A harness over a fresh store.
    pub fn new() -> Self {
        Self::default()
    }
    fn current(&self) -> Arc<MemoryBackend> {
        self.backend.lock().expect("harness").clone()
    }
}

#[async_trait::async_trait]
impl Harness for MemoryHarness {
    async fn client(&self) -> Warden {
        Warden::with_backend(self.current())
            .with_waiter_lease(TEST_WAITER_LEASE)
            .expect("waiter lease")
    }
    async fn revoke(&self, resource: &str) {
        self.current().revoke(resource);
    }
    async fn restart_losing_data(&self) -> bool {
        *self.backend.lock().expect("harness") = Arc::new(MemoryBackend::new());
        true
    }
    async fn kill(&self) -> bool {
        false
    }
    fn unreachable_url(&self) -> Option<String> {
        None
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        Arc::new(LocalCounter::default())
    }
}

/// One real redis-server for the test.
pub struct RedisHarness {
    /// The server (public so tests can pause or restart it).
    pub server: Mutex<RedisServer>,
    url: String,
}

impl RedisHarness {
    /// Starts a fresh redis-server.
    pub fn new() -> Self {
        let server = RedisServer::start();
        let url = format!("{}?timeout_ms=500", server.url());
        RedisHarness {
            server: Mutex::new(server),
            url,
        }
    }
    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }
}

impl Default for RedisHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Harness for RedisHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        let r = self
            .server
            .lock()
            .expect("server")
            .command(&["DEL", resource])
            .expect("DEL");
        assert!(r.starts_with(':'), "DEL answered {r}");
    }
    async fn restart_losing_data(&self) -> bool {
        self.server.lock().expect("server").restart(false);
        true
    }
    async fn kill(&self) -> bool {
        self.server.lock().expect("server").kill();
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("redis://{addr}?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        Arc::new(RedisCounter::new(&self.url.replace("?timeout_ms=500", ""), "conformance:counter").await)
    }
}

/// Redlock over N real redis-servers (3 by default).
pub struct RedlockHarness {
    /// The nodes (public so tests can kill, pause or restart them).
    pub nodes: Vec<Mutex<RedisServer>>,
    /// With [`RedlockHarness::behind_proxies`], one fault-injecting proxy per node (clients connect to these).
    pub proxies: Vec<crate::proxy::Proxy>,
    url: String,
}

impl RedlockHarness {
    /// Starts three fresh redis-servers.
    pub fn new() -> Self {
        Self::with_nodes(3)
    }
    /// Starts `n` fresh redis-servers.
    pub fn with_nodes(n: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..n).map(|_| RedisServer::start()).collect();
        let hosts: Vec<String> = nodes.iter().map(|s| s.addr()).collect();
        let url = format!("redlock://{}?timeout_ms=100", hosts.join(","));
        RedlockHarness {
            nodes: nodes.into_iter().map(Mutex::new).collect(),
            proxies: Vec::new(),
            url,
        }
    }
    /// Starts `n` fresh redis-servers, each behind its own [`crate::proxy::Proxy`]; the URL names the proxies.
    pub fn behind_proxies(n: usize) -> Self {
        let nodes: Vec<RedisServer> = (0..n).map(|_| RedisServer::start()).collect();
        let proxies: Vec<crate::proxy::Proxy> = nodes.iter().map(|s| crate::proxy::Proxy::start(&s.addr())).collect();
        let hosts: Vec<String> = proxies.iter().map(|p| p.addr()).collect();
        let url = format!("redlock://{}?timeout_ms=100", hosts.join(","));
        RedlockHarness {
            nodes: nodes.into_iter().map(Mutex::new).collect(),
            proxies,
            url,
        }
    }
    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// Runs a command on every node that is up; returns the answers.
    pub fn on_each(&self, args: &[&str]) -> Vec<Option<String>> {
        self.nodes
            .iter()
            .map(|n| n.lock().expect("node").command(args).ok())
            .collect()
    }
}

impl Default for RedlockHarness {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Harness for RedlockHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        for r in self.on_each(&["DEL", resource]) {
            let r = r.expect("DEL on a node");
            assert!(r.starts_with(':'), "DEL answered {r}");
        }
    }
    async fn restart_losing_data(&self) -> bool {
        for n in &self.nodes {
            n.lock().expect("node").restart(false);
        }
        true
    }
    async fn kill(&self) -> bool {
        for n in &self.nodes {
            n.lock().expect("node").kill();
        }
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addrs: Vec<String> = (0..3).filter_map(|_| crate::refused_addr().ok()).collect();
        Some(format!("redlock://{}?timeout_ms=100", addrs.join(",")))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let first = self.nodes[0].lock().expect("node").url();
        Arc::new(RedisCounter::new(&first, "conformance:counter").await)
    }
}
