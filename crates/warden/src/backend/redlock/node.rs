//! One Redlock node: its connection (made on first use, re-made after a failure), calls bounded by the
//! node's timeout, and releases that keep trying until they reach the node or the lease is over.

use super::super::redis::RedisBackend;
use super::super::Backend;
use crate::error::{Error, Result};
use crate::wake::WakeRouter;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// After a failed connect, a node is not retried for this long (calls fail fast meanwhile).
const RECONNECT_BACKOFF: Duration = Duration::from_millis(250);
/// First pause before a release is retried on a node; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);

pub(super) struct Node {
    pub url: String,
    pub address: String,
    pub timeout: Duration,
    pub router: Arc<WakeRouter>,
    pub backend: Mutex<Option<Arc<RedisBackend>>>,
    pub connecting: tokio::sync::Mutex<()>,
    pub last_failure: Mutex<Option<Instant>>,
}

impl Node {
    fn current(&self) -> Option<Arc<RedisBackend>> {
        self.backend.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn unavailable(&self, reason: impl Into<String>) -> Error {
        Error::BackendUnavailable {
            address: self.address.clone(),
            reason: reason.into(),
        }
    }

    /// The node's connection, connecting on first use (nodes down at start-up join when they come back).
    pub async fn get(&self) -> Result<Arc<RedisBackend>> {
        if let Some(b) = self.current() {
            return Ok(b);
        }
        let _one = self.connecting.lock().await;
        if let Some(b) = self.current() {
            return Ok(b);
        }
        let recent = self
            .last_failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < RECONNECT_BACKOFF);
        if recent {
            return Err(self.unavailable("down (reconnecting)"));
        }
        match RedisBackend::connect_redlock_node(&self.url, self.router.clone()).await {
            Ok(b) => {
                let b = Arc::new(b);
                *self.backend.lock().unwrap_or_else(|p| p.into_inner()) = Some(b.clone());
                Ok(b)
            }
            Err(e) => {
                *self.last_failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Runs `op` on this node within its timeout.
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T>
    where
        F: FnOnce(Arc<RedisBackend>) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let fut = async {
            let b = self.get().await?;
            op(b).await
        };
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(self.unavailable(format!("no answer within {:?}", self.timeout))),
        }
    }

    /// Releases `token` on this node. If the node cannot be reached, keeps trying in the background until
    /// it answers or `deadline` (the lease's end: after it the node frees the key by itself) is near; a
    /// release that never got through is logged and counted (`warden_redlock_release_failures_total`).
    pub async fn release(
        self: Arc<Self>,
        token: Arc<str>,
        client: Option<Arc<str>>,
        deadline: Instant,
    ) -> Result<crate::types::Released> {
        let first = self.release_once(&token, client.as_deref()).await;
        if matches!(&first, Err(e) if e.is_retryable()) {
            tokio::spawn(self.retry_release(token, client, deadline));
        }
        first
    }

    async fn release_once(&self, token: &str, client: Option<&str>) -> Result<crate::types::Released> {
        self.call(|b| async move { b.release(token, client).await }).await
    }

    async fn retry_release(self: Arc<Self>, token: Arc<str>, client: Option<Arc<str>>, deadline: Instant) {
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            if Instant::now() + pause >= deadline {
                tracing::warn!(
                    node = %self.address,
                    "a release could not reach this Redlock node before the lease ended; the node frees it by expiry"
                );
                metrics::counter!("warden_redlock_release_failures_total", "node" => self.address.clone()).increment(1);
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RETRY_PAUSE);
            match self.release_once(&token, client.as_deref()).await {
                Err(e) if e.is_retryable() => {
                    tracing::debug!(node = %self.address, error = %e, "release retry failed");
                }
                _ => return,
            }
        }
    }
}
