//! What every handler shares: the library handle, the limits and the shutdown signal. Nothing here holds
//! lock state: that lives in the backend, so any number of instances can serve one backend.

use crate::limits::WaiterLimits;
use crate::ServerConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio_util::sync::CancellationToken;
use warden::Warden;

/// Shared state of one server instance.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    warden: Warden,
    config: ServerConfig,
    limits: Arc<WaiterLimits>,
    shutdown: CancellationToken,
    metrics: PrometheusHandle,
    /// When this instance granted each lease still held (for the hold-time histogram; bounded).
    grants: Mutex<HashMap<String, Instant>>,
}

/// Most grant times remembered for the hold-time histogram; beyond it the oldest view is dropped.
const GRANTS_CAP: usize = 100_000;

impl AppState {
    /// State over a connected library handle.
    pub fn new(warden: Warden, config: ServerConfig) -> Self {
        let limits = WaiterLimits::new(config.max_waiters, config.max_waiters_per_resource);
        AppState {
            inner: Arc::new(Inner {
                warden,
                config,
                limits,
                shutdown: CancellationToken::new(),
                metrics: crate::metrics::handle(),
                grants: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The library handle.
    pub fn warden(&self) -> &Warden {
        &self.inner.warden
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The waiter caps.
    pub fn limits(&self) -> &Arc<WaiterLimits> {
        &self.inner.limits
    }

    /// Cancelled when shutdown begins; parked waiters then answer 503.
    pub fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Remembers when this instance granted `lock_id`.
    pub fn note_grant(&self, lock_id: &str) {
        let mut g = self.inner.grants.lock().unwrap_or_else(|p| p.into_inner());
        if g.len() >= GRANTS_CAP {
            g.clear();
        }
        g.insert(lock_id.to_string(), Instant::now());
    }

    /// How long ago this instance granted `lock_id`, forgetting it.
    pub fn take_grant(&self, lock_id: &str) -> Option<std::time::Duration> {
        let mut g = self.inner.grants.lock().unwrap_or_else(|p| p.into_inner());
        g.remove(lock_id).map(|t| t.elapsed())
    }

    /// The Prometheus handle.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
}
