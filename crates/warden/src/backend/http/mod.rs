//! `http://host:port`: the library as a client of a warden server, through its REST API (docs/API.md).
//!
//! Waiting happens on the server, in the backend's FIFO queue: an acquire is one request that returns when
//! granted or when `waitTimeout` runs out, and dropping it closes the connection, which gives up the place in
//! the queue at once. Everything else is one request per call. Written on reqwest (keep-alive pool).

mod changes;
mod client;
mod views;

use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, NodeHealth, Released,
    Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use crate::wire::{
    AcquireBody, ErrorBody, ErrorCode, HealthDto, Lock, LockStatus, QueueDto, ReleaseBody, RenewBody, StatsDto, Success,
};
use client::*;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Default deadline of a request that does not wait for a lock.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A warden server reached over HTTP or HTTPS.
pub struct HttpBackend {
    base: String,
    /// The API key, sent as a bearer token; never shown.
    token: Option<String>,
    client: reqwest::Client,
    timeout: Duration,
    caps: Capabilities,
    router: Arc<WakeRouter>,
}

impl std::fmt::Debug for HttpBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the API key.
        f.debug_struct("HttpBackend")
            .field("base", &self.base)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl HttpBackend {
    /// Connects to `http[s]://[:KEY@]host:port[?timeout_ms=N&ca=/path/ca.pem&identity=/path/client.pem]` and
    /// reads the server's capabilities. `KEY` (the URL's password, or its user name when there is no password) is
    /// the API key, sent as a bearer token; `ca` adds a PEM certificate authority to the system's for
    /// `https://` (a private CA); `identity` is a PEM file with a client certificate and its key, for servers
    /// that require one. Error messages show the server as `scheme://host:port`, never the key.
    pub async fn connect(url: &str) -> Result<Self> {
        let parsed = url::Url::parse(url).map_err(|_| {
            Error::invalid(
                "backend",
                "not a valid http:// or https:// URL (its text is not repeated here: it may hold a key)",
            )
        })?;
        let tls = parsed.scheme() == "https";
        let host = parsed
            .host_str()
            .ok_or_else(|| Error::invalid("backend", "the http(s):// URL has no host"))?;
        let port = parsed.port_or_known_default().unwrap_or(7070);
        let token = match (parsed.username(), parsed.password()) {
            (_, Some(p)) if !p.is_empty() => Some(p.to_string()),
            (u, _) if !u.is_empty() => Some(u.to_string()),
            _ => None,
        }
        .map(|t| {
            url::form_urlencoded::parse(format!("t={t}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or(t)
        });
        let mut timeout = DEFAULT_TIMEOUT;
        let mut ca: Option<String> = None;
        let mut identity: Option<String> = None;
        for (k, v) in parsed.query_pairs() {
            match k.as_ref() {
                "timeout_ms" => {
                    let ms: u64 = v
                        .parse()
                        .ok()
                        .filter(|ms| (1..=600_000).contains(ms))
                        .ok_or_else(|| Error::invalid("timeout_ms", "must be 1..=600000"))?;
                    timeout = Duration::from_millis(ms);
                }
                "ca" => ca = Some(v.into_owned()),
                "identity" => identity = Some(v.into_owned()),
                other => {
                    return Err(Error::invalid(
                        "backend",
                        format!("unknown option `{other}` in the http(s):// URL; known: timeout_ms, ca, identity"),
                    ))
                }
            }
        }
        let path = parsed.path().trim_end_matches('/');
        let scheme = if tls { "https" } else { "http" };
        let base = format!("{scheme}://{host}:{port}{path}");
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = ca {
            if !tls {
                return Err(Error::invalid("ca", "a CA is for https:// URLs"));
            }
            let pem = std::fs::read(&ca).map_err(|e| Error::invalid("ca", format!("cannot read `{ca}`: {e}")))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| Error::invalid("ca", format!("`{ca}` is not a PEM certificate: {e}")))?;
            builder = builder.add_root_certificate(cert);
        }
        if let Some(path) = identity {
            if !tls {
                return Err(Error::invalid("identity", "a client certificate is for https:// URLs"));
            }
            let pem =
                std::fs::read(&path).map_err(|e| Error::invalid("identity", format!("cannot read `{path}`: {e}")))?;
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                Error::invalid(
                    "identity",
                    format!("`{path}` must hold a PEM certificate and its private key: {e}"),
                )
            })?;
            builder = builder.identity(id);
        }
        let client = builder
            .connect_timeout(timeout)
            .pool_max_idle_per_host(256)
            // A warden server closes a connection idle for 30 s (its default `--header-timeout`): drop
            // idle ones first, so a request never goes out on a connection the server is closing.
            .pool_idle_timeout(Duration::from_secs(20))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| Error::BackendUnavailable {
                address: base.clone(),
                reason: format!("cannot build the HTTP client: {e}"),
            })?;
        let mut backend = HttpBackend {
            base,
            token,
            client,
            timeout,
            caps: Capabilities {
                shared: true,
                semaphores: false,
                fifo: FifoGuarantee::Strict,
                notifications: true,
                fencing: true,
                fencing_survives_data_loss: false,
                shared_across_processes: true,
                conditions: false,
                priorities: false,
                intentions: false,
                remote_wait: true,
            },
            router: Arc::new(WakeRouter::default()),
        };
        let (status, bytes) = backend
            .call(reqwest::Method::GET, "/api/locks/health", None, timeout)
            .await?;
        if status != 200 {
            return Err(backend.failure(status, &bytes, None));
        }
        let health: HealthDto = backend.data(&bytes)?;
        let c = health.capabilities;
        backend.caps.shared = c.shared;
        backend.caps.semaphores = c.semaphores;
        backend.caps.conditions = c.conditions;
        backend.caps.priorities = c.priorities;
        backend.caps.intentions = c.intentions;
        backend.caps.fifo = if c.fifo == "best-effort" {
            FifoGuarantee::BestEffort
        } else {
            FifoGuarantee::Strict
        };
        backend.caps.fencing_survives_data_loss = c.fencing_survives_data_loss;
        Ok(backend)
    }

    /// The server's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// The server's analytics: the `top` resources it served, ranked `by` (`GET /api/locks/analytics`).
    pub async fn analytics(
        &self,
        top: usize,
        by: crate::analytics::AnalyticsOrder,
    ) -> Result<crate::wire::AnalyticsDto> {
        self.get_data(&format!("/api/locks/analytics?top={top}&by={}", by.as_str()))
            .await
    }
}

