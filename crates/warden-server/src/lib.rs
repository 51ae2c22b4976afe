//! # warden-server
//!
//! The warden lock service as a library: the REST API of `docs/API.md` over any warden backend. Build the
//! router with [`router`], or run a whole server on a bound listener with [`run`], which takes a shutdown
//! future so tests can run servers in-process.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let warden = warden::Warden::connect("memory://").await.expect("memory backend");
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7070").await?;
//! warden_server::run(listener, warden, warden_server::ServerConfig::default(), async {
//!     let _ = tokio::signal::ctrl_c().await;
//! })
//! .await
//! # }
//! ```
//!
//! The server keeps no lock state of its own: queues, leases, fences and statistics live in the backend, so
//! several instances over one Redis behave as one service.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod body;
pub mod caller;
pub mod dashboard;
pub mod dto;
pub mod error;
pub mod events;
pub mod expiry;
pub mod handlers;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod ratelimit;
mod serve;
pub mod state;
pub mod tls;
pub mod watch;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tower_http::timeout::TimeoutLayer;

pub use error::ApiError;
pub use state::AppState;

/// Limits and timeouts of one server instance.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// Largest request body accepted (bytes).
    pub max_body_bytes: usize,
    /// Waiters parked on this instance at once, over all resources.
    pub max_waiters: usize,
    /// Waiters parked on this instance at once for one resource.
    pub max_waiters_per_resource: usize,
    /// Deadline of every request that does not wait for a lock.
    pub request_timeout: Duration,
    /// Connections served at once; further ones wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// How long a connection may take to start a request and to send its head, and how long a keep-alive
    /// connection may sit idle between requests, before it is closed: slow or silent clients cannot hold
    /// connections.
    pub header_read_timeout: Duration,
    /// How long a request body may take to arrive once its head is in; a slower one is answered 408
    /// `request_timeout` and its connection closed.
    pub body_read_timeout: Duration,
    /// API keys; `None`: every caller may do everything (see [`ServerConfig::with_auth`]).
    pub auth: Option<Arc<auth::Auth>>,
    /// TLS on every connection (see [`tls::server_config`]); `None`: plain HTTP.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// The audit trail; `None`: live `GET /api/events` readers only (see [`ServerConfig::with_audit`]).
    pub audit: Option<Arc<audit::Audit>>,
    /// Requests per principal (with auth); `None`: unlimited.
    pub rate_limit: Option<Arc<ratelimit::RateLimit>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_body_bytes: 16 * 1024,
            max_waiters: 10_000,
            max_waiters_per_resource: 1_000,
            request_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            header_read_timeout: Duration::from_secs(30),
            body_read_timeout: Duration::from_secs(10),
            auth: None,
            tls: None,
            audit: None,
            rate_limit: None,
        }
    }
}

impl ServerConfig {
    /// Sets the waiter caps (overall, per resource).
    pub fn with_waiter_limits(mut self, total: usize, per_resource: usize) -> Self {
        self.max_waiters = total.max(1);
        self.max_waiters_per_resource = per_resource.max(1);
        self
    }

    /// Sets the connection cap and the deadline for a request head or keep-alive idleness (at least 1 and
    /// 1 ms).
    pub fn with_connection_limits(mut self, max_connections: usize, header_read_timeout: Duration) -> Self {
        self.max_connections = max_connections.max(1);
        self.header_read_timeout = header_read_timeout.max(Duration::from_millis(1));
        self
    }

    /// Requires an API key on every request but `/health` and `/openapi.json` (see [`auth`] and [`caller`]).
    /// Keep the `Arc` to [`auth::Auth::reload`] the keys while serving.
    pub fn with_auth(mut self, auth: Arc<auth::Auth>) -> Self {
        self.auth = Some(auth);
        self
    }

