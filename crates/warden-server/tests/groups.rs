//! Lock groups over REST: acquire all or nothing, one release and one renew, and every bad input named.

mod common;

use common::*;
use serde_json::{json, Value};
use warden::Warden;

async fn server() -> TestServer {
    TestServer::start(Warden::connect("memory://").await.expect("memory")).await
}

fn group(client: &str, members: Value, wait: u64) -> Value {
    json!({"members": members, "clientId": client, "ttl": 30000, "waitTimeout": wait})
}

#[tokio::test]
async fn a_group_is_granted_whole_renewed_and_released_with_one_call() {
    let s = server().await;
    let c = client();
    let members = json!([{"resource": "b"}, {"resource": "a", "type": "shared"},
        {"resource": "c", "type": "semaphore", "permits": 2}]);
    let (st, v) = post(&c, &s.url("/api/groups/acquire"), group("alice", members, 0)).await;
    assert_eq!(st, 201, "{v}");
    let data = &v["data"];
    let locks = data["locks"].as_array().expect("locks");
    let names: Vec<&str> = locks.iter().filter_map(|l| l["resource"].as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "members in the global order");
    let types: Vec<&str> = locks.iter().filter_map(|l| l["type"].as_str()).collect();
    assert_eq!(types, ["shared", "exclusive", "semaphore"]);
    assert!(locks.iter().all(|l| l["fencingToken"].as_u64().is_some_and(|f| f > 0)));
    let group_id = data["groupId"].as_str().expect("groupId").to_string();
    let ids: Vec<&str> = locks.iter().filter_map(|l| l["lockId"].as_str()).collect();
    assert_eq!(group_id, ids.join("."));

    // A stranger's group on `b` holds nothing: `d` stays free.
    let (st, v) = post(
        &c,
        &s.url("/api/groups/acquire"),
        group("bob", json!([{"resource": "d"}, {"resource": "b"}]), 200),
    )
    .await;
    assert!(assert_error(st, &v, 409, "lock_timeout").contains("`b`"), "{v}");
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "d", "clientId": "carol", "waitTimeout": 0}),
    )
    .await;
    assert_eq!(st, 201, "a refused group kept `d`: {v}");

    // The stranger cannot release or renew it, even knowing the id.
    let (st, v) = post(
        &c,
        &s.url("/api/groups/release"),
        json!({"groupId": group_id, "clientId": "bob"}),
    )
    .await;
    assert_error(st, &v, 409, "not_owner");
    let (st, v) = post(
        &c,
        &s.url("/api/groups/renew"),
        json!({"groupId": group_id, "clientId": "alice", "ttl": 60000}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["data"]["locks"].as_array().map(Vec::len), Some(3), "{v}");
    assert!(
        v["data"]["locks"]
            .as_array()
            .expect("locks")
            .iter()
            .all(|l| l["ttl"] == 60000),
        "{v}"
    );

    let (st, v) = post(
        &c,
        &s.url("/api/groups/release"),
        json!({"groupId": group_id, "clientId": "alice"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(
        &c,
        &s.url("/api/groups/acquire"),
        group("bob", json!([{"resource": "b"}]), 0),
    )
    .await;
    assert_eq!(st, 201, "`b` still held after the group's release: {v}");
    let (st, v) = post(
        &c,
        &s.url("/api/groups/release"),
        json!({"groupId": group_id, "clientId": "alice"}),
    )
    .await;
    assert_error(st, &v, 404, "not_found");
    s.stop().await;
}

#[tokio::test]
async fn bad_groups_are_refused_naming_the_member_and_field() {
    let s = server().await;
    let c = client();
    let too_many: Vec<Value> = (0..33).map(|i| json!({"resource": format!("r{i}")})).collect();
    for (members, field, why) in [
        (json!([]), "members", "1..=32"),
        (json!(too_many), "members", "1..=32"),
        (json!([{"resource": "x"}, {"resource": "x"}]), "members", "named twice"),
        (
            json!([{"resource": "x"}, {"resource": ""}]),
            "members[1].resource",
            "member 1",
        ),
        (
            json!([{"resource": "x", "type": "odd"}]),
            "members[0].type",
            "member 0 (`x`)",
        ),
        (
            json!([{"resource": "x", "type": "semaphore"}]),
            "members[0].permits",
            "is required",
        ),
        (
            json!([{"resource": "x", "permits": 2}]),
            "members[0].permits",
            "only for type semaphore",
        ),
        (
            json!([{"resource": "x", "type": "read-write"}]),
            "members[0].mode",
            "member 0",
        ),
    ] {
        let (st, v) = post(&c, &s.url("/api/groups/acquire"), group("a", members, 0)).await;
        assert!(assert_error(st, &v, 400, "invalid_request").contains(why), "{why}: {v}");
        assert_eq!(v["field"], field, "{v}");
    }
    for id in ["", "short", "a.b", &"x".repeat(20)] {
        let (st, v) = post(
            &c,
            &s.url("/api/groups/release"),
            json!({"groupId": id, "clientId": "a"}),
        )
        .await;
        if id.len() == 20 {
            assert_error(st, &v, 404, "not_found");
        } else {
            assert_error(st, &v, 400, "invalid_request");
            assert_eq!(v["field"], "groupId", "{v}");
        }
    }
    let (st, v) = post(
        &c,
        &s.url("/api/groups/renew"),
        json!({"groupId": "x", "clientId": "a", "ttl": 1}),
    )
    .await;
    assert_error(st, &v, 400, "invalid_request");
    let (_, doc) = get(&c, &s.url("/openapi.json")).await;
    for path in ["/api/groups/acquire", "/api/groups/release", "/api/groups/renew"] {
        assert!(
            doc["paths"][path]["post"].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn a_path_lock_excludes_below_and_above_never_siblings() {
    let s = server().await;
    let c = client();
    let path = |client: &str, path: &str| json!({"path": path, "clientId": client, "waitTimeout": 0});
    let (st, v) = post(&c, &s.url("/api/paths/acquire"), path("alice", "orders/eu")).await;
    assert_eq!(st, 201, "{v}");
    let locks = v["data"]["locks"].as_array().expect("locks").clone();
    let names: Vec<&str> = locks.iter().filter_map(|l| l["resource"].as_str()).collect();
    assert_eq!(names, ["orders", "orders/eu"], "{v}");
    assert_eq!(locks[0]["type"], "intent", "{v}");
    assert_eq!(locks[0]["mode"], "exclusive", "{v}");
    assert_eq!(locks[1]["type"], "exclusive", "{v}");
    let group_id = v["data"]["groupId"].as_str().expect("groupId").to_string();

    for held in ["orders/eu/42", "orders"] {
        let (st, v) = post(&c, &s.url("/api/paths/acquire"), path("bob", held)).await;
        assert_error(st, &v, 409, "lock_timeout");
    }
    let mut shared = path("bob", "orders/eu/42");
    shared["mode"] = json!("shared");
    let (st, v) = post(&c, &s.url("/api/paths/acquire"), shared).await;
    assert_error(st, &v, 409, "lock_timeout");
    let (st, v) = post(&c, &s.url("/api/paths/acquire"), path("bob", "orders/us/7")).await;
    assert_eq!(st, 201, "a sibling's child: {v}");
    let mut colon = path("carol", "jobs:eu");
    colon["separator"] = json!(":");
    let (st, v) = post(&c, &s.url("/api/paths/acquire"), colon).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["data"]["locks"][0]["resource"], "jobs", "{v}");

    let (st, v) = post(
        &c,
        &s.url("/api/groups/release"),
        json!({"groupId": group_id, "clientId": "alice"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = post(&c, &s.url("/api/paths/acquire"), path("bob", "orders/eu/42")).await;
    assert_eq!(st, 201, "after the release: {v}");

    for (body, field) in [
        (path("a", "orders//eu"), "path"),
        (path("a", "/orders"), "path"),
        (json!({"path": "a", "clientId": "a", "separator": "::"}), "separator"),
        (json!({"path": "a", "clientId": "a", "mode": "write"}), "mode"),
    ] {
        let (st, v) = post(&c, &s.url("/api/paths/acquire"), body).await;
        assert_error(st, &v, 400, "invalid_request");
        assert_eq!(v["field"], field, "{v}");
    }
    // An intention names its mode.
    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "orders", "type": "intent", "clientId": "a"}),
    )
    .await;
    assert!(
        assert_error(st, &v, 400, "invalid_request").contains("\"shared\" or \"exclusive\""),
        "{v}"
    );
    assert_eq!(v["field"], "mode", "{v}");
}
