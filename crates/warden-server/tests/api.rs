//! Every endpoint and every error code of docs/API.md against an in-process server on the memory backend.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::backend::memory::MemoryBackend;
use warden::Warden;
use warden_server::ServerConfig;

async fn memory_server() -> (TestServer, Arc<MemoryBackend>) {
    let backend = Arc::new(MemoryBackend::new());
    (TestServer::start(Warden::with_backend(backend.clone())).await, backend)
}

async fn acquire(c: &reqwest::Client, s: &TestServer, resource: &str, client: &str) -> Value {
    let (st, v) = post(
        c,
        &s.url("/api/locks/acquire"),
        json!({"resource": resource, "clientId": client, "ttl": 30000, "waitTimeout": 0}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    v["data"].clone()
}

#[tokio::test]
async fn lifecycle_acquire_status_held_renew_release() {
    let (s, _) = memory_server().await;
    let c = client();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "user_123_profile", "type": "exclusive", "ttl": 30000, "waitTimeout": 5000,
               "clientId": "client_456"}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["success"], true);
    let lock = &v["data"];
    let id = lock["lockId"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "128-bit hex lock id");
    assert_eq!(lock["resource"], "user_123_profile");
    assert_eq!(lock["type"], "exclusive");
    assert_eq!(lock["clientId"], "client_456");
    assert_eq!(lock["ttl"], 30000);
    assert_eq!(lock["renewalCount"], 0);
    assert!(lock["fencingToken"].as_u64().unwrap() > 0);
    let acquired = time::OffsetDateTime::parse(
        lock["acquiredAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        lock["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - acquired).whole_milliseconds(), 30000);
    assert!(lock["acquiredAt"].as_str().unwrap().ends_with('Z'));

    let (st, v) = get(&c, &s.url(&format!("/api/locks/{id}/status"))).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["lockId"], id.as_str());
    assert_eq!(v["data"]["isExpired"], false);
    assert_eq!(v["data"]["fencingToken"], lock["fencingToken"]);

    let (st, v) = get(&c, &s.url("/api/locks/held?clientId=client_456")).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    // Whoever asks by client id sees the lease by its handle, never its lock id.
    assert_eq!(v["data"][0]["leaseHandle"], warden::lease_handle(&id).as_str());
    assert_eq!(v["data"][0].get("lockId"), None, "held shows the lock id: {v}");
    assert_eq!(lock["leaseHandle"], warden::lease_handle(&id).as_str());
    let (_, v) = get(&c, &s.url("/api/locks/held?clientId=nobody")).await;
    assert_eq!(v["data"], json!([]));

    let (st, v) = post(
        &c,
        &s.url("/api/locks/renew"),
        json!({"lockId": id, "clientId": "client_456", "ttl": 60000}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["renewalCount"], 1);
    assert_eq!(
        v["data"]["fencingToken"], lock["fencingToken"],
        "renewal keeps the fence"
    );
    let (st, v) = post(
        &c,
        &s.url("/api/locks/renew"),
        json!({"lockId": id, "clientId": "client_456"}),
    )
    .await;
    assert_eq!(st, 200, "renew without ttl uses the lease's: {v}");
    assert_eq!(v["data"]["renewalCount"], 2);

    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": id, "clientId": "client_456"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"success": true, "message": "Lock released successfully"}));

    let (st, v) = get(&c, &s.url(&format!("/api/locks/{id}/status"))).await;
    assert_error(st, &v, 404, "not_found");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": id, "clientId": "client_456"}),
    )
    .await;
    assert_error(st, &v, 404, "not_found");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/renew"),
        json!({"lockId": id, "clientId": "client_456"}),
    )
    .await;
    assert_error(st, &v, 404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn invalid_requests_name_the_field() {
    let (s, _) = memory_server().await;
    let c = client();
    let acq = s.url("/api/locks/acquire");
    let cases: Vec<(String, &str)> = vec![
        ("{".into(), "JSON"),
        ("[1,2]".into(), "object"),
        ("".into(), "empty"),
        (r#"{"clientId":"c"}"#.into(), "resource"),
        (r#"{"resource":"r"}"#.into(), "clientId"),
        (r#"{"resource":"r","clientId":"c","ttl":"30s"}"#.into(), "ttl"),
        (r#"{"resource":"r","clientId":"c","ttl":0}"#.into(), "ttl"),
        (r#"{"resource":"r","clientId":"c","ttl":86400001}"#.into(), "ttl"),
        (r#"{"resource":"r","clientId":"c","ttl":-1}"#.into(), "ttl"),
        (r#"{"resource":"r","clientId":"c","ttl":1.5}"#.into(), "ttl"),
        (
            r#"{"resource":"r","clientId":"c","waitTimeout":600001}"#.into(),
            "waitTimeout",
        ),
        (
            r#"{"resource":"r","clientId":"c","waitTimeout":-5}"#.into(),
            "waitTimeout",
        ),
        (r#"{"resource":"","clientId":"c"}"#.into(), "resource"),
        (
            format!(r#"{{"resource":"{}","clientId":"c"}}"#, "x".repeat(513)),
            "resource",
        ),
        (r#"{"resource":"a\u0001b","clientId":"c"}"#.into(), "resource"),
        (r#"{"resource":"r","clientId":""}"#.into(), "clientId"),
        (
            format!(r#"{{"resource":"r","clientId":"{}"}}"#, "c".repeat(257)),
            "clientId",
        ),
        (r#"{"resource":"r","clientId":"c","type":"bogus"}"#.into(), "type"),
        (r#"{"resource":"r","clientId":"c","type":"read-write"}"#.into(), "mode"),
        (
            r#"{"resource":"r","clientId":"c","type":"read-write","mode":"x"}"#.into(),
            "mode",
        ),
        (r#"{"resource":"\ud800","clientId":"c"}"#.into(), "JSON"),
        (r#"{"resource":"r","clientId":"c"} trailing"#.into(), "trailing"),
    ];
    let mut as_data = 0;
    for (body, field) in cases {
        let (st, v) = post_raw(&c, &acq, body.clone()).await;
        let msg = assert_error(st, &v, 400, "invalid_request");
        assert!(
            msg.contains(field),
            "body {body:?}: sentence {msg:?} should name {field}"
        );
        // The field is also data, for clients that act on it (all but syntax errors and missing fields).
        if let Some(f) = v.get("field") {
            assert_eq!(f, field, "body {body:?}");
            as_data += 1;
        }
    }
    assert!(as_data >= 15, "only {as_data} answers named their field as data");
    // Non-UTF-8 bytes inside a JSON string.
    let mut raw = br#"{"resource":"ab"#.to_vec();
    raw.extend_from_slice(&[0xff, 0xfe]);
    raw.extend_from_slice(br#"","clientId":"c"}"#);
    let (st, v) = post_raw(&c, &acq, raw).await;
    assert_error(st, &v, 400, "invalid_request");

    // Oversized body.
    let big = format!(r#"{{"resource":"r","clientId":"c","pad":"{}"}}"#, "x".repeat(100_000));
    let (st, v) = post_raw(&c, &acq, big).await;
    let msg = assert_error(st, &v, 413, "invalid_request");
    assert!(msg.contains("bytes"), "{msg}");

    // Release / renew / status / held / queue inputs.
    let (st, v) = post(&c, &s.url("/api/locks/release"), json!({"clientId": "c"})).await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("lockId"));
    let (st, v) = post(&c, &s.url("/api/locks/release"), json!({"lockId": "", "clientId": "c"})).await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("lockId"));
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": "does-not-exist", "clientId": "c"}),
    )
    .await;
    assert_error(st, &v, 404, "not_found");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/renew"),
        json!({"lockId": "0123456789abcdef0123456789abcdef",
        "clientId": "c", "ttl": 5}),
    )
    .await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("ttl"));
    let (st, v) = get(&c, &s.url("/api/locks/0123456789abcdef0123456789abcdef/status")).await;
    assert_error(st, &v, 404, "not_found");
    let (st, v) = get(&c, &s.url("/api/locks/%FF%FE/status")).await;
    assert_error(st, &v, 400, "invalid_request");
    let (st, v) = get(&c, &s.url("/api/locks/held")).await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("clientId"));
    let (st, v) = get(&c, &s.url("/api/locks/queue")).await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("resource"));
    let (st, v) = get(&c, &s.url(&format!("/api/locks/queue?resource={}", "r".repeat(600)))).await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("resource"));
    let (st, v) = get(&c, &s.url("/api/nope")).await;
    assert_error(st, &v, 404, "not_found");
    let (st, v) = get(&c, &s.url("/api/locks/acquire")).await;
    assert_error(st, &v, 405, "invalid_request");
    s.stop().await;
}

#[tokio::test]
async fn conflicts_timeout_not_owner_and_lease_lost() {
    let (s, backend) = memory_server().await;
    let c = client();
    let held = acquire(&c, &s, "r1", "owner").await;
    let id = held["lockId"].as_str().unwrap();

    let started = Instant::now();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "r1", "clientId": "other", "waitTimeout": 200}),
    )
    .await;
    let waited = started.elapsed();
    assert!(assert_error(st, &v, 409, "lock_timeout").contains("r1"));
    assert!(
        waited >= Duration::from_millis(200) && waited < Duration::from_millis(1000),
        "{waited:?}"
    );

    // Another client may neither release nor renew; nothing changes.
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": id, "clientId": "other"}),
    )
    .await;
    assert_error(st, &v, 409, "not_owner");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/renew"),
        json!({"lockId": id, "clientId": "other", "ttl": 1000}),
    )
    .await;
    assert_error(st, &v, 409, "not_owner");
    let (st, v) = get(&c, &s.url(&format!("/api/locks/{id}/status"))).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["renewalCount"], 0);
    assert_eq!(v["data"]["ttl"], 30000);

    // The lease taken away behind the owner's back: renew says lease_lost.
    backend.revoke("r1");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/renew"),
        json!({"lockId": id, "clientId": "owner"}),
    )
    .await;
    assert_error(st, &v, 409, "lease_lost");
    s.stop().await;
}

#[tokio::test]
async fn type_shortcuts_and_compatibility() {
    let (s, _) = memory_server().await;
    let c = client();
    let body = |client: &str| json!({"resource": "doc", "clientId": client, "waitTimeout": 0});
    let (st, a) = post(&c, &s.url("/api/locks/shared"), body("a")).await;
    assert_eq!(st, 201, "{a}");
    assert_eq!(a["data"]["type"], "shared");
    let (st, b) = post(&c, &s.url("/api/locks/shared"), body("b")).await;
    assert_eq!(st, 201, "shared holders coexist: {b}");
    assert!(b["data"]["fencingToken"].as_u64() > a["data"]["fencingToken"].as_u64());
    let (st, v) = post(&c, &s.url("/api/locks/exclusive"), body("c")).await;
    assert_error(st, &v, 409, "lock_timeout");
    for v in [&a, &b] {
        let id = v["data"]["lockId"].as_str().unwrap();
        let client = v["data"]["clientId"].as_str().unwrap();
        let (st, _) = post(
            &c,
            &s.url("/api/locks/release"),
            json!({"lockId": id, "clientId": client}),
        )
        .await;
        assert_eq!(st, 200);
    }
    // A body that contradicts the endpoint is refused, never silently overridden; one that agrees is fine.
    let (st, e) = post(
        &c,
        &s.url("/api/locks/exclusive"),
        json!({"resource": "doc", "clientId": "c",
        "type": "shared", "waitTimeout": 0}),
    )
    .await;
    assert!(assert_error(st, &e, 400, "invalid_request").contains("/api/locks/acquire"));
    assert_eq!(e["field"], "type");
    let (st, e) = post(
        &c,
        &s.url("/api/locks/exclusive"),
        json!({"resource": "doc", "clientId": "c",
        "type": "exclusive", "waitTimeout": 0}),
    )
    .await;
    assert_eq!(st, 201, "{e}");
    assert_eq!(e["data"]["type"], "exclusive");

    let rw = |client: &str, mode: &str| json!({"resource": "rw", "clientId": client, "mode": mode, "waitTimeout": 0});
    let (st, r1) = post(&c, &s.url("/api/locks/read-write"), rw("r1", "read")).await;
    assert_eq!(st, 201, "{r1}");
    assert_eq!(r1["data"]["type"], "read-write");
    assert_eq!(r1["data"]["mode"], "read");
    let (st, _) = post(&c, &s.url("/api/locks/read-write"), rw("r2", "read")).await;
    assert_eq!(st, 201, "readers coexist");
    let (st, v) = post(&c, &s.url("/api/locks/read-write"), rw("w", "write")).await;
    assert_error(st, &v, 409, "lock_timeout");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/read-write"),
        json!({"resource": "rw", "clientId": "x"}),
    )
    .await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("mode"));
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "rw", "clientId": "w",
        "type": "read-write", "mode": "read", "waitTimeout": 0}),
    )
    .await;
    assert_eq!(st, 201, "{v}");

    let (_, stats) = get(&c, &s.url("/api/locks/stats")).await;
    let d = &stats["data"];
    assert_eq!(d["totalLocks"], 6, "{d}");
    assert_eq!(d["activeLocks"], 4, "{d}");
    assert_eq!(d["lockTypes"], json!({"exclusive": 1, "shared": 0, "read-write": 3}));
    assert_eq!(d["topResources"][0], json!({"resource": "doc", "locks": 3}));
    assert_eq!(d["expiredLocks"], 0);
    s.stop().await;
}

