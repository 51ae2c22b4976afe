//! Two server instances over one Redis behave as one service.

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use warden::Warden;
use warden_testkit::RedisServer;

async fn pair(redis: &RedisServer) -> (TestServer, TestServer) {
    let url = format!("{}?timeout_ms=1000", redis.url());
    let a = TestServer::start(Warden::connect(&url).await.unwrap()).await;
    let b = TestServer::start(Warden::connect(&url).await.unwrap()).await;
    (a, b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_on_a_grants_waiter_on_b_within_milliseconds() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis).await;
    let c = client();
    let mut worst = Duration::ZERO;
    for round in 0..5 {
        let res = format!("x{round}");
        let (st, held) = post(
            &c,
            &a.url("/api/locks/acquire"),
            json!({"resource": res, "clientId": "on-a"}),
        )
        .await;
        assert_eq!(st, 201, "{held}");
        let (c2, url, res2) = (c.clone(), b.url("/api/locks/acquire"), res.clone());
        let waiter = tokio::spawn(async move {
            let r = post(
                &c2,
                &url,
                json!({"resource": res2, "clientId": "on-b", "waitTimeout": 10000}),
            )
            .await;
            (Instant::now(), r)
        });
        wait_queue_len(&c, &a, &res, 1).await;
        let released_at = Instant::now();
        let (st, _) = post(
            &c,
            &a.url("/api/locks/release"),
            json!({"lockId": held["data"]["lockId"],
            "clientId": "on-a"}),
        )
        .await;
        assert_eq!(st, 200);
        let (granted_at, (st, v)) = waiter.await.unwrap();
        assert_eq!(st, 201, "{v}");
        assert!(v["data"]["fencingToken"].as_u64() > held["data"]["fencingToken"].as_u64());
        worst = worst.max(granted_at - released_at);
    }
    // From sending the release on A to B's answer arriving: two HTTP exchanges, a publish and a script.
    assert!(
        worst < Duration::from_millis(100),
        "cross-instance handoff took {worst:?}"
    );
    eprintln!("worst cross-instance handoff (release sent -> grant received): {worst:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_across_instances_and_one_view_of_state() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis).await;
    let c = client();
    let (st, first) = post(
        &c,
        &a.url("/api/locks/acquire"),
        json!({"resource": "shared-q", "clientId": "h"}),
    )
    .await;
    assert_eq!(st, 201);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..10u64 {
        let server = if i % 2 == 0 { &a } else { &b };
        let (c2, url, tx) = (c.clone(), server.url("/api/locks/acquire"), tx.clone());
        tokio::spawn(async move {
            let (st, v) = post(
                &c2,
                &url,
                json!({"resource": "shared-q", "clientId": format!("w{i}"),
                "waitTimeout": 20000}),
            )
            .await;
            assert_eq!(st, 201, "{v}");
            let _ = tx.send(v["data"].clone());
        });
        wait_queue_len(&c, &a, "shared-q", i + 1).await;
    }
    // Every instance answers the same.
    for path in [
        "/api/locks/queue?resource=shared-q",
        "/api/locks/held?clientId=h",
        "/api/locks/stats",
    ] {
        let (_, va) = get(&c, &a.url(path)).await;
        let (_, vb) = get(&c, &b.url(path)).await;
        assert_eq!(va, vb, "{path} differs between instances");
    }
    let id = first["data"]["lockId"].as_str().unwrap();
    let (_, sa) = get(&c, &a.url(&format!("/api/locks/{id}/status"))).await;
    let (_, sb) = get(&c, &b.url(&format!("/api/locks/{id}/status"))).await;
    assert_eq!(sa, sb);

    let mut current = first["data"].clone();
    let mut order = Vec::new();
    for i in 0..10 {
        // Release alternately through either instance.
        let via = if i % 2 == 0 { &b } else { &a };
        let (st, v) = post(
            &c,
            &via.url("/api/locks/release"),
            json!({"lockId": current["lockId"],
            "clientId": current["clientId"]}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        current = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        order.push(current["clientId"].as_str().unwrap().to_string());
    }
    assert_eq!(order, (0..10).map(|i| format!("w{i}")).collect::<Vec<_>>());

    // Each instance adds its counts to the shared statistics at least once a second: both agree within that.
    let settled = warden_testkit::eventually(Duration::from_secs(3), || async {
        let (_, va) = get(&c, &a.url("/api/locks/stats")).await;
        let (_, vb) = get(&c, &b.url("/api/locks/stats")).await;
        va == vb && va["data"]["totalLocks"] == 11 && va["data"]["activeLocks"] == 1
    })
    .await;
    assert!(
        settled,
        "statistics did not settle on 11 grants, 1 active, the same on both instances"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_on_one_instance_frees_the_queue_for_the_other() {
    let redis = RedisServer::start();
    let (a, b) = pair(&redis).await;
    let c = client();
    let (_, held) = post(
        &c,
        &a.url("/api/locks/acquire"),
        json!({"resource": "dq", "clientId": "h"}),
    )
    .await;
    let (c2, url) = (client(), b.url("/api/locks/acquire"));
    let ghost = tokio::spawn(async move {
        post(
            &c2,
            &url,
            json!({"resource": "dq", "clientId": "ghost", "waitTimeout": 60000}),
        )
        .await
    });
    wait_queue_len(&c, &a, "dq", 1).await;
    let (c3, url) = (c.clone(), a.url("/api/locks/acquire"));
    let next = tokio::spawn(async move {
        post(
            &c3,
            &url,
            json!({"resource": "dq", "clientId": "next", "waitTimeout": 10000}),
        )
        .await
    });
    wait_queue_len(&c, &a, "dq", 2).await;
    ghost.abort();
    wait_queue_len(&c, &a, "dq", 1).await;
    let released_at = Instant::now();
    post(
        &c,
        &b.url("/api/locks/release"),
        json!({"lockId": held["data"]["lockId"], "clientId": "h"}),
    )
    .await;
    let (st, v) = next.await.unwrap();
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["clientId"], "next");
    assert!(
        released_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        released_at.elapsed()
    );
}