#[async_trait::async_trait]
impl Backend for HttpBackend {
    fn kind(&self) -> &'static str {
        "http"
    }

    fn capabilities(&self) -> Capabilities {
        self.caps.clone()
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    /// One try (`waitTimeout: 0`); waiting goes through [`Backend::acquire_waiting`].
    async fn attempt(&self, req: &AcquireRequest, _waiter_id: Option<&str>) -> Result<Attempt> {
        Ok(match self.acquire_call(req, Duration::ZERO).await? {
            Some(g) => Attempt::Granted(g),
            None => Attempt::NotGranted {
                retry_in: None,
                backend_now: None,
            },
        })
    }

    async fn acquire_waiting(&self, req: &AcquireRequest, wait: Duration) -> Result<Grant> {
        let started = Instant::now();
        self.acquire_call(req, wait).await?.ok_or_else(|| Error::Timeout {
            resource: req.resource.clone(),
            waited: started.elapsed(),
        })
    }

    async fn leave_queue(&self, _resource: &str, _waiter_id: &str) -> Result<bool> {
        // The server leaves the queue when the waiting request's connection closes.
        Ok(true)
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let body = ReleaseBody {
            lock_id: lock_id.to_string(),
            client_id: self.client_for(lock_id, client_id).await?,
        };
        let (status, bytes) = self
            .call(
                reqwest::Method::POST,
                "/api/locks/release",
                Some(to_json(&body)?),
                self.timeout,
            )
            .await?;
        if status == 200 {
            // The API's release answer carries no hold time.
            Ok(Released::default())
        } else {
            let about = About {
                lock_id,
                client_id: Some(&body.client_id),
            };
            Err(self.failure(status, &bytes, Some(about)))
        }
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        if let Some(t) = ttl {
            crate::validate::ttl(t)?;
        }
        let body = RenewBody {
            lock_id: lock_id.to_string(),
            client_id: self.client_for(lock_id, client_id).await?,
            ttl: ttl.map(|t| t.as_millis() as u64),
        };
        let (status, bytes) = self
            .call(
                reqwest::Method::POST,
                "/api/locks/renew",
                Some(to_json(&body)?),
                self.timeout,
            )
            .await?;
        if status == 200 {
            let lease = self.lease_data(&bytes, Some(false))?;
            // The server's clock wrote expiresAt; the extension asked for is the safe figure here.
            let granted = ttl.unwrap_or(lease.ttl);
            return Ok(Renewal::Renewed { lease, granted });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) if b.code == ErrorCode::RenewalCapped => {
                let expires_at = match self.lease(lock_id).await? {
                    Some(l) => l.expires_at,
                    None => SystemTime::now(),
                };
                Ok(Renewal::Capped { expires_at })
            }
            _ => {
                let about = About {
                    lock_id,
                    client_id: Some(&body.client_id),
                };
                Err(self.failure(status, &bytes, Some(about)))
            }
        }
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        self.view_lease(lock_id).await
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        self.view_inspect(resource).await
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        self.view_held(client_id).await
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        self.view_stats(top).await
    }

    async fn health(&self) -> Health {
        self.view_health().await
    }

    fn changes(&self, resource: &str) -> Option<futures::stream::BoxStream<'static, ()>> {
        Some(self.change_stream(resource))
    }
}
