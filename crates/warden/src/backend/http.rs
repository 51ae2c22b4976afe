//! `http://host:port`: the library as a client of a warden server, through its REST API (shared/API.md).
//!
//! Waiting happens on the server, in the backend's FIFO queue: an acquire is one request that returns when
//! granted or when `waitTimeout` runs out, and dropping it closes the connection, which gives up the place in
//! the queue at once. Everything else is one request per call. Written on reqwest (keep-alive pool).

use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, LockKind, NodeHealth,
    QueueEntry, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use serde_json::{json, Value};
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
    /// Connects to `http[s]://[:KEY@]host:port[?timeout_ms=N&ca=/path/ca.pem]` and reads the server's
    /// capabilities. `KEY` (the URL's password, or its user name when there is no password) is the API key,
    /// sent as a bearer token; `ca` adds a PEM certificate authority to the system's for `https://` (a private
    /// CA). Error messages show the server as `scheme://host:port`, never the key.
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
                other => {
                    return Err(Error::invalid(
                        "backend",
                        format!("unknown option `{other}` in the http(s):// URL; known: timeout_ms, ca"),
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
        let (status, v) = backend
            .call(reqwest::Method::GET, "/api/locks/health", None, timeout)
            .await?;
        if status != 200 {
            return Err(backend.error(status, &v));
        }
        let c = &v["data"]["capabilities"];
        if c.is_object() {
            backend.caps.shared = c["shared"].as_bool().unwrap_or(true);
            backend.caps.fifo = if c["fifo"] == "best-effort" {
                FifoGuarantee::BestEffort
            } else {
                FifoGuarantee::Strict
            };
            backend.caps.fencing_survives_data_loss = c["fencingSurvivesDataLoss"].as_bool().unwrap_or(false);
        }
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

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Duration,
    ) -> Result<(u16, Value)> {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .timeout(timeout);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let resp = rb.send().await.map_err(|e| self.unavailable(e, timeout))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unavailable(e, timeout))?;
        let v: Value = serde_json::from_slice(&bytes).map_err(|_| {
            Error::Protocol(format!(
                "{} answered {status} with a body that is not JSON: is it a warden server?",
                self.base
            ))
        })?;
        Ok((status, v))
    }

    /// GETs `path` and answers the success envelope's `data`, or the error the failure envelope names.
    async fn get_data(&self, path: &str) -> Result<Value> {
        let (status, mut v) = self.call(reqwest::Method::GET, path, None, self.timeout).await?;
        if status != 200 {
            return Err(self.error(status, &v));
        }
        Ok(v["data"].take())
    }

    /// Maps the failure envelope back to the library's error.
    fn error(&self, status: u16, v: &Value) -> Error {
        let code = v["code"].as_str().unwrap_or_default();
        let msg = v["error"].as_str().unwrap_or_default().to_string();
        match code {
            "invalid_request" => {
                const FIELDS: &[&str] = &[
                    "waitTimeout",
                    "clientId",
                    "lockId",
                    "resource",
                    "maxHold",
                    "ttl",
                    "type",
                    "mode",
                ];
                let field = FIELDS
                    .iter()
                    .find(|f| msg.contains(&format!("`{f}`")))
                    .copied()
                    .unwrap_or("request");
                Error::InvalidArgument { field, reason: msg }
            }
            "not_found" => Error::NotFound {
                lock_id: between_backticks(&msg),
            },
            "not_owner" => Error::NotOwner {
                lock_id: between_backticks(&msg),
                client_id: String::new(),
            },
            "lease_lost" => Error::LeaseLost {
                lock_id: between_backticks(&msg),
                resource: String::new(),
            },
            "too_many_waiters" | "rate_limited" => Error::LimitExceeded { what: msg },
            "backend_unavailable" => Error::BackendUnavailable {
                address: format!("{} (the server's backend)", self.base),
                reason: msg,
            },
            "shutting_down" => Error::ShuttingDown(msg),
            "unauthorized" => Error::Unauthorized {
                address: self.base.clone(),
                reason: msg,
            },
            "forbidden" => Error::Forbidden {
                address: self.base.clone(),
                reason: msg,
            },
            _ => Error::Protocol(format!("{} answered {status} {code}: {msg}", self.base)),
        }
    }

    async fn acquire_call(&self, req: &AcquireRequest, wait: Duration) -> Result<Option<Grant>> {
        let (lock_type, mode) = req.kind.to_wire();
        let mut body = json!({
            "resource": req.resource, "type": lock_type, "ttl": req.ttl.as_millis() as u64,
            "waitTimeout": wait.as_millis() as u64, "clientId": req.client_id,
        });
        if let Some(m) = mode {
            body["mode"] = json!(m);
        }
        if let Some(n) = req.max_renewals {
            body["maxRenewals"] = json!(n);
        }
        if let Some(h) = req.max_hold {
            body["maxHold"] = json!(h.as_millis() as u64);
        }
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/api/locks/acquire",
                Some(body),
                wait + self.timeout,
            )
            .await?;
        match (status, v["code"].as_str()) {
            (201, _) => {
                let info = parse_lock(&v["data"])?;
                let mut g = Grant::new(info.fencing_token, info.acquired_at, info.expires_at);
                g.lock_id = Some(info.lock_id);
                Ok(Some(g))
            }
            (409, Some("lock_timeout")) => Ok(None),
            _ => Err(self.error(status, &v)),
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

fn between_backticks(s: &str) -> String {
    s.split('`').nth(1).unwrap_or_default().to_string()
}

fn parse_time(v: &Value) -> Result<SystemTime> {
    let s = v
        .as_str()
        .ok_or_else(|| Error::Protocol(format!("expected an RFC 3339 time, got {v}")))?;
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| Error::Protocol(format!("bad time `{s}`: {e}")))?;
    Ok(SystemTime::from(t))
}

fn parse_kind(t: &Value, mode: &Value) -> Result<LockKind> {
    LockKind::from_wire(t.as_str(), mode.as_str()).map_err(|e| Error::Protocol(format!("server sent {e}")))
}

fn parse_lock(v: &Value) -> Result<LeaseInfo> {
    let text = |k: &str| {
        v[k].as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Protocol(format!("lease without `{k}`: {v}")))
    };
    let num = |k: &str| {
        v[k].as_u64()
            .ok_or_else(|| Error::Protocol(format!("lease without `{k}`: {v}")))
    };
    let expires_at = parse_time(&v["expiresAt"])?;
    // Another client's lease comes without its lock id (the server withholds it), by its handle only.
    let lock_id = v["lockId"].as_str().unwrap_or_default().to_string();
    let lease_handle = match v["leaseHandle"].as_str() {
        Some(h) => h.to_string(),
        None if !lock_id.is_empty() => crate::lease_handle(&lock_id),
        None => return Err(Error::Protocol(format!("lease without `lockId` or `leaseHandle`: {v}"))),
    };
    Ok(LeaseInfo {
        lock_id,
        lease_handle,
        resource: text("resource")?,
        kind: parse_kind(&v["type"], &v["mode"])?,
        client_id: text("clientId")?,
        acquired_at: parse_time(&v["acquiredAt"])?,
        expires_at,
        ttl: Duration::from_millis(num("ttl")?),
        fencing_token: num("fencingToken")?,
        renewal_count: num("renewalCount")? as u32,
        expired: v["isExpired"].as_bool().unwrap_or(expires_at <= SystemTime::now()),
    })
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
        let client = self.client_for(lock_id, client_id).await?;
        let (status, v) = self
            .call(
                reqwest::Method::POST,
                "/api/locks/release",
                Some(json!({"lockId": lock_id, "clientId": client})),
                self.timeout,
            )
            .await?;
        if status == 200 {
            // The API's release answer carries no hold time.
            Ok(Released::default())
        } else {
            Err(self.error(status, &v))
        }
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let mut body = json!({"lockId": lock_id, "clientId": self.client_for(lock_id, client_id).await?});
        if let Some(t) = ttl {
            crate::validate::ttl(t)?;
            body["ttl"] = json!(t.as_millis() as u64);
        }
        let (status, v) = self
            .call(reqwest::Method::POST, "/api/locks/renew", Some(body), self.timeout)
            .await?;
        match (status, v["code"].as_str()) {
            (200, _) => {
                let lease = parse_lock(&v["data"])?;
                // The server's clock wrote expiresAt; the extension asked for is the safe figure here.
                let granted = ttl.unwrap_or(lease.ttl);
                Ok(Renewal::Renewed { lease, granted })
            }
            (409, Some("renewal_capped")) => {
                let expires_at = match self.lease(lock_id).await? {
                    Some(l) => l.expires_at,
                    None => SystemTime::now(),
                };
                Ok(Renewal::Capped { expires_at })
            }
            _ => Err(self.error(status, &v)),
        }
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        if crate::validate::lock_id(lock_id).is_err() {
            return Ok(None);
        }
        let path = format!("/api/locks/{lock_id}/status");
        let (status, v) = self.call(reqwest::Method::GET, &path, None, self.timeout).await?;
        match status {
            200 => Ok(Some(parse_lock(&v["data"])?)),
            404 => Ok(None),
            _ => Err(self.error(status, &v)),
        }
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        crate::validate::resource(resource)?;
        let url = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("resource", resource)
            .finish();
        let d = &self.get_data(&format!("/api/locks/queue?{url}")).await?;
        let mut info = ResourceInfo::default();
        for h in d["holders"].as_array().into_iter().flatten() {
            info.holders.push(parse_lock(h)?);
        }
        info.foreign_holder = d["foreignHolder"].as_bool().unwrap_or(false);
        for (i, w) in d["queue"].as_array().into_iter().flatten().enumerate() {
            info.queue.push(QueueEntry {
                waiter_id: w["waiterId"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("#{i}")),
                client_id: w["clientId"].as_str().unwrap_or_default().to_string(),
                kind: parse_kind(&w["type"], &w["mode"])?,
                ttl: Duration::from_millis(w["ttl"].as_u64().unwrap_or(0)),
            });
        }
        Ok(info)
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        crate::validate::client_id(client_id)?;
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("clientId", client_id)
            .finish();
        let data = self.get_data(&format!("/api/locks/held?{q}")).await?;
        data.as_array().into_iter().flatten().map(parse_lock).collect()
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        let d = &self.get_data("/api/locks/stats").await?;
        let n = |x: &Value| x.as_u64().unwrap_or(0);
        Ok(Stats {
            total_locks: n(&d["totalLocks"]),
            active_locks: n(&d["activeLocks"]),
            expired_locks: n(&d["expiredLocks"]),
            average_hold_time_ms: n(&d["averageHoldTime"]),
            active_exclusive: n(&d["lockTypes"]["exclusive"]),
            active_shared: n(&d["lockTypes"]["shared"]),
            active_read_write: n(&d["lockTypes"]["read-write"]),
            top_resources: d["topResources"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|t| (t["resource"].as_str().unwrap_or_default().to_string(), n(&t["locks"])))
                .take(top)
                .collect(),
        })
    }

    async fn health(&self) -> Health {
        let started = Instant::now();
        match self
            .call(reqwest::Method::GET, "/api/locks/health", None, self.timeout)
            .await
        {
            Ok((200, v)) => {
                let latency = started.elapsed().as_secs_f64() * 1000.0;
                let d = &v["data"];
                let status = match d["status"].as_str() {
                    Some("healthy") => HealthStatus::Healthy,
                    Some("degraded") => HealthStatus::Degraded,
                    _ => HealthStatus::Unhealthy,
                };
                let mut nodes = vec![NodeHealth::new(self.base.clone(), true, Some(latency), None)];
                for n in d["nodes"].as_array().into_iter().flatten() {
                    nodes.push(NodeHealth::new(
                        n["address"].as_str().unwrap_or_default().to_string(),
                        n["reachable"].as_bool().unwrap_or(false),
                        n["latencyMs"].as_f64(),
                        n["error"].as_str().map(str::to_string),
                    ));
                }
                Health::new("http", status, nodes, d["quorum"].as_bool())
            }
            Ok((status, v)) => Health::new(
                "http",
                HealthStatus::Unhealthy,
                vec![NodeHealth::new(
                    self.base.clone(),
                    true,
                    None,
                    Some(self.error(status, &v).to_string()),
                )],
                None,
            ),
            Err(e) => Health::new(
                "http",
                HealthStatus::Unhealthy,
                vec![NodeHealth::new(self.base.clone(), false, None, Some(e.to_string()))],
                None,
            ),
        }
    }
}
