//! Lock ids are their owners' secrets: the server's log output, at every level, never shows one, whatever
//! happens to the lease (granted, renewed, refused, handed over, expired, released, unknown).

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

/// Every kind of lease event through the API; returns the lock ids it saw.
async fn exercise(s: &TestServer) -> Vec<String> {
    let c = client();
    let mut ids = Vec::new();
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
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_lock_id_reaches_the_log() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .init();
    let redis = RedisServer::start();
    let mut ids = Vec::new();
    for backend in ["memory://".to_string(), format!("{}?timeout_ms=1000", redis.url())] {
        let s = TestServer::start(Warden::connect(&backend).await.expect("connect")).await;
        ids.extend(exercise(&s).await);
        s.stop().await;
    }
    let text = logs.text();
    // The capture works: the grants were logged.
    assert!(
        text.matches("grant").count() >= 4,
        "the log capture saw nothing:\n{text}"
    );
    for id in &ids {
        assert!(!text.contains(id.as_str()), "lock id {id} appears in the log:\n{text}");
        // Nor any long piece of it.
        assert!(
            !text.contains(&id[id.len() - 16..]),
            "part of lock id {id} appears in the log"
        );
    }
}
