//! What every handler shares: the library handle, the limits and the shutdown signal. Nothing here holds
//! lock state: that lives in the backend, so any number of instances can serve one backend.

use crate::audit::Audit;
use crate::expiry::ExpiryWatch;
use crate::limits::WaiterLimits;
use crate::ServerConfig;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
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
    audit: Arc<Audit>,
    expiry: Arc<ExpiryWatch>,
}

impl AppState {
    /// State over a connected library handle.
    pub fn new(warden: Warden, config: ServerConfig) -> Self {
        let limits = WaiterLimits::new(config.max_waiters, config.max_waiters_per_resource);
        let audit = match &config.audit {
            Some(a) => a.clone(),
            // No writer: cannot fail, needs no runtime.
            None => Arc::new(Audit::off()),
        };
        let expiry = Arc::new(ExpiryWatch::default());
        let shutdown = CancellationToken::new();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (watch, w, a, stop) = (expiry.clone(), warden.clone(), audit.clone(), shutdown.clone());
            rt.spawn(async move {
                tokio::select! {
                    _ = watch.run(w, a) => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
        AppState {
            inner: Arc::new(Inner {
                warden,
                config,
                limits,
                shutdown,
                metrics: crate::metrics::handle(),
                audit,
                expiry,
            }),
        }
    }

    /// The audit trail.
    pub fn audit(&self) -> &Arc<Audit> {
        &self.inner.audit
    }

    /// The leases this instance watches for expiry events.
    pub fn expiry(&self) -> &Arc<ExpiryWatch> {
        &self.inner.expiry
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

    /// The API keys, when the server requires them.
    pub fn auth(&self) -> Option<&Arc<crate::auth::Auth>> {
        self.inner.config.auth.as_ref()
    }

    /// The Prometheus handle.
    pub fn metrics(&self) -> &PrometheusHandle {
        &self.inner.metrics
    }
}
