//! An in-process warden server on 127.0.0.1:0 for tests, and small JSON helpers.
#![allow(dead_code)]

use serde_json::Value;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use warden::Warden;
use warden_server::ServerConfig;

pub struct TestServer {
    pub base: String,
    stop: Option<oneshot::Sender<()>>,
    join: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(warden: Warden) -> Self {
        Self::start_with(warden, ServerConfig::default()).await
    }

    pub async fn start_with(warden: Warden, config: ServerConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(warden_server::run(listener, warden, config, async move {
            let _ = rx.await;
        }));
        TestServer {
            base,
            stop: Some(tx),
            join: Some(join),
        }
    }

    /// Begins graceful shutdown and waits until the server has stopped.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(j) = self.join.take() {
            let r = tokio::time::timeout(Duration::from_secs(10), j).await;
            assert!(matches!(r, Ok(Ok(Ok(())))), "server did not stop cleanly: {r:?}");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(64)
        .build()
        .expect("http client")
}

/// POSTs `body` (raw) and returns (status, JSON).
pub async fn post_raw(c: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let r = c
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON answer {status}: {text:?} ({e})"));
    (status, v)
}

pub async fn post(c: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    post_raw(c, url, body.to_string()).await
}

pub async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let r = c.get(url).send().await.expect("send");
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("non-JSON answer {status}: {text:?} ({e})"));
    (status, v)
}

/// Asserts the failure envelope with `code`, and returns its sentence.
pub fn assert_error(status: u16, v: &Value, want_status: u16, want_code: &str) -> String {
    assert_eq!(status, want_status, "answer: {v}");
    assert_eq!(v["success"], Value::Bool(false), "answer: {v}");
    assert_eq!(v["code"], Value::String(want_code.into()), "answer: {v}");
    let msg = v["error"].as_str().expect("error sentence").to_string();
    assert!(!msg.is_empty());
    msg
}

/// Waits until the queue of `resource` has `n` waiters (there is no notification for another client's queueing).
pub async fn wait_queue_len(c: &reqwest::Client, server: &TestServer, resource: &str, n: u64) {
    let url = server.url(&format!("/api/locks/queue?resource={resource}"));
    let ok = warden_testkit::eventually(Duration::from_secs(5), || {
        let url = url.clone();
        async move { get(c, &url).await.1["data"]["waitingClients"].as_u64() == Some(n) }
    })
    .await;
    assert!(ok, "queue of {resource} never reached {n} waiters");
}

/// GET (no body) or POST `body` as JSON, with `key` as the bearer token; answers (status, JSON, or the text as
/// a JSON string when the answer is not JSON, e.g. /metrics).
pub async fn call(c: &reqwest::Client, url: &str, key: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let mut rb = match &body {
        Some(b) => c.post(url).json(b),
        None => c.get(url),
    };
    if let Some(k) = key {
        rb = rb.bearer_auth(k);
    }
    let r = rb.send().await.expect("request");
    let st = r.status().as_u16();
    let text = r.text().await.expect("body");
    (st, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