#[tokio::test]
async fn semaphores_take_permits_and_refuse_what_does_not_match() {
    let (s, _) = memory_server().await;
    let c = client();
    let (_, h) = get(&c, &s.url("/api/locks/health")).await;
    assert_eq!(h["data"]["capabilities"]["semaphores"], true, "{h}");
    let sem = |client: &str, permits: Value| json!({"resource": "encoder", "type": "semaphore", "permits": permits, "clientId": client, "waitTimeout": 0});
    let mut fences = Vec::new();
    for who in ["a", "b"] {
        let (st, v) = post(&c, &s.url("/api/locks/acquire"), sem(who, json!(2))).await;
        assert_eq!(st, 201, "{v}");
        assert_eq!(v["data"]["type"], "semaphore");
        fences.push(v["data"]["fencingToken"].as_u64().unwrap());
    }
    assert!(fences[1] > fences[0]);
    let (st, v) = post(&c, &s.url("/api/locks/acquire"), sem("c", json!(2))).await;
    assert_error(st, &v, 409, "lock_timeout");
    let (st, v) = post(&c, &s.url("/api/locks/acquire"), sem("c", json!(3))).await;
    let msg = assert_error(st, &v, 409, "conflict");
    assert!(
        msg.contains("semaphore with 2 permits") && msg.contains("permits = 2"),
        "{msg}"
    );
    let (st, v) = post(
        &c,
        &s.url("/api/locks/exclusive"),
        json!({"resource": "encoder", "clientId": "c", "waitTimeout": 0}),
    )
    .await;
    assert!(
        assert_error(st, &v, 409, "conflict").contains("in use as a semaphore"),
        "{v}"
    );
    for (body, why) in [
        (
            json!({"resource": "encoder", "type": "semaphore", "clientId": "c"}),
            "is required",
        ),
        (sem("c", json!(0)), "1..=1000"),
        (sem("c", json!(1001)), "1..=1000"),
        (
            json!({"resource": "encoder", "permits": 2, "clientId": "c"}),
            "only for type semaphore",
        ),
    ] {
        let (st, v) = post(&c, &s.url("/api/locks/acquire"), body).await;
        assert!(assert_error(st, &v, 400, "invalid_request").contains(why), "{v}");
        assert_eq!(v["field"], "permits", "{v}");
    }
    let (_, q) = get(&c, &s.url("/api/locks/queue?resource=encoder")).await;
    assert_eq!(q["data"]["holders"].as_array().map(Vec::len), Some(2), "{q}");
    s.stop().await;
}

