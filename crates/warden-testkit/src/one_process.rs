//! A harness whose clients are one process: every `client()` is the same connection, so the backend sees
//! all of the test's tasks at once (its group commit then batches their writes, and its in-process handoffs
//! are taken).

use crate::harness::{Counter, Harness};
use std::sync::Arc;
use tokio::sync::OnceCell;
use warden::Warden;

/// Wraps `H`: one client, made on first use, handed out to every caller.
pub struct OneProcess<H> {
    inner: H,
    client: OnceCell<Warden>,
}

impl<H: Harness> OneProcess<H> {
    pub fn new(inner: H) -> Self {
        OneProcess {
            inner,
            client: OnceCell::new(),
        }
    }
}

#[async_trait::async_trait]
impl<H: Harness> Harness for OneProcess<H> {
    async fn client(&self) -> Warden {
        self.client.get_or_init(|| self.inner.client()).await.clone()
    }
    async fn revoke(&self, resource: &str) {
        self.inner.revoke(resource).await
    }
    async fn restart_losing_data(&self) -> bool {
        self.inner.restart_losing_data().await
    }
    async fn kill(&self) -> bool {
        self.inner.kill().await
    }
    fn unreachable_url(&self) -> Option<String> {
        self.inner.unreachable_url()
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        self.inner.counter().await
    }
}
