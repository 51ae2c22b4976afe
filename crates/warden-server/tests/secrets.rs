//! Lock ids are their owners' secrets: the server's log output, at every level, and every view anyone else can
//! read (held, queue, stats, health, metrics, the event stream, the audit log, an admin's force-release answer)
//! never show one, whatever happens to the lease (granted, renewed, refused, handed over, expired, released,
//! taken away, unknown), with and without API keys, which never show either.

mod common;

use common::*;
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::Warden;
use warden_server::audit::{Audit, AuditLog};
use warden_server::auth::{new_key, Auth};
use warden_server::ServerConfig;
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

/// Who calls: the owner of the leases, someone else who reads every view, and an admin. Without auth all three
/// are plain clients; with it each carries its key, and views name clients as `principal/clientId`.
struct Callers {
    owner: reqwest::Client,
    viewer: reqwest::Client,
    admin: reqwest::Client,
    bound: &'static str,
}

fn keyed(key: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).expect("header");
    h.insert(reqwest::header::AUTHORIZATION, v);
    reqwest::Client::builder().default_headers(h).build().expect("client")
}

/// The body of every view that is not its owner's own answer, read while leases are live.
async fn views(who: &Callers, s: &TestServer, seen: &mut Vec<String>) {
    let b = who.bound;
    for path in [
        format!("/api/locks/held?clientId={b}a"),
        format!("/api/locks/held?clientId={b}b"),
        "/api/locks/queue?resource=secret".to_string(),
        "/api/locks/stats".to_string(),
        "/api/locks/health".to_string(),
        "/health".to_string(),
        "/metrics".to_string(),
    ] {
        let r = who.viewer.get(s.url(&path)).send().await.expect("view answers");
        assert_eq!(r.status(), 200, "{path}");
        seen.push(format!("{path}: {}", r.text().await.expect("view body")));
    }
}