#[tokio::test]
async fn conditional_acquires_answer_412_and_name_bad_fields() {
    let (s, _) = memory_server().await;
    let c = client();
    let (_, h) = get(&c, &s.url("/api/locks/health")).await;
    assert_eq!(h["data"]["capabilities"]["conditions"], true, "{h}");
    let url = s.url("/api/locks/acquire");
    let (st, v) = post(
        &c,
        &url,
        json!({"resource": "job", "clientId": "a", "ifNotGrantedWithin": 60000}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let token = v["data"]["fencingToken"].as_u64().unwrap();
    let lock_id = v["data"]["lockId"].as_str().unwrap().to_string();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": lock_id, "clientId": "a"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &c,
        &url,
        json!({"resource": "job", "clientId": "b", "ifNotGrantedWithin": 60000}),
    )
    .await;
    assert!(assert_error(st, &v, 412, "condition_failed").contains("granted"), "{v}");
    let (st, v) = post(
        &c,
        &url,
        json!({"resource": "job", "clientId": "b", "ifFencingToken": token}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = post(
        &c,
        &url,
        json!({"resource": "job", "clientId": "c", "ifFencingToken": token, "waitTimeout": 0}),
    )
    .await;
    assert!(
        assert_error(st, &v, 412, "condition_failed").contains("last fencing token"),
        "{v}"
    );
    for (body, field) in [
        (
            json!({"resource": "job", "clientId": "c", "ifFencingToken": 0}),
            "ifFencingToken",
        ),
        (
            json!({"resource": "job", "clientId": "c", "ifNotGrantedWithin": 0}),
            "ifNotGrantedWithin",
        ),
        (
            json!({"resource": "job", "clientId": "c", "ifNotGrantedWithin": 3_600_000}),
            "ifNotGrantedWithin",
        ),
        (
            json!({"resource": "job", "clientId": "c", "ifFencingToken": 5, "ifNotGrantedWithin": 1000}),
            "ifNotGrantedWithin",
        ),
        (
            json!({"resource": "job", "clientId": "c", "ifFencingToken": -1}),
            "ifFencingToken",
        ),
    ] {
        let (st, v) = post(&c, &url, body).await;
        assert_error(st, &v, 400, "invalid_request");
        assert_eq!(v["field"], field, "{v}");
    }
    s.stop().await;
}

#[tokio::test]
async fn waiting_is_fifo_and_visible_in_the_queue() {
    let (s, _) = memory_server().await;
    let c = client();
    let first = acquire(&c, &s, "q", "holder").await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    for i in 0..10 {
        let (c2, url, tx) = (c.clone(), s.url("/api/locks/acquire"), tx.clone());
        let kind = if i % 3 == 1 { "shared" } else { "exclusive" };
        tokio::spawn(async move {
            let client = format!("w{i}");
            let (st, v) = post(
                &c2,
                &url,
                json!({"resource": "q", "clientId": client, "type": kind,
                "waitTimeout": 10000}),
            )
            .await;
            assert_eq!(st, 201, "{v}");
            let _ = tx.send(v["data"].clone());
        });
        wait_queue_len(&c, &s, "q", i + 1).await;
    }
    let (st, v) = get(&c, &s.url("/api/locks/queue?resource=q")).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["waitingClients"], 10);
    let order: Vec<&str> = v["data"]["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["clientId"].as_str().unwrap())
        .collect();
    assert_eq!(order, (0..10).map(|i| format!("w{i}")).collect::<Vec<_>>());
    assert_eq!(v["data"]["queue"][1]["type"], "shared");
    assert_eq!(v["data"]["queue"][0]["ttl"], 30000);

    // Release one at a time: grants come in arrival order.
    let mut current = first;
    let mut granted = Vec::new();
    for _ in 0..10 {
        let (st, _) = post(
            &c,
            &s.url("/api/locks/release"),
            json!({"lockId": current["lockId"],
            "clientId": current["clientId"]}),
        )
        .await;
        assert_eq!(st, 200);
        current = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .unwrap()
            .unwrap();
        granted.push(current["clientId"].as_str().unwrap().to_string());
    }
    assert_eq!(granted, (0..10).map(|i| format!("w{i}")).collect::<Vec<_>>());
    s.stop().await;
}

#[tokio::test]
async fn client_disconnect_gives_up_its_place() {
    let (s, _) = memory_server().await;
    let c = client();
    let holder = acquire(&c, &s, "d", "holder").await;
    let (c2, url) = (client(), s.url("/api/locks/acquire"));
    let ghost = tokio::spawn(async move {
        post(
            &c2,
            &url,
            json!({"resource": "d", "clientId": "ghost", "waitTimeout": 60000}),
        )
        .await
    });
    wait_queue_len(&c, &s, "d", 1).await;
    ghost.abort(); // the client goes away: its connection closes
    wait_queue_len(&c, &s, "d", 0).await;
    let (st, _) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": holder["lockId"], "clientId": "holder"}),
    )
    .await;
    assert_eq!(st, 200);
    // Nobody holds it: the ghost neither got it nor blocks the next client.
    let next = acquire(&c, &s, "d", "next").await;
    assert_eq!(next["clientId"], "next");
    let (_, v) = get(&c, &s.url("/api/locks/held?clientId=ghost")).await;
    assert_eq!(v["data"], json!([]));
    s.stop().await;
}

#[tokio::test]
async fn waiter_caps_answer_429() {
    let backend = Arc::new(MemoryBackend::new());
    let s = TestServer::start_with(
        Warden::with_backend(backend),
        ServerConfig::default().with_waiter_limits(2, 1),
    )
    .await;
    let c = client();
    acquire(&c, &s, "cap", "holder").await;
    acquire(&c, &s, "cap2", "holder").await;
    let (c2, url) = (c.clone(), s.url("/api/locks/acquire"));
    let w = tokio::spawn(async move {
        post(
            &c2,
            &url,
            json!({"resource": "cap", "clientId": "w1", "waitTimeout": 2000}),
        )
        .await
    });
    wait_queue_len(&c, &s, "cap", 1).await;
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "cap", "clientId": "w2",
        "waitTimeout": 2000}),
    )
    .await;
    assert!(assert_error(st, &v, 429, "too_many_waiters").contains("per-resource"));
    // waitTimeout 0 never parks, so it is not capped.
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "cap", "clientId": "w3",
        "waitTimeout": 0}),
    )
    .await;
    assert_error(st, &v, 409, "lock_timeout");
    let (c3, url) = (c.clone(), s.url("/api/locks/acquire"));
    let w2 = tokio::spawn(async move {
        post(
            &c3,
            &url,
            json!({"resource": "cap2", "clientId": "w4", "waitTimeout": 2000}),
        )
        .await
    });
    wait_queue_len(&c, &s, "cap2", 1).await;
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "cap3", "clientId": "w5",
        "waitTimeout": 2000}),
    )
    .await;
    assert!(assert_error(st, &v, 429, "too_many_waiters").contains("limit"));
    w.abort();
    w2.abort();
    s.stop().await;
}

