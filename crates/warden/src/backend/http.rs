//! `http://host:port`: the library as a client of a warden server, through its REST API (docs/API.md).
//!
//! Waiting happens on the server, in the backend's FIFO queue: an acquire is one request that returns when
//! granted or when `waitTimeout` runs out, and dropping it closes the connection, which gives up the place in
//! the queue at once. Everything else is one request per call. Written on reqwest (keep-alive pool).

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
            // A warden server closes a connection idle for 30 s (its default `--header-timeout-ms`): drop
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
                fifo: FifoGuarantee::Strict,
                notifications: true,
                fencing: true,
                fencing_survives_data_loss: false,
                shared_across_processes: true,
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

    fn unavailable(&self, e: reqwest::Error, timeout: Duration) -> Error {
        let reason = if e.is_timeout() {
            format!("no answer within {} ms", timeout.as_millis())
        } else if e.is_connect() && self.base.starts_with("https:") {
            // The causes name what failed (refused connection, unknown CA, wrong name, not TLS at all).
            format!("cannot connect over TLS: {}", causes(&e))
        } else if e.is_connect() {
            "no warden server answers there: start one with `warden serve` or pass another --backend".into()
        } else {
            format!("request failed: {e}")
        };
        Error::BackendUnavailable {
            address: self.base.clone(),
            reason,
        }
    }

    /// Sends one request; answers the status and the body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes)> {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .timeout(timeout);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
        }
        let resp = rb.send().await.map_err(|e| self.unavailable(e, timeout))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unavailable(e, timeout))?;
        Ok((status, bytes))
    }

    /// The success envelope's `data`.
    fn data<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice::<Success<T>>(bytes)
            .map(|s| s.data)
            .map_err(|e| Error::Protocol(format!("{} sent an answer this client cannot read: {e}", self.base)))
    }

    /// The lease in a success envelope.
    fn lease_data(&self, bytes: &[u8], expired: Option<bool>) -> Result<LeaseInfo> {
        let lock: Lock = self.data(bytes)?;
        lock.to_lease(expired)
            .map_err(|e| Error::Protocol(format!("{} sent a lease this client cannot read: {e}", self.base)))
    }

    /// GETs `path` and answers the success envelope's `data`, or the error the failure envelope names.
    async fn get_data<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (status, bytes) = self.call(reqwest::Method::GET, path, None, self.timeout).await?;
        if status != 200 {
            return Err(self.failure(status, &bytes, None));
        }
        self.data(&bytes)
    }

    /// The library's error for a failure envelope; `lock_id` is the lease the request named.
    fn failure(&self, status: u16, bytes: &[u8], lock_id: Option<&str>) -> Error {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(body) => self.error(status, body, lock_id),
            Err(_) => Error::Protocol(format!(
                "{} answered {status} with a body that is not a warden error: is it a warden server?",
                self.base
            )),
        }
    }

    /// Maps the failure envelope back to the library's error, by its code and field.
    fn error(&self, status: u16, body: ErrorBody, lock_id: Option<&str>) -> Error {
        let id = || lock_id.unwrap_or_default().to_string();
        match body.code {
            ErrorCode::InvalidRequest => Error::InvalidArgument {
                field: known_field(body.field.as_deref()),
                reason: body.error,
            },
            ErrorCode::NotFound => Error::NotFound { lock_id: id() },
            ErrorCode::NotOwner => Error::NotOwner {
                lock_id: id(),
                client_id: String::new(),
            },
            ErrorCode::LeaseLost => Error::LeaseLost {
                lock_id: id(),
                resource: String::new(),
            },
            ErrorCode::TooManyWaiters | ErrorCode::RateLimited => Error::LimitExceeded { what: body.error },
            ErrorCode::BackendUnavailable => Error::ServerBackendUnavailable {
                server: self.base.clone(),
                reason: body.error,
            },
            ErrorCode::ShuttingDown => Error::ShuttingDown(body.error),
            ErrorCode::Unauthorized => Error::Unauthorized {
                address: self.base.clone(),
                reason: body.error,
            },
            ErrorCode::Forbidden => Error::Forbidden {
                address: self.base.clone(),
                reason: body.error,
            },
            code => Error::Protocol(format!("{} answered {status} {code}: {}", self.base, body.error)),
        }
    }

    async fn acquire_call(&self, req: &AcquireRequest, wait: Duration) -> Result<Option<Grant>> {
        let (lock_type, mode) = req.kind.to_wire();
        let body = AcquireBody {
            resource: req.resource.clone(),
            lock_type: Some(lock_type.into()),
            mode: mode.map(Into::into),
            ttl: Some(req.ttl.as_millis() as u64),
            wait_timeout: Some(wait.as_millis() as u64),
            client_id: req.client_id.clone(),
            max_renewals: req.max_renewals,
            max_hold: req.max_hold.map(|h| h.as_millis() as u64),
        };
        let (status, bytes) = self
            .call(
                reqwest::Method::POST,
                "/api/locks/acquire",
                Some(to_json(&body)?),
                wait + self.timeout,
            )
            .await?;
        if status == 201 {
            let info = self.lease_data(&bytes, Some(false))?;
            let mut g = Grant::new(info.fencing_token, info.acquired_at, info.expires_at);
            g.lock_id = Some(info.lock_id);
            return Ok(Some(g));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) if b.code == ErrorCode::LockTimeout => Ok(None),
            Ok(b) => Err(self.error(status, b, None)),
            Err(_) => Err(self.failure(status, &bytes, None)),
        }
    }

    /// The API authorises release and renew by lock id *and* client id. Guards always pass theirs; a caller
    /// holding only a lock id pays one status lookup.
    async fn client_for(&self, lock_id: &str, client_id: Option<&str>) -> Result<String> {
        if let Some(c) = client_id {
            return Ok(c.to_string());
        }
        match self.lease(lock_id).await? {
            Some(l) => Ok(l.client_id),
            None => Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            }),
        }
    }
}

