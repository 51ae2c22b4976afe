//! `GET /api/locks/analytics`: what the instance counts for each resource, and how it ranks them.

mod common;

use common::*;
use serde_json::{json, Value};
use std::time::Duration;
use warden::Warden;

async fn take(c: &reqwest::Client, s: &TestServer, resource: &str, client: &str, extra: Value) -> (u16, Value) {
    let mut body = json!({"resource": resource, "clientId": client, "ttl": 30000, "waitTimeout": 0});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    post(c, &s.url("/api/locks/acquire"), body).await
}

async fn release(c: &reqwest::Client, s: &TestServer, lock: &Value) {
    let (st, v) = post(
        c,
        &s.url("/api/locks/release"),
        json!({"lockId": lock["lockId"], "clientId": lock["clientId"]}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
}

async fn top(c: &reqwest::Client, s: &TestServer, query: &str) -> Vec<Value> {
    let (st, v) = get(c, &s.url(&format!("/api/locks/analytics?{query}"))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["scope"], "instance");
    v["data"]["resources"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn counts_grants_waits_timeouts_holds_and_expiries_and_ranks_by_each() {
    let s = TestServer::start(Warden::connect("memory://").await.unwrap()).await;
    let c = client();
    // Hot and never contended: five grants, five holds, no waits.
    for _ in 0..5 {
        let (st, v) = take(&c, &s, "hot", "a", json!({})).await;
        assert_eq!(st, 201, "{v}");
        release(&c, &s, &v["data"]).await;
    }
    // Contended: b waits behind a and is handed the lock; c finds it held and gives up at once.
    let (_, held) = take(&c, &s, "busy", "a", json!({})).await;
    let waiter = {
        let (c, url) = (c.clone(), s.url("/api/locks/acquire"));
        tokio::spawn(async move {
            post(
                &c,
                &url,
                json!({"resource": "busy", "clientId": "b", "ttl": 30000, "waitTimeout": 10000}),
            )
            .await
        })
    };
    wait_queue_len(&c, &s, "busy", 1).await;
    release(&c, &s, &held["data"]).await;
    let (st, granted) = waiter.await.unwrap();
    assert_eq!(st, 201, "{granted}");
    let (st, v) = take(&c, &s, "busy", "c", json!({})).await;
    assert_error(st, &v, 409, "lock_timeout");
    release(&c, &s, &granted["data"]).await;
    // Dies holding it: its lease ends unreleased.
    let (st, v) = take(&c, &s, "dies", "d", json!({"ttl": 100})).await;
    assert_eq!(st, 201, "{v}");

    let expired = warden_testkit::eventually(Duration::from_secs(5), || async {
        top(&c, &s, "by=expiries&top=1")
            .await
            .first()
            .map(|r| r["expiries"].clone())
            == Some(json!(1))
    })
    .await;
    assert!(expired, "the lease that ended unreleased was never counted");

    let by_grants = top(&c, &s, "").await;
    let names: Vec<&str> = by_grants.iter().filter_map(|r| r["resource"].as_str()).collect();
    assert_eq!(names, ["hot", "busy", "dies"], "{by_grants:?}");
    let hot = &by_grants[0];
    assert_eq!(
        (hot["grants"].as_u64(), hot["waited"].as_u64()),
        (Some(5), Some(0)),
        "{hot}"
    );
    assert_eq!(hot["contention"], 0.0);
    assert_eq!(hot["holdMs"]["count"], 5, "{hot}");
    assert!(hot.get("waitMs").is_none(), "nobody waited: {hot}");

    let busy = &top(&c, &s, "by=contention&top=1").await[0];
    assert_eq!(busy["resource"], "busy");
    for (field, want) in [
        ("acquires", 3),
        ("grants", 2),
        ("waited", 2),
        ("timeouts", 1),
        ("expiries", 0),
    ] {
        assert_eq!(busy[field], want, "{field}: {busy}");
    }
    assert_eq!(busy["contention"], 0.6667);
    assert_eq!(busy["waitMs"]["count"], 1, "{busy}");
    assert_eq!(busy["holdMs"]["count"], 2, "{busy}");
    let wait = &busy["waitMs"];
    assert!(
        wait["max"].as_f64() >= wait["p50"].as_f64() && wait["p50"].as_f64() > Some(0.0),
        "{wait}"
    );

    let dies = &top(&c, &s, "by=expiries&top=1").await[0];
    assert_eq!(
        (dies["resource"].as_str(), dies["expiries"].as_u64()),
        (Some("dies"), Some(1))
    );
    let held_ms = dies["holdMs"]["max"].as_f64().unwrap_or_default();
    assert!(
        (99.0..=101.0).contains(&held_ms),
        "an expired lease was held its ttl, not {held_ms} ms"
    );
}

#[tokio::test]
async fn bad_queries_name_their_field() {
    let s = TestServer::start(Warden::connect("memory://").await.unwrap()).await;
    let c = client();
    for (query, field) in [("top=0", "top"), ("top=1001", "top"), ("by=latency", "by")] {
        let (st, v) = get(&c, &s.url(&format!("/api/locks/analytics?{query}"))).await;
        assert_error(st, &v, 400, "invalid_request");
        assert_eq!(v["field"], field, "{query}: {v}");
    }
    let (st, v) = get(&c, &s.url("/api/locks/analytics?top=many")).await;
    assert_error(st, &v, 400, "invalid_request");
    assert_eq!(top(&c, &s, "top=3").await, Vec::<Value>::new());
}