#[tokio::test]
async fn shutdown_answers_waiters_503_and_finishes() {
    let (s, _) = memory_server().await;
    let c = client();
    acquire(&c, &s, "sd", "holder").await;
    let (c2, url) = (c.clone(), s.url("/api/locks/acquire"));
    let waiter = tokio::spawn(async move {
        post(
            &c2,
            &url,
            json!({"resource": "sd", "clientId": "w", "waitTimeout": 60000}),
        )
        .await
    });
    wait_queue_len(&c, &s, "sd", 1).await;
    let started = Instant::now();
    s.stop().await;
    let (st, v) = waiter.await.unwrap();
    assert_error(st, &v, 503, "shutting_down");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn backend_down_is_503_and_health_says_so() {
    let mut redis = warden_testkit::RedisServer::start();
    let warden = Warden::connect(&format!("{}?timeout_ms=300", redis.url()))
        .await
        .unwrap();
    let s = TestServer::start(warden).await;
    let c = client();
    let (st, v) = get(&c, &s.url("/api/locks/health")).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["status"], "healthy");
    assert_eq!(v["data"]["backend"], "redis");
    assert_eq!(v["data"]["nodes"][0]["reachable"], true);
    // Probes for a load balancer: the process is up; the backend serves.
    let (st, v) = get(&c, &s.url("/livez")).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("alive")));
    let (st, v) = get(&c, &s.url("/readyz")).await;
    assert_eq!((st, v["status"].as_str()), (200, Some("ready")));
    redis.kill();
    let started = Instant::now();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "x", "clientId": "c"}),
    )
    .await;
    let msg = assert_error(st, &v, 503, "backend_unavailable");
    assert!(msg.contains(&redis.addr()) || msg.contains("127.0.0.1"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    let (st, v) = get(&c, &s.url("/api/locks/health")).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["status"], "unhealthy");
    assert_eq!(v["data"]["nodes"][0]["reachable"], false);
    let (st, v) = get(&c, &s.url("/health")).await;
    assert_eq!(st, 503);
    assert_eq!(v["status"], "unhealthy");
    let (st, v) = get(&c, &s.url("/readyz")).await;
    assert_eq!((st, v["status"].as_str()), (503, Some("not ready")));
    let (st, _) = get(&c, &s.url("/livez")).await;
    assert_eq!(st, 200, "the process still serves");
    let (st, v) = get(&c, &s.url("/api/locks/stats")).await;
    assert_error(st, &v, 503, "backend_unavailable");
    s.stop().await;
}

