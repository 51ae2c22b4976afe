//! The HTTP driver: 50 keep-alive connections (hyper's HTTP/1.1 client) doing acquire + release against an
//! in-process warden server, and, in the same run, the same driver against a trivial handler on the same stack
//! (axum over hyper) as the ceiling. Also the memory-per-lease measurement of the memory backend.

use crate::histogram;
use rand::Rng;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Figures of one HTTP run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HttpReport {
    /// What was driven: `warden` or `trivial`.
    pub target: &'static str,
    /// Backend URL of the server (empty for the trivial handler).
    pub backend: String,
    /// Concurrent clients.
    pub workers: usize,
    /// acquire+release cycles (two requests) per second.
    pub cycles_per_s: f64,
    /// Acquire request latency p50, µs.
    pub acq_p50_us: u64,
    /// p99, µs.
    pub acq_p99_us: u64,
    /// max, µs.
    pub acq_max_us: u64,
    /// Failed cycles.
    pub failed: u64,
}

async fn spawn_server(app: axum::Router) -> anyhow::Result<(String, tokio::sync::oneshot::Sender<()>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        use axum::serve::ListenerExt;
        let l = listener.tap_io(|t| {
            let _ = t.set_nodelay(true);
        });
        let _ = axum::serve(l, app)
            .with_graceful_shutdown(async move {
                let _ = rx.await;
            })
            .await;
    });
    Ok((base, tx))
}

fn trivial_router() -> axum::Router {
    use axum::routing::post;
    // Answers like acquire/release do (a small JSON envelope) without touching any lock state.
    axum::Router::new()
        .route(
            "/api/locks/acquire",
            post(|body: axum::body::Bytes| async move {
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                (
                    axum::http::StatusCode::CREATED,
                    axum::Json(
                        json!({"success": true, "data": {"lockId": "0123456789abcdef0123456789abcdef",
                        "resource": v["resource"], "clientId": v["clientId"], "fencingToken": 1}}),
                    ),
                )
            }),
        )
        .route(
            "/api/locks/release",
            post(|_body: axum::body::Bytes| async move {
                axum::Json(json!({"success": true, "message": "Lock released successfully"}))
            }),
        )
}

/// One keep-alive HTTP/1.1 connection (hyper's client connection: no pool, no extra tasks per request).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<hyper::body::Bytes>>,
    host: String,
}

impl Conn {
    async fn open(base: &str) -> anyhow::Result<Self> {
        let host = base.trim_start_matches("http://").to_string();
        let stream = tokio::net::TcpStream::connect(&host).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender, host })
    }

    async fn post(&mut self, path: &str, body: String) -> anyhow::Result<(u16, hyper::body::Bytes)> {
        use http_body_util::BodyExt;
        self.sender.ready().await?;
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(http_body_util::Full::new(hyper::body::Bytes::from(body)))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await?.to_bytes();
        Ok((status, bytes))
    }
}

async fn drive(
    base: &str,
    target: &'static str,
    backend: &str,
    workers: usize,
    keys: usize,
    duration: Duration,
) -> anyhow::Result<HttpReport> {
    let stop = Arc::new(AtomicBool::new(false));
    let cycles = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let hist = Arc::new(Mutex::new(histogram()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let mut conn = Conn::open(base).await?;
        let (stop, cycles, failed, hist) = (stop.clone(), cycles.clone(), failed.clone(), hist.clone());
        tasks.push(tokio::spawn(async move {
            let mut local = histogram();
            let client_id = format!("bench-{w}");
            while !stop.load(Ordering::Relaxed) {
                let key = rand::rng().random_range(0..keys);
                let body = json!({"resource": format!("k{key}"), "clientId": client_id, "ttl": 10000,
                    "waitTimeout": 0})
                .to_string();
                let t0 = Instant::now();
                let ok = match conn.post("/api/locks/acquire", body).await {
                    Ok((201, bytes)) => {
                        let _ = local.record(t0.elapsed().as_micros().max(1) as u64);
                        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                        let id = v["data"]["lockId"].as_str().unwrap_or_default();
                        let rel = json!({"lockId": id, "clientId": client_id}).to_string();
                        matches!(conn.post("/api/locks/release", rel).await, Ok((200, _)))
                    }
                    // 409 on a key another worker holds right now: a contended try, not a failure.
                    Ok((409, _)) => continue,
                    _ => false,
                };
                if ok {
                    cycles.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if conn.sender.is_closed() {
                        break;
                    }
                }
            }
            if let Ok(mut h) = hist.lock() {
                let _ = h.add(&local);
            }
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let h = hist.lock().map_err(|_| anyhow::anyhow!("histogram poisoned"))?;
    Ok(HttpReport {
        target,
        backend: backend.to_string(),
        workers,
        cycles_per_s: cycles.load(Ordering::Relaxed) as f64 / elapsed,
        acq_p50_us: h.value_at_quantile(0.5),
        acq_p99_us: h.value_at_quantile(0.99),
        acq_max_us: h.max(),
        failed: failed.load(Ordering::Relaxed),
    })
}

/// Runs the HTTP driver against a warden server over `backend` and against the trivial handler.
pub async fn run_http(
    backend: &str,
    workers: usize,
    keys: usize,
    duration: Duration,
) -> anyhow::Result<(HttpReport, HttpReport)> {
    let warden = warden::Warden::connect(backend).await?;
    let state = warden_server::AppState::new(warden, warden_server::ServerConfig::default());
    let (base, stop_server) = spawn_server(warden_server::router(state)).await?;
    let (tbase, stop_trivial) = spawn_server(trivial_router()).await?;
    // Warm both up, then measure.
    drive(&base, "warden", backend, workers, keys, Duration::from_millis(500)).await?;
    let real = drive(&base, "warden", backend, workers, keys, duration).await?;
    drive(&tbase, "trivial", "", workers, keys, Duration::from_millis(500)).await?;
    let trivial = drive(&tbase, "trivial", "", workers, keys, duration).await?;
    let _ = stop_server.send(());
    let _ = stop_trivial.send(());
    Ok((real, trivial))
}

fn rss_bytes() -> anyhow::Result<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("unexpected /proc/self/statm"))?
        .parse()?;
    Ok(pages * 4096)
}

/// Holds `n` leases at once in the memory backend (resources `lock:{i}`, client `worker-{i % 100}`) and
/// returns the resident memory they added, in bytes per lease.
pub async fn memory_per_lock(n: usize) -> anyhow::Result<f64> {
    let backend = std::sync::Arc::new(warden::backend::memory::MemoryBackend::new());
    let warden = warden::Warden::with_backend(backend.clone());
    let before = rss_bytes()?;
    for i in 0..n {
        warden
            .lock(format!("lock:{i}"))
            .ttl(Duration::from_secs(3600))
            .client_id(format!("worker-{}", i % 100))
            .acquire_lease()
            .await?;
    }
    let after = rss_bytes()?;
    anyhow::ensure!(
        backend.lease_count() == n,
        "expected {n} leases, store has {}",
        backend.lease_count()
    );
    Ok((after.saturating_sub(before)) as f64 / n as f64)
}
