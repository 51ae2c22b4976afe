//! Lock ids are their owners' secrets: the server's log output, at every level, and every view anyone else can
//! read (held, queue, stats, health, metrics) never show one, whatever happens to the lease (granted, renewed,
//! refused, handed over, expired, released, unknown).

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::Warden;
use warden_testkit::RedisServer;

/// Everything the process logs, at TRACE.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// The body of every view that is not its owner's own answer, read while leases are live.
async fn views(c: &reqwest::Client, s: &TestServer, seen: &mut Vec<String>) {
    for path in [
        "/api/locks/held?clientId=a",
        "/api/locks/held?clientId=b",
        "/api/locks/queue?resource=secret",
        "/api/locks/stats",
        "/api/locks/health",
        "/health",
        "/metrics",
    ] {
        let r = c.get(s.url(path)).send().await.expect("view answers");
        assert_eq!(r.status(), 200, "{path}");
        seen.push(format!("{path}: {}", r.text().await.expect("view body")));
    }
}

/// Every kind of lease event through the API; returns the lock ids it saw and the views it read.
async fn exercise(s: &TestServer) -> (Vec<String>, Vec<String>) {
    let c = client();
    let mut ids = Vec::new();
    let mut seen = Vec::new();
    let acquire = s.url("/api/locks/acquire");
    let (st, v) = post(
        &c,
        &acquire,
        json!({"resource": "secret", "clientId": "a", "ttl": 5000}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let a = v["data"]["lockId"].as_str().expect("lockId").to_string();
    ids.push(a.clone());
    // A waiter that is handed the lock on release.
    let (c2, acq2) = (c.clone(), acquire.clone());
    let waiter = tokio::spawn(async move {
        post(
            &c2,
            &acq2,
            json!({"resource": "secret", "clientId": "b", "ttl": 200, "waitTimeout": 5000}),
        )
        .await
    });
    wait_queue_len(&c, s, "secret", 1).await;
    views(&c, s, &mut seen).await;
    let (st, v) = post(&c, &s.url("/api/locks/renew"), json!({"lockId": a, "clientId": "a"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = get(&c, &s.url(&format!("/api/locks/{a}/status"))).await;
    assert_eq!(st, 200);
    let (st, _) = get(&c, &s.url("/api/locks/held?clientId=a")).await;
    assert_eq!(st, 200);
    let (st, _) = get(&c, &s.url("/api/locks/queue?resource=secret")).await;
    assert_eq!(st, 200);
    // Refusals that quote the id back to the caller.
    let (st, _) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": a, "clientId": "stranger"}),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = post(&c, &s.url("/api/locks/release"), json!({"lockId": a, "clientId": "a"})).await;
    assert_eq!(st, 200);
    let (st, _) = post(&c, &s.url("/api/locks/renew"), json!({"lockId": a, "clientId": "a"})).await;
    assert_eq!(st, 404);
    let (st, v) = waiter.await.expect("waiter");
    assert_eq!(st, 201, "{v}");
    let b = v["data"]["lockId"].as_str().expect("lockId").to_string();
    ids.push(b.clone());
    views(&c, s, &mut seen).await;
    // b's lease runs out unreleased; renewing it afterwards is refused.
    let status = s.url(&format!("/api/locks/{b}/status"));
    let ended = warden_testkit::eventually(Duration::from_secs(3), || async {
        let (st, v) = get(&c, &status).await;
        st == 404 || v["data"]["isExpired"] == json!(true)
    })
    .await;
    assert!(ended, "the 200 ms lease did not run out");
    let (st, _) = post(&c, &s.url("/api/locks/renew"), json!({"lockId": b, "clientId": "b"})).await;
    assert!(st == 404 || st == 409, "{st}");
    let (st, _) = get(&c, &s.url("/api/locks/stats")).await;
    assert_eq!(st, 200);
    (ids, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lock_id_reaches_a_log_or_a_stranger() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let redis = RedisServer::start();
    let (mut ids, mut seen) = (Vec::new(), Vec::new());
    for backend in ["memory://".to_string(), format!("{}?timeout_ms=1000", redis.url())] {
        let s = TestServer::start(Warden::connect(&backend).await.expect("connect")).await;
        let (i, v) = exercise(&s).await;
        ids.extend(i);
        seen.extend(v);
        s.stop().await;
    }
    let text = logs.text();
    // The capture works: the grants were logged.
    assert!(
        text.matches("grant").count() >= 4,
        "the log capture saw nothing:\n{text}"
    );
    // The views name the leases, by handle.
    let held_view = seen
        .iter()
        .find(|v| v.starts_with("/api/locks/held?clientId=a"))
        .expect("held view");
    assert!(held_view.contains(&warden::lease_handle(&ids[0])), "{held_view}");
    for id in &ids {
        for view in &seen {
            assert!(
                !view.contains(&id[id.len() - 16..]),
                "lock id {id} appears in a view: {view}"
            );
        }
        assert!(!text.contains(id.as_str()), "lock id {id} appears in the log:\n{text}");
        // Nor any long piece of it.
        assert!(
            !text.contains(&id[id.len() - 16..]),
            "part of lock id {id} appears in the log"
        );
    }
}