#[tokio::test]
async fn health_metrics_and_openapi() {
    let (s, _) = memory_server().await;
    let c = client();
    acquire(&c, &s, "m", "c").await;
    let (st, v) = get(&c, &s.url("/health")).await;
    assert_eq!(st, 200);
    assert_eq!(v["status"], "healthy");
    assert_eq!(v["activeLocks"], 1);
    assert_eq!(v["totalLocks"], 1);
    assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
    let (st, v) = get(&c, &s.url("/api/locks/health")).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["status"], "healthy");
    assert_eq!(v["data"]["backend"], "memory");

    let held = acquire(&c, &s, "m2", "c").await;
    let (st, _) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": held["lockId"], "clientId": "c"}),
    )
    .await;
    assert_eq!(st, 200);
    let r = c.get(s.url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/plain"));
    let text = r.text().await.unwrap();
    for name in [
        "warden_grants_total",
        "warden_acquire_wait_seconds_bucket",
        "warden_active_locks",
        "warden_waiters",
        "warden_cluster_grants_total",
        "warden_cluster_expiries_total",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    // Every counter is typed and named as one.
    for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(3) == Some(&"counter") {
            assert!(f[2].ends_with("_total"), "{line}");
        } else {
            assert!(!f[2].ends_with("_total"), "a {} named as a counter: {line}", f[3]);
        }
    }

    let (st, doc) = get(&c, &s.url("/openapi.json")).await;
    assert_eq!(st, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/locks/acquire",
        "/api/locks/release",
        "/api/locks/renew",
        "/api/locks/{lockId}/status",
        "/api/locks/held",
        "/api/locks/exclusive",
        "/api/locks/shared",
        "/api/locks/read-write",
        "/api/locks/stats",
        "/api/locks/health",
        "/api/locks/queue",
        "/health",
        "/metrics",
        "/openapi.json",
        "/api/locks/force-release",
        "/api/events",
    ] {
        assert!(paths.contains_key(p), "openapi lacks {p}");
    }
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for sch in [
        "AcquireBody",
        "Lock",
        "LockStatus",
        "StatsDto",
        "HealthDto",
        "QueueDto",
        "ErrorBody",
        "ForceReleaseBody",
    ] {
        assert!(schemas.contains_key(sch), "openapi lacks schema {sch}");
    }
    assert!(schemas["Lock"]["properties"].get("fencingToken").is_some());
    // Auth is documented on every endpoint that takes a key, and only there.
    let acquire = &doc["paths"]["/api/locks/acquire"]["post"];
    assert!(acquire["responses"].get("401").is_some() && acquire["responses"].get("403").is_some());
    assert_eq!(acquire["security"][0]["apiKey"], json!([]));
    assert!(doc["paths"]["/health"]["get"]["responses"].get("401").is_none());
    assert_eq!(doc["components"]["securitySchemes"]["apiKey"]["scheme"], "bearer");
    s.stop().await;
}

