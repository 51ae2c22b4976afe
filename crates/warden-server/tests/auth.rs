//! API keys: who may lock, release, read and force-release what, and a leaked lock id that buys nothing.

mod common;

use common::*;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use warden::Warden;
use warden_server::auth::{new_key, Auth};
use warden_server::ServerConfig;

struct Keys {
    orders: String,
    billing: String,
    ops: String,
    root: String,
}

fn entry(principal: &str, role: &str, namespaces: &[&str], hash: &str) -> String {
    let ns: Vec<String> = namespaces.iter().map(|n| format!("{n:?}")).collect();
    format!(
        "[[key]]\nprincipal = {principal:?}\nrole = {role:?}\nnamespaces = [{}]\nsha256 = {hash:?}\n\n",
        ns.join(", ")
    )
}

/// An auth file with two tenants, an observer and an admin.
fn auth_file() -> (tempfile::NamedTempFile, Keys, String) {
    let (orders, h1) = new_key();
    let (billing, h2) = new_key();
    let (ops, h3) = new_key();
    let (root, h4) = new_key();
    let text = [
        entry("orders", "client", &["orders:*"], &h1),
        entry("billing", "client", &["billing:*"], &h2),
        entry("ops", "observer", &[], &h3),
        entry("root", "admin", &["*"], &h4),
    ]
    .concat();
    let f = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(f.path(), &text).expect("write auth file");
    (
        f,
        Keys {
            orders,
            billing,
            ops,
            root,
        },
        text,
    )
}

async fn start() -> (TestServer, Keys, Arc<Auth>, tempfile::NamedTempFile) {
    let (f, keys, _) = auth_file();
    let auth = Arc::new(Auth::load(f.path()).expect("auth file"));
    let w = Warden::connect("memory://").await.expect("memory");
    let s = TestServer::start_with(w, ServerConfig::default().with_auth(auth.clone())).await;
    (s, keys, auth, f)
}

#[tokio::test]
async fn a_request_without_a_known_key_is_refused_and_counted() {
    let (s, k, _auth, _f) = start().await;
    let c = client();
    let body = json!({"resource": "orders:1", "clientId": "w1"});
    let (st, v) = call(&c, &s.url("/api/locks/acquire"), None, Some(body.clone())).await;
    assert!(assert_error(st, &v, 401, "unauthorized").contains("Authorization: Bearer"));
    let (st, v) = call(&c, &s.url("/api/locks/acquire"), Some("wdn_guess"), Some(body)).await;
    assert_error(st, &v, 401, "unauthorized");
    for path in [
        "/api/locks/stats",
        "/api/locks/queue?resource=orders:1",
        "/metrics",
        "/nowhere",
    ] {
        let (st, _) = call(&c, &s.url(path), None, None).await;
        assert_eq!(st, 401, "{path} answered without a key");
    }
    // Load balancers and API readers need no key.
    assert_eq!(call(&c, &s.url("/health"), None, None).await.0, 200);
    assert_eq!(call(&c, &s.url("/openapi.json"), None, None).await.0, 200);
    let (st, metrics) = call(&c, &s.url("/metrics"), Some(&k.ops), None).await;
    assert_eq!(st, 200);
    let text = metrics.as_str().expect("metrics text");
    assert!(
        text.contains("warden_auth_failures_total{reason=\"missing_key\"}"),
        "{text}"
    );
    assert!(
        text.contains("warden_auth_failures_total{reason=\"unknown_key\"}"),
        "{text}"
    );
    assert!(!text.contains(&k.ops) && !text.contains("wdn_guess"));
}