/// Every kind of lease event through the API; returns the lock ids it saw and the views it read (the event
/// stream included).
async fn exercise(s: &TestServer, who: &Callers) -> (Vec<String>, Vec<String>) {
    let c = &who.owner;
    let mut ids = Vec::new();
    let mut seen = Vec::new();
    // A live event reader from the start.
    let stream = who.viewer.get(s.url("/api/events")).send().await.expect("events");
    assert_eq!(stream.status(), 200);
    let events = Arc::new(Mutex::new(String::new()));
    let sink = events.clone();
    let reader = tokio::spawn(async move {
        let mut bytes = stream.bytes_stream();
        while let Some(Ok(chunk)) = futures::StreamExt::next(&mut bytes).await {
            sink.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push_str(&String::from_utf8_lossy(&chunk));
        }
    });
    let acquire = s.url("/api/locks/acquire");
    let (st, v) = post(c, &acquire, json!({"resource": "secret", "clientId": "a", "ttl": 5000})).await;
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
    wait_queue_len(&who.viewer, s, "secret", 1).await;
    views(who, s, &mut seen).await;
    let (st, v) = post(c, &s.url("/api/locks/renew"), json!({"lockId": a, "clientId": "a"})).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = get(c, &s.url(&format!("/api/locks/{a}/status"))).await;
    assert_eq!(st, 200);
    let (st, _) = get(c, &s.url("/api/locks/held?clientId=a")).await;
    assert_eq!(st, 200);
    // Refusals that quote the id back to the caller.
    let (st, _) = post(
        c,
        &s.url("/api/locks/release"),
        json!({"lockId": a, "clientId": "stranger"}),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = post(c, &s.url("/api/locks/release"), json!({"lockId": a, "clientId": "a"})).await;
    assert_eq!(st, 200);
    let (st, _) = post(c, &s.url("/api/locks/renew"), json!({"lockId": a, "clientId": "a"})).await;
    assert_eq!(st, 404);
    let (st, v) = waiter.await.expect("waiter");
    assert_eq!(st, 201, "{v}");
    let b = v["data"]["lockId"].as_str().expect("lockId").to_string();
    ids.push(b.clone());
    views(who, s, &mut seen).await;
    // b's lease runs out unreleased; renewing it afterwards is refused.
    let status = s.url(&format!("/api/locks/{b}/status"));
    // Past its expiry by more than the backend's clocks can disagree (its monotonic clock against the wall
    // clock of the view): a renewal then finds it gone.
    let ended = warden_testkit::eventually(Duration::from_secs(3), || async {
        let (st, v) = get(c, &status).await;
        let past = v["data"]["expiresAt"]
            .as_str()
            .and_then(warden::wire::parse_rfc3339)
            .is_some_and(|t| t + Duration::from_millis(20) < std::time::SystemTime::now());
        st == 404 || (v["data"]["isExpired"] == json!(true) && past)
    })
    .await;
    assert!(ended, "the 200 ms lease did not run out");
    let (st, _) = post(c, &s.url("/api/locks/renew"), json!({"lockId": b, "clientId": "b"})).await;
    assert!(st == 404 || st == 409, "{st}");
    // A lease an admin takes away: the admin's answer is a view too.
    let (st, v) = post(c, &acquire, json!({"resource": "secret", "clientId": "c", "ttl": 5000})).await;
    assert_eq!(st, 201, "{v}");
    ids.push(v["data"]["lockId"].as_str().expect("lockId").to_string());
    let r = who
        .admin
        .post(s.url("/api/locks/force-release"))
        .json(&json!({"resource": "secret", "reason": "test"}))
        .send()
        .await
        .expect("force-release");
    assert_eq!(r.status(), 200);
    seen.push(format!("force-release: {}", r.text().await.expect("body")));
    // The stream saw the force-release (the last event): everything before it is in.
    let complete = warden_testkit::eventually(Duration::from_secs(3), || {
        let events = events.clone();
        async move {
            events
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains("force_release")
        }
    })
    .await;
    assert!(complete, "the event stream missed the force-release");
    reader.abort();
    let text = events.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(
        text.matches("\"grant\"").count() >= 3,
        "the stream missed grants: {text}"
    );
    seen.push(format!("events: {text}"));
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
    let dir = tempfile::tempdir().expect("dir");
    // With keys: a client tenant, an observer and an admin; the keys are secrets too.
    let keys = [new_key(), new_key(), new_key()];
    let auth_path = dir.path().join("auth.toml");
    std::fs::write(
        &auth_path,
        format!(
            "[[key]]\nprincipal = \"app\"\nrole = \"client\"\nnamespaces = [\"secret\"]\nsha256 = \"{}\"\n\
             [[key]]\nprincipal = \"ops\"\nrole = \"observer\"\nsha256 = \"{}\"\n\
             [[key]]\nprincipal = \"root\"\nrole = \"admin\"\nnamespaces = [\"*\"]\nsha256 = \"{}\"\n",
            keys[0].1, keys[1].1, keys[2].1
        ),
    )
    .expect("auth file");
    let auth = Arc::new(Auth::load(&auth_path).expect("auth"));
    let log = dir.path().join("audit.jsonl");
    for backend in ["memory://".to_string(), format!("{}?timeout_ms=1000", redis.url())] {
        for with_keys in [false, true] {
            let audit = Arc::new(Audit::start(&AuditLog::File(log.clone())).expect("audit log"));
            let (config, who) = if with_keys {
                let who = Callers {
                    owner: keyed(&keys[0].0),
                    viewer: keyed(&keys[1].0),
                    admin: keyed(&keys[2].0),
                    bound: "app/",
                };
                (ServerConfig::default().with_auth(auth.clone()).with_audit(audit), who)
            } else {
                let who = Callers {
                    owner: client(),
                    viewer: client(),
                    admin: client(),
                    bound: "",
                };
                (ServerConfig::default().with_audit(audit), who)
            };
            let s = TestServer::start_with(Warden::connect(&backend).await.expect("connect"), config).await;
            let (i, v) = exercise(&s, &who).await;
            ids.extend(i);
            seen.extend(v);
            s.stop().await;
        }
    }
    let audit_text = std::fs::read_to_string(&log).expect("audit log");
    assert!(
        audit_text.lines().count() >= 20,
        "the audit log is short:\n{audit_text}"
    );
    seen.push(format!("audit log: {audit_text}"));
    let text = logs.text();
    for (key, _) in &keys {
        assert!(!text.contains(key.as_str()), "an API key appears in the log");
        assert!(
            seen.iter().all(|v| !v.contains(key.as_str())),
            "an API key appears in a view"
        );
    }
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
