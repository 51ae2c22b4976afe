//! `redis+sentinel://`: a Redis primary found through Sentinel, followed across failovers.
//!
//! The primary is driven by the single-node backend (its layout, group commit, subscriber and statistics); this
//! module finds it (`SENTINEL GET-MASTER-ADDR-BY-NAME`, asking every sentinel at once and taking the first
//! answer), checks that it says it is a primary (`ROLE`), and switches to a new one when a sentinel announces a
//! failover (`+switch-master`, read from every sentinel), when a call fails, and every few seconds. After a
//! switch every waiter looks again (a release may have been published on the old primary). An operation whose
//! call failed is sent again only if the primary changed meanwhile, so it is never applied twice on one node.

mod url;

use super::redis::{map_err, open_client, RedisBackend, CAPABILITIES};
use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, Health, HealthStatus, LeaseInfo, NodeHealth, Released, Renewal,
    ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use futures::{FutureExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use url::SentinelUrl;

/// How often the primary is looked up when nothing announced a failover.
const CHECK_EVERY: Duration = Duration::from_secs(5);

/// The primary now.
struct Primary {
    address: String,
    backend: Arc<RedisBackend>,
}

struct Inner {
    url: SentinelUrl,
    router: Arc<WakeRouter>,
    primary: tokio::sync::watch::Sender<Arc<Primary>>,
    /// Held while the primary is looked up and switched.
    switching: tokio::sync::Mutex<()>,
}

/// The Redis Sentinel backend.
pub struct RedisSentinelBackend {
    inner: Arc<Inner>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RedisSentinelBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSentinelBackend")
            .field("address", &self.inner.url.address)
            .finish()
    }
}

impl Drop for RedisSentinelBackend {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl RedisSentinelBackend {
    /// Asks the sentinels of `url` (`redis+sentinel://[user:password@]s1:26379,s2:26379/name[/db][?options]`)
    /// for the primary they monitor as `name`, connects to it, and follows it from then on.
    pub async fn connect(url: &str) -> Result<Self> {
        let url = SentinelUrl::parse(url)?;
        let router = Arc::new(WakeRouter::default());
        let address = resolve(&url).await?;
        let backend = connect_primary(&url, &address, router.clone()).await?;
        let inner = Arc::new(Inner {
            url,
            router,
            primary: tokio::sync::watch::Sender::new(Arc::new(Primary {
                address,
                backend: Arc::new(backend),
            })),
            switching: tokio::sync::Mutex::new(()),
        });
        let mut tasks: Vec<_> = inner
            .url
            .sentinels
            .iter()
            .map(|s| tokio::spawn(listen(inner.clone(), s.clone())))
            .collect();
        let me = inner.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + CHECK_EVERY, CHECK_EVERY);
            loop {
                tick.tick().await;
                let seen = me.current().address.clone();
                let _ = me.follow(&seen).await;
            }
        }));
        Ok(RedisSentinelBackend { inner, tasks })
    }

    /// The primary's `host:port` now.
    pub fn primary(&self) -> String {
        self.inner.current().address.clone()
    }

    /// Runs `f` on the primary; after a failure, looks the primary up and runs `f` again if it changed.
    async fn on_primary<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Arc<RedisBackend>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let p = self.inner.current();
        match f(p.backend.clone()).await {
            Err(e @ (Error::BackendUnavailable { .. } | Error::Protocol(_))) => {
                if self.inner.follow(&p.address).await.unwrap_or(false) {
                    f(self.inner.current().backend.clone()).await
                } else {
                    Err(e)
                }
            }
            other => other,
        }
    }
}

impl Inner {
    fn current(&self) -> Arc<Primary> {
        self.primary.borrow().clone()
    }

    /// Looks the primary up; switches to it if it is not the one at `seen`. Returns whether the primary is now
    /// another than `seen`.
    async fn follow(&self, seen: &str) -> Result<bool> {
        let _turn = self.switching.lock().await;
        if self.current().address != seen {
            return Ok(true);
        }
        let address = resolve(&self.url).await?;
        if address == seen {
            return Ok(false);
        }
        let backend = connect_primary(&self.url, &address, self.router.clone()).await?;
        tracing::warn!(from = seen, to = %address, "following the Redis primary to its new address");
        self.primary.send_replace(Arc::new(Primary {
            address,
            backend: Arc::new(backend),
        }));
        // Releases published on the old primary may never have reached this process.
        self.router.wake_all();
        Ok(true)
    }
}

/// The primary's `host:port`, from the first sentinel that knows it.
async fn resolve(url: &SentinelUrl) -> Result<String> {
    let timeout = url.opts.timeout;
    let asks: Vec<_> = url
        .sentinels
        .iter()
        .map(|s| {
            async move {
                let client = open_client(&url.sentinel_url(s), s, &url.opts).map_err(|e| e.to_string())?;
                let ask = async {
                    let mut c = client.get_multiplexed_async_connection().await?;
                    redis::cmd("SENTINEL")
                        .arg("GET-MASTER-ADDR-BY-NAME")
                        .arg(&url.name)
                        .query_async::<Option<(String, u16)>>(&mut c)
                        .await
                };
                match tokio::time::timeout(timeout, ask).await {
                    Err(_) => Err(format!("{s}: no answer within {timeout:?}")),
                    Ok(Err(e)) => Err(format!("{s}: {e}")),
                    Ok(Ok(None)) => Err(format!("{s} monitors no primary named `{}`", url.name)),
                    Ok(Ok(Some((host, port)))) => Ok(format!("{host}:{port}")),
                }
            }
            .boxed()
        })
        .collect();
    futures::future::select_ok(asks)
        .await
        .map(|(a, _)| a)
        .map_err(|e| Error::BackendUnavailable {
            address: url.address.clone(),
            reason: format!("no sentinel named the primary (last: {e})"),
        })
}