#[tokio::test]
async fn a_tenant_cannot_touch_another_tenants_lock_even_with_its_lock_id() {
    let (s, k, _auth, _f) = start().await;
    let c = client();
    let (st, v) = call(
        &c,
        &s.url("/api/locks/acquire"),
        Some(&k.orders),
        Some(json!({"resource": "orders:1", "clientId": "w1", "ttl": 60000})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        v["data"]["clientId"], "w1",
        "the owner sees its client id as it sent it"
    );
    let id = v["data"]["lockId"].as_str().expect("lockId").to_string();
    let handle = warden::lease_handle(&id);
    // Outside its namespaces, and as an observer: no lock.
    let (st, v) = call(
        &c,
        &s.url("/api/locks/acquire"),
        Some(&k.billing),
        Some(json!({"resource": "orders:1", "clientId": "w1", "waitTimeout": 0})),
    )
    .await;
    assert!(assert_error(st, &v, 403, "forbidden").contains("billing:*"));
    let (st, v) = call(
        &c,
        &s.url("/api/locks/acquire"),
        Some(&k.ops),
        Some(json!({"resource": "orders:2", "clientId": "o"})),
    )
    .await;
    assert_error(st, &v, 403, "forbidden");
    // The leaked id and the same client id, from the other tenant: its clients are not the owner's.
    let leaked = json!({"lockId": id, "clientId": "w1"});
    let (st, v) = call(&c, &s.url("/api/locks/release"), Some(&k.billing), Some(leaked.clone())).await;
    assert_error(st, &v, 409, "not_owner");
    let (st, v) = call(&c, &s.url("/api/locks/renew"), Some(&k.billing), Some(leaked.clone())).await;
    assert_error(st, &v, 409, "not_owner");
    let (st, v) = call(&c, &s.url(&format!("/api/locks/{id}/status")), Some(&k.billing), None).await;
    assert_error(st, &v, 404, "not_found");
    let (st, v) = call(&c, &s.url("/api/locks/held?clientId=w1"), Some(&k.billing), None).await;
    assert_eq!((st, v["data"].clone()), (200, json!([])));
    let (st, v) = call(&c, &s.url("/api/locks/queue?resource=orders:1"), Some(&k.billing), None).await;
    assert_error(st, &v, 403, "forbidden");
    let (st, v) = call(&c, &s.url("/api/locks/stats"), Some(&k.billing), None).await;
    assert_error(st, &v, 403, "forbidden");
    // The owner sees its own lease with its id; the observer by handle, under the bound client id.
    let (st, v) = call(&c, &s.url("/api/locks/held?clientId=w1"), Some(&k.orders), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["lockId"], id.as_str());
    let (st, v) = call(&c, &s.url("/api/locks/held?clientId=orders/w1"), Some(&k.ops), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"][0]["leaseHandle"], handle.as_str());
    assert_eq!(v["data"][0].get("lockId"), None);
    let (st, v) = call(&c, &s.url("/api/locks/queue?resource=orders:1"), Some(&k.ops), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["data"]["holders"][0]["clientId"], "orders/w1");
    assert!(!v.to_string().contains(&id));
    // The lease is untouched by all of that; its owner releases it.
    let (st, v) = call(&c, &s.url("/api/locks/release"), Some(&k.orders), Some(leaked)).await;
    assert_eq!(st, 200, "{v}");
}

#[tokio::test]
async fn only_an_admin_force_releases_and_the_holder_learns_it_lost_the_lease() {
    let (s, k, _auth, _f) = start().await;
    let c = client();
    // The holder is a library guard over the http backend, its key in the URL.
    let url = s.base.replacen("http://", &format!("http://:{}@", k.orders), 1);
    let w = Warden::connect(&url).await.expect("http backend with a key");
    let guard = w
        .lock("orders:stuck")
        .client_id("worker")
        .ttl(Duration::from_millis(600))
        .acquire()
        .await
        .expect("acquire");
    let fence = guard.fencing_token();
    let body = json!({"resource": "orders:stuck", "reason": "worker hung in a deploy"});
    for key in [&k.orders, &k.ops] {
        let (st, v) = call(&c, &s.url("/api/locks/force-release"), Some(key), Some(body.clone())).await;
        assert!(assert_error(st, &v, 403, "forbidden").contains("admin"));
    }
    let (st, v) = call(
        &c,
        &s.url("/api/locks/force-release"),
        Some(&k.root),
        Some(json!({"resource": "orders:stuck", "reason": " "})),
    )
    .await;
    assert!(assert_error(st, &v, 400, "invalid_request").contains("reason"));
    let (st, v) = call(
        &c,
        &s.url("/api/locks/force-release"),
        Some(&k.root),
        Some(body.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["data"]["released"][0]["leaseHandle"],
        warden::lease_handle(guard.lock_id()).as_str()
    );
    assert_eq!(v["data"]["released"][0].get("lockId"), None);
    // The guard's next renewal (at a third of its 600 ms lease) finds the lease gone.
    tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("the guard did not learn that its lease was taken away");
    let next = w
        .lock("orders:stuck")
        .client_id("worker2")
        .try_acquire()
        .await
        .expect("acquire")
        .expect("free after the force-release");
    assert!(next.fencing_token() > fence, "the fencing token did not move on");
    let (st, v) = call(
        &c,
        &s.url("/api/locks/force-release"),
        Some(&k.root),
        Some(json!({
        "resource": "orders:stuck", "leaseHandle": "lh_0000000000000000", "reason": "wrong handle"})),
    )
    .await;
    assert_error(st, &v, 404, "not_found");
    // Without a key the library says what the server wants.
    let e = Warden::connect(&s.base).await.expect_err("no key");
    assert!(matches!(e, warden::Error::Unauthorized { .. }), "{e:?}");
    assert!(!format!("{e} {e:?}").contains(&k.orders));
}

#[tokio::test]
async fn reloading_the_keys_revokes_one_and_keeps_every_lock() {
    let (s, k, auth, f) = start().await;
    let c = client();
    let (st, v) = call(
        &c,
        &s.url("/api/locks/acquire"),
        Some(&k.billing),
        Some(json!({"resource": "billing:run", "clientId": "b", "ttl": 60000})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["data"]["lockId"].as_str().expect("lockId").to_string();
    let text = std::fs::read_to_string(f.path()).expect("read");
    let without_billing: String = text
        .split("\n\n")
        .filter(|e| !e.contains("\"billing\""))
        .collect::<Vec<_>>()
        .join("\n\n");
    std::fs::write(f.path(), without_billing).expect("rewrite");
    assert_eq!(auth.reload().expect("reload"), 3);
    let (st, v) = call(&c, &s.url(&format!("/api/locks/{id}/status")), Some(&k.billing), None).await;
    assert_error(st, &v, 401, "unauthorized");
    let (st, v) = call(&c, &s.url("/api/locks/queue?resource=billing:run"), Some(&k.root), None).await;
    assert_eq!(st, 200);
    assert_eq!(
        v["data"]["holders"][0]["clientId"], "billing/b",
        "the reload dropped a lock"
    );
}

#[tokio::test]
async fn a_principal_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let (f, k, _) = auth_file();
    let auth = Arc::new(Auth::load(f.path()).expect("auth file"));
    let w = Warden::connect("memory://").await.expect("memory");
    let config = ServerConfig::default().with_auth(auth).with_rate_limit(2, 3);
    let s = TestServer::start_with(w, config).await;
    let c = client();
    let health = s.url("/api/locks/health");
    for i in 0..3 {
        assert_eq!(
            call(&c, &health, Some(&k.orders), None).await.0,
            200,
            "request {i} of the burst"
        );
    }
    let r = c.get(&health).bearer_auth(&k.orders).send().await.expect("request");
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
    let v: Value = r.json().await.expect("envelope");
    assert!(assert_error(429, &v, 429, "rate_limited").contains("orders"));
    assert_eq!(
        call(&c, &health, Some(&k.billing), None).await.0,
        200,
        "another principal was limited"
    );
}