    /// Writes the audit trail through `audit` (see [`audit::Audit::start`]).
    pub fn with_audit(mut self, audit: Arc<audit::Audit>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// Limits each principal to `per_second` requests per second, `burst` at once (429 with `Retry-After`).
    pub fn with_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.rate_limit = Some(Arc::new(ratelimit::RateLimit::new(per_second, burst)));
        self
    }

    /// Serves HTTPS only (see [`tls::server_config`]).
    pub fn with_tls(mut self, tls: Arc<rustls::ServerConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Sets the deadline for a request body to arrive (at least 1 ms).
    pub fn with_body_read_timeout(mut self, deadline: Duration) -> Self {
        self.body_read_timeout = deadline.max(Duration::from_millis(1));
        self
    }
}

/// The API's router over `state`.
pub fn router(state: AppState) -> Router {
    let cfg = state.config().clone();
    // Acquire may wait up to the longest waitTimeout; everything else gets the short deadline.
    let waiting_deadline = warden::validate::MAX_WAIT + cfg.request_timeout;
    let waiting = Router::new()
        .route("/api/locks/acquire", post(handlers::acquire))
        .route("/api/locks/exclusive", post(handlers::exclusive))
        .route("/api/locks/shared", post(handlers::shared))
        .route("/api/locks/read-write", post(handlers::read_write))
        .route("/api/groups/acquire", post(handlers::acquire_group))
        .route("/api/paths/acquire", post(handlers::acquire_path))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            waiting_deadline,
        ));
    let quick = Router::new()
        .route("/api/locks/release", post(handlers::release))
        .route("/api/locks/renew", post(handlers::renew))
        .route("/api/groups/release", post(handlers::release_group))
        .route("/api/groups/renew", post(handlers::renew_group))
        .route("/api/locks/force-release", post(admin::force_release))
        .route("/api/locks/held", get(handlers::held))
        .route("/api/locks/stats", get(handlers::stats))
        .route("/api/locks/analytics", get(handlers::analytics))
        .route("/api/locks/health", get(handlers::health))
        .route("/api/locks/queue", get(handlers::queue))
        .route("/api/locks/{lock_id}/status", get(handlers::status))
        .route("/health", get(handlers::liveness))
        .route("/livez", get(handlers::livez))
        .route("/readyz", get(handlers::readyz))
        .route("/metrics", get(handlers::metrics_text))
        .route("/openapi.json", get(handlers::openapi))
        .route("/", get(dashboard::page))
        .route("/dashboard.js", get(dashboard::script))
        .route("/dashboard.css", get(dashboard::style))
        .route("/dashboard.svg", get(dashboard::icon))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            cfg.request_timeout,
        ));
    // Streams live as long as their reader; they end at shutdown.
    let streams = Router::new()
        .route("/api/events", get(events::events))
        .route("/api/locks/watch", get(watch::watch));
    waiting
        .merge(quick)
        .merge(streams)
        .fallback(handlers::no_route)
        .method_not_allowed_fallback(handlers::wrong_method)
        .layer(DefaultBodyLimit::max(cfg.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            body::BodyLimits {
                max_bytes: cfg.max_body_bytes,
                deadline: cfg.body_read_timeout,
            },
            body::read_body,
        ))
        // Outermost: a caller without a valid key is refused before its body is read.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            caller::authenticate,
        ))
        .with_state(state)
}

/// Serves the API on `listener` until `shutdown` completes; then stops accepting, answers parked waiters
/// with 503 `shutting_down` and finishes in-flight requests. Connections are capped and given deadlines (see
/// [`ServerConfig::max_connections`] and [`ServerConfig::header_read_timeout`]). HTTP/1.1.
pub async fn run<F>(
    listener: tokio::net::TcpListener,
    warden: warden::Warden,
    config: ServerConfig,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let limits = (config.max_connections, config.header_read_timeout);
    let tls = config.tls.clone().map(tokio_rustls::TlsAcceptor::from);
    let state = AppState::new(warden, config);
    let token = state.shutdown_token().clone();
    serve::serve(listener, router(state), limits, tls, token, shutdown).await
}