/// The library's name for a request field the server named (anything else is the request as a whole).
fn known_field(field: Option<&str>) -> &'static str {
    const FIELDS: &[&str] = &[
        "waitTimeout",
        "clientId",
        "lockId",
        "resource",
        "maxHold",
        "maxRenewals",
        "ttl",
        "type",
        "mode",
        "reason",
        "leaseHandle",
    ];
    field
        .and_then(|f| FIELDS.iter().find(|k| **k == f))
        .copied()
        .unwrap_or("request")
}

fn to_json(body: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::Protocol(format!("cannot encode a request: {e}")))
}

/// An error and its causes, joined: reqwest's own text stops at "error sending request".
fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
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
            Err(self.failure(status, &bytes, Some(lock_id)))
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
            _ => Err(self.failure(status, &bytes, Some(lock_id))),
        }
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        if crate::validate::lock_id(lock_id).is_err() {
            return Ok(None);
        }
        let path = format!("/api/locks/{lock_id}/status");
        let (status, bytes) = self.call(reqwest::Method::GET, &path, None, self.timeout).await?;
        match status {
            200 => {
                let st: LockStatus = self.data(&bytes)?;
                let lease = st
                    .lock
                    .to_lease(Some(st.is_expired))
                    .map_err(|e| Error::Protocol(format!("{} sent a lease this client cannot read: {e}", self.base)))?;
                Ok(Some(lease))
            }
            404 => Ok(None),
            _ => Err(self.failure(status, &bytes, Some(lock_id))),
        }
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        crate::validate::resource(resource)?;
        let url = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("resource", resource)
            .finish();
        let q: QueueDto = self.get_data(&format!("/api/locks/queue?{url}")).await?;
        q.to_resource_info()
            .map_err(|e| Error::Protocol(format!("{} sent a queue this client cannot read: {e}", self.base)))
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        crate::validate::client_id(client_id)?;
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("clientId", client_id)
            .finish();
        let locks: Vec<Lock> = self.get_data(&format!("/api/locks/held?{q}")).await?;
        locks
            .iter()
            .map(|l| l.to_lease(None))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Protocol(format!("{} sent a lease this client cannot read: {e}", self.base)))
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        let d: StatsDto = self.get_data("/api/locks/stats").await?;
        let mut stats = Stats::from(d);
        stats.top_resources.truncate(top);
        Ok(stats)
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        let answer = self
            .call(reqwest::Method::GET, "/api/locks/health", None, self.timeout)
            .await;
        let failed = |reason: String, reachable: bool| {
            Health::new(
                "http",
                HealthStatus::Unhealthy,
                vec![NodeHealth::new(self.base.clone(), reachable, None, Some(reason))],
                None,
            )
        };
        match answer {
            Ok((200, bytes)) => {
                let latency = started.elapsed().as_secs_f64() * 1000.0;
                let d: HealthDto = match self.data(&bytes) {
                    Ok(d) => d,
                    Err(e) => return failed(e.to_string(), true),
                };
                let status = match d.status.as_str() {
                    "healthy" => HealthStatus::Healthy,
                    "degraded" => HealthStatus::Degraded,
                    _ => HealthStatus::Unhealthy,
                };
                let mut nodes = vec![NodeHealth::new(self.base.clone(), true, Some(latency), None)];
                for n in d.nodes {
                    nodes.push(NodeHealth::new(n.address, n.reachable, n.latency_ms, n.error));
                }
                Health::new("http", status, nodes, d.quorum)
            }
            Ok((status, bytes)) => failed(self.failure(status, &bytes, None).to_string(), true),
            Err(e) => failed(e.to_string(), false),
        }
    }
}