#[tokio::test]
async fn held_and_queue_come_in_pages() {
    let (s, _) = memory_server().await;
    let c = client();
    for i in 0..25 {
        acquire(&c, &s, &format!("page-{i}"), "pager").await;
    }
    let held = |q: &str| s.url(&format!("/api/locks/held?clientId=pager{q}"));
    let (st, v) = get(&c, &held("&limit=10")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"].as_array().unwrap().len(), 10);
    assert_eq!(v["nextOffset"], 10);
    // The pages together are every lease, once each.
    let mut seen = std::collections::HashSet::new();
    let mut offset = Some(0u64);
    while let Some(at) = offset {
        let (st, v) = get(&c, &held(&format!("&limit=10&offset={at}"))).await;
        assert_eq!(st, 200, "{v}");
        for l in v["data"].as_array().unwrap() {
            assert!(seen.insert(l["resource"].as_str().unwrap().to_string()), "{l}");
        }
        offset = v["nextOffset"].as_u64();
    }
    assert_eq!(seen.len(), 25);
    // Without a limit: the default page (1,000) holds all 25, and there is no next page.
    let (_, v) = get(&c, &held("")).await;
    assert_eq!(v["data"].as_array().unwrap().len(), 25);
    assert!(v.get("nextOffset").is_none(), "{v}");
    for bad in ["&limit=0", "&limit=10001", "&limit=x"] {
        let (st, v) = get(&c, &held(bad)).await;
        assert_eq!(st, 400, "{bad}: {v}");
    }
    // A queue of three waiters, two to a page; waitingClients counts them all.
    let waiters: Vec<_> = (0..3)
        .map(|i| {
            let c = c.clone();
            let url = s.url("/api/locks/acquire");
            tokio::spawn(async move {
                post(
                    &c,
                    &url,
                    json!({"resource": "page-0", "clientId": format!("w{i}"), "waitTimeout": 10000}),
                )
                .await
            })
        })
        .collect();
    wait_queue_len(&c, &s, "page-0", 3).await;
    let (st, v) = get(&c, &s.url("/api/locks/queue?resource=page-0&limit=2")).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["waitingClients"], 3);
    assert_eq!(v["data"]["queue"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"]["nextOffset"], 2);
    let (_, v) = get(&c, &s.url("/api/locks/queue?resource=page-0&limit=2&offset=2")).await;
    assert_eq!(v["data"]["queue"].as_array().unwrap().len(), 1);
    assert!(v["data"].get("nextOffset").is_none(), "{v}");
    // The library over http reads every page.
    let w = Warden::connect(&s.url("")).await.unwrap();
    assert_eq!(w.held("pager").await.unwrap().len(), 25);
    assert_eq!(w.inspect("page-0").await.unwrap().queue.len(), 3);
    for t in waiters {
        t.abort();
    }
    s.stop().await;
}

#[tokio::test]
async fn priorities_order_waiters_and_name_bad_values() {
    let (s, _) = memory_server().await;
    let c = client();
    let (_, h) = get(&c, &s.url("/api/locks/health")).await;
    assert_eq!(h["data"]["capabilities"]["priorities"], true, "{h}");
    let holder = acquire(&c, &s, "printer", "holder").await;
    let mut waiters = Vec::new();
    for (n, (client_id, priority)) in [("plain", 0), ("urgent", 20)].into_iter().enumerate() {
        let (c2, base) = (c.clone(), s.url(""));
        waiters.push(tokio::spawn(async move {
            let body =
                json!({"resource": "printer", "clientId": client_id, "priority": priority, "waitTimeout": 10000});
            let (st, v) = post(&c2, &format!("{base}/api/locks/acquire"), body).await;
            assert_eq!(st, 201, "{v}");
            let lock = &v["data"];
            let release = json!({"lockId": lock["lockId"], "clientId": client_id});
            let (st, r) = post(&c2, &format!("{base}/api/locks/release"), release).await;
            assert_eq!(st, 200, "{r}");
            (lock["fencingToken"].as_u64().unwrap_or_default(), client_id)
        }));
        wait_queue_len(&c, &s, "printer", n as u64 + 1).await;
    }
    let (_, q) = get(&c, &s.url("/api/locks/queue?resource=printer")).await;
    assert_eq!(q["data"]["queue"][0]["clientId"], "urgent", "{q}");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": holder["lockId"], "clientId": "holder"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let mut granted = Vec::new();
    for w in waiters {
        granted.push(w.await.expect("waiter"));
    }
    granted.sort();
    assert_eq!(granted.iter().map(|(_, c)| *c).collect::<Vec<_>>(), ["urgent", "plain"]);

    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "printer", "clientId": "x", "priority": 101}),
    )
    .await;
    assert_error(st, &v, 400, "invalid_request");
    assert_eq!(v["field"], "priority", "{v}");
}
