//! The service over backends under faults: what an operator sees (answers, `/metrics`) when nodes fail.

mod common;

use common::{client, get, post, TestServer};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;
use warden::Warden;
use warden_testkit::harness::RedlockHarness;
use warden_testkit::RedisServer;

/// The body of a GET, as text.
async fn text(c: &reqwest::Client, url: &str) -> String {
    c.get(url).send().await.expect("GET").text().await.expect("body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_never_reached_a_node_is_counted_in_metrics() {
    let h = RedlockHarness::behind_proxies(3);
    let w = Warden::connect(h.url()).await.expect("connect");
    let s = TestServer::start(w).await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "metered", "clientId": "m", "ttl": 600, "waitTimeout": 0}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let lock_id = v["data"]["lockId"].as_str().expect("lockId").to_string();
    // Node 2 stays unreachable for the rest of the lease: its release is retried, then given up and counted.
    h.proxies[2].refuse();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": lock_id, "clientId": "m"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let node = h.proxies[2].addr();
    let line = format!("warden_redlock_release_failures_total{{node=\"{node}\"}} 1");
    let metrics = s.url("/metrics");
    let seen = warden_testkit::eventually(Duration::from_secs(5), || {
        let (c, metrics, line) = (c.clone(), metrics.clone(), line.clone());
        async move { text(&c, &metrics).await.lines().any(|l| l == line) }
    })
    .await;
    assert!(seen, "/metrics never showed `{line}`");
    // Only the unreachable node is counted.
    let text = text(&c, &metrics).await;
    let counted = text
        .lines()
        .filter(|l| l.starts_with("warden_redlock_release_failures_total"))
        .count();
    assert_eq!(counted, 1, "{text}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_a_paused_redis_are_bounded_by_its_timeout() {
    let server = RedisServer::start();
    let w = Warden::connect(&format!("{}?timeout_ms=200", server.url()))
        .await
        .expect("connect");
    let s = TestServer::start(w).await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "held", "clientId": "p", "ttl": 30000}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let lock_id = v["data"]["lockId"].as_str().expect("lockId").to_string();
    server.pause();
    let bound = Duration::from_millis(200 + 100);
    let calls = [
        (
            "acquire",
            "/api/locks/acquire",
            json!({"resource": "r", "clientId": "p", "waitTimeout": 5000}),
        ),
        (
            "try-acquire",
            "/api/locks/acquire",
            json!({"resource": "r", "clientId": "p", "waitTimeout": 0}),
        ),
        ("renew", "/api/locks/renew", json!({"lockId": lock_id, "clientId": "p"})),
        (
            "release",
            "/api/locks/release",
            json!({"lockId": lock_id, "clientId": "p"}),
        ),
    ];
    for (what, path, body) in calls {
        let t = Instant::now();
        let (st, v) = post(&c, &s.url(path), body).await;
        let took = t.elapsed();
        assert_eq!(
            (st, v["code"].as_str()),
            (503, Some("backend_unavailable")),
            "{what}: {v}"
        );
        assert!(
            took <= bound,
            "{what} took {took:?} with Redis paused; the bound is {bound:?}"
        );
    }
    for path in [
        "/api/locks/stats",
        "/api/locks/health",
        "/api/locks/queue?resource=r",
        "/api/locks/held?clientId=p",
    ] {
        let t = Instant::now();
        let (st, v) = get(&c, &s.url(path)).await;
        let took = t.elapsed();
        assert!(
            took <= bound,
            "{path} took {took:?} with Redis paused; the bound is {bound:?} ({st} {v})"
        );
    }
    server.resume();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "r", "clientId": "p", "waitTimeout": 1000}),
    )
    .await;
    assert_eq!(st, 201, "after the node resumed: {v}");
    s.stop().await;
}