/// Connects to the node at `address` and checks that it is a primary (a sentinel may be behind a failover).
async fn connect_primary(url: &SentinelUrl, address: &str, router: Arc<WakeRouter>) -> Result<RedisBackend> {
    let backend = RedisBackend::connect_with_router(&url.node_url(address), router).await?;
    let mut c = backend.connection();
    let role: redis::Value = tokio::time::timeout(url.opts.timeout, redis::cmd("ROLE").query_async(&mut c))
        .await
        .map_err(|_| Error::BackendUnavailable {
            address: address.to_string(),
            reason: "no answer to ROLE".into(),
        })?
        .map_err(|e| map_err(address, e))?;
    match &role {
        redis::Value::Array(items) if matches!(items.first(), Some(redis::Value::BulkString(r)) if r == b"master") => {
            Ok(backend)
        }
        _ => Err(Error::BackendUnavailable {
            address: address.to_string(),
            reason: "the sentinels name this node as the primary, but it is not one (yet)".into(),
        }),
    }
}

/// Reads `+switch-master` from one sentinel and follows each failover of our primary; reconnects with a pause
/// of a second when the sentinel goes away.
async fn listen(me: Arc<Inner>, sentinel: String) {
    loop {
        if let Ok(client) = open_client(&me.url.sentinel_url(&sentinel), &sentinel, &me.url.opts) {
            if let Ok(mut pubsub) = client.get_async_pubsub().await {
                if pubsub.subscribe("+switch-master").await.is_ok() {
                    let mut messages = pubsub.on_message();
                    while let Some(m) = messages.next().await {
                        // "<name> <old-ip> <old-port> <new-ip> <new-port>"
                        let payload: String = m.get_payload().unwrap_or_default();
                        if payload.split(' ').next() == Some(me.url.name.as_str()) {
                            let seen = me.current().address.clone();
                            let _ = me.follow(&seen).await;
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[async_trait::async_trait]
impl Backend for RedisSentinelBackend {
    fn kind(&self) -> &'static str {
        "redis-sentinel"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.inner.router
    }

    fn new_lock_id(&self, resource: &str) -> String {
        self.inner.current().backend.new_lock_id(resource)
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        self.on_primary(|b| async move { b.attempt(req, waiter_id).await })
            .await
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        self.on_primary(|b| async move { b.leave_queue(resource, waiter_id).await })
            .await
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        self.on_primary(|b| async move { b.release(lock_id, client_id).await })
            .await
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        self.on_primary(|b| async move { b.renew(lock_id, ttl, client_id).await })
            .await
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        self.on_primary(|b| async move { b.lease(lock_id).await }).await
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        self.on_primary(|b| async move { b.inspect(resource).await }).await
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        self.on_primary(|b| async move { b.held(client_id).await }).await
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        self.on_primary(|b| async move { b.stats(top).await }).await
    }

    async fn health(&self) -> Health {
        let primary = self.inner.current().backend.health().await;
        let mut nodes = primary.nodes;
        let primary_up = nodes.iter().all(|n| n.reachable);
        let mut sentinels_up = true;
        for s in &self.inner.url.sentinels {
            let url = self.inner.url.sentinel_url(s);
            let start = std::time::Instant::now();
            let ping = async {
                let client = open_client(&url, s, &self.inner.url.opts).map_err(|e| e.to_string())?;
                let mut c = client
                    .get_multiplexed_async_connection()
                    .await
                    .map_err(|e| e.to_string())?;
                redis::cmd("PING")
                    .query_async::<String>(&mut c)
                    .await
                    .map_err(|e| e.to_string())
            };
            let node = match tokio::time::timeout(self.inner.url.opts.timeout, ping).await {
                Ok(Ok(_)) => NodeHealth::new(
                    format!("sentinel {s}"),
                    true,
                    Some(start.elapsed().as_secs_f64() * 1000.0),
                    None,
                ),
                Ok(Err(e)) => NodeHealth::new(format!("sentinel {s}"), false, None, Some(e)),
                Err(_) => NodeHealth::new(format!("sentinel {s}"), false, None, Some("no answer".into())),
            };
            sentinels_up &= node.reachable;
            nodes.push(node);
        }
        let status = match (primary_up, sentinels_up) {
            (true, true) => HealthStatus::Healthy,
            (true, false) => HealthStatus::Degraded,
            (false, _) => HealthStatus::Unhealthy,
        };
        Health::new("redis-sentinel", status, nodes, None)
    }
}
