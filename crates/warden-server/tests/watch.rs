//! `GET /api/locks/watch?resource=`: a grant, a queued waiter, a release and the handover show as events
//! within a second, each lease by its handle and fence (never its lock id); a bad query is a 400.

mod common;

use common::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;
use warden::Warden;

/// The (event, data) frames of an SSE body, as they arrive.
struct Frames {
    bytes: std::pin::Pin<Box<dyn futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buf: String,
}

impl Frames {
    async fn open(c: &reqwest::Client, url: &str) -> Frames {
        let r = c.get(url).send().await.expect("watch");
        assert_eq!(r.status(), 200);
        Frames {
            bytes: Box::pin(r.bytes_stream()),
            buf: String::new(),
        }
    }

    /// The next event, which must come within `within`.
    async fn next(&mut self, within: Duration) -> (String, Value) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let frame: String = self.buf.drain(..end + 2).collect();
                let event = frame.lines().find_map(|l| l.strip_prefix("event: "));
                let data = frame.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(e), Some(d)) = (event, data) {
                    return (e.to_string(), serde_json::from_str(d).expect("event JSON"));
                }
                continue; // keep-alive comment
            }
            let chunk = tokio::time::timeout_at(deadline, self.bytes.next())
                .await
                .expect("an event in time")
                .expect("stream open")
                .expect("chunk");
            self.buf.push_str(&String::from_utf8_lossy(&chunk));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_queue_changes_and_releases_stream_within_a_second() {
    let s = TestServer::start(Warden::connect("memory://").await.expect("memory")).await;
    let c = client();
    // A long interval: what goes through this server must show at once anyway.
    let mut w = Frames::open(&c, &s.url("/api/locks/watch?resource=jobs&interval=60000")).await;
    let sec = Duration::from_secs(1);
    let (e, snap) = w.next(sec).await;
    assert_eq!(e, "snapshot");
    assert_eq!(snap["holders"], json!([]));
    assert_eq!(snap["waitingClients"], 0);

    let (st, v) = post(
        &c,
        &s.url("/api/locks/acquire"),
        json!({"resource": "jobs", "clientId": "first", "ttl": 30000}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let id = v["data"]["lockId"].as_str().expect("lock id").to_string();
    let (e, g) = w.next(sec).await;
    assert_eq!(e, "granted");
    assert_eq!(g["clientId"], "first");
    assert_eq!(g["fencingToken"], v["data"]["fencingToken"]);
    assert!(
        g.get("lockId").is_none_or(Value::is_null),
        "a lock id in the stream: {g}"
    );
    assert!(!g.to_string().contains(&id), "a lock id in the stream: {g}");

    // A second watch that looks every 100 ms: a wait is no grant, nothing nudges a watch, the next look shows it.
    let mut quick = Frames::open(&c, &s.url("/api/locks/watch?resource=jobs&interval=100")).await;
    assert_eq!(quick.next(sec).await.0, "snapshot");
    let (c2, url) = (c.clone(), s.url("/api/locks/acquire"));
    let second = tokio::spawn(async move {
        post(
            &c2,
            &url,
            json!({"resource": "jobs", "clientId": "second", "ttl": 30000, "waitTimeout": 10000}),
        )
        .await
    });
    let (e, q) = quick.next(sec).await;
    assert_eq!(e, "queue", "{q}");
    assert_eq!(q["waitingClients"], 1);
    assert_eq!(q["queue"][0]["clientId"], "second");

    let (st, _) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": id, "clientId": "first"}),
    )
    .await;
    assert_eq!(st, 200);
    // The release and the handover went through this server: the slow watch shows them at once, well within
    // its 1 s interval. (The look the release nudges may run before the woken waiter's grant: it then shows the
    // waiter still queued, and the grant's own nudge shows the grant.)
    let ended = w.next(sec).await;
    assert_eq!(
        (ended.0.as_str(), &ended.1["clientId"]),
        ("ended", &json!("first")),
        "{ended:?}"
    );
    let granted = loop {
        let (e, data) = w.next(sec).await;
        match e.as_str() {
            "granted" => break data,
            "queue" => assert_eq!(data["queue"][0]["clientId"], "second", "{data}"),
            other => panic!("{other} between the release and the handover: {data}"),
        }
    };
    assert_eq!(granted["clientId"], "second");
    let (st, v) = second.await.expect("waiter");
    assert_eq!(st, 201, "{v}");
    assert_eq!(granted["fencingToken"], v["data"]["fencingToken"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_watch_query_is_a_400() {
    let s = TestServer::start(Warden::connect("memory://").await.expect("memory")).await;
    let c = client();
    for q in [
        "",
        "?resource=a&prefix=b",
        "?resource=a&interval=10",
        "?resource=a&interval=x",
        "?resource=",
    ] {
        let (st, v) = get(&c, &s.url(&format!("/api/locks/watch{q}"))).await;
        assert_eq!(st, 400, "{q}: {v}");
        assert_eq!(v["success"], false, "{q}: {v}");
    }
}

/// Over `http://`, an election's observer follows the server's change stream: with a 30 s fallback poll, a new
/// leader and each handover still show within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elections_observer_over_http_follows_the_servers_stream() {
    let s = TestServer::start(Warden::connect("memory://").await.expect("memory")).await;
    let remote = Warden::connect(&s.url("")).await.expect("http backend");
    let election = remote
        .election("billing-leader")
        .ttl(Duration::from_secs(30))
        .observe_every(Duration::from_secs(30));
    let mut seen = Box::pin(election.observe());
    let sec = Duration::from_secs(1);
    let first = tokio::time::timeout(sec, seen.next())
        .await
        .expect("the current state")
        .expect("item")
        .expect("ok");
    assert!(first.is_none(), "{first:?}");

    let a = election.campaign("node-a").await.expect("a leads");
    let led = tokio::time::timeout(sec, seen.next())
        .await
        .expect("a's term within a second")
        .expect("item")
        .expect("ok");
    let led = led.expect("a leader");
    assert_eq!(led.candidate_id, "node-a");
    assert_eq!(led.fencing_token, a.fencing_token());

    let b_campaign = {
        let e = election.clone();
        tokio::spawn(async move { e.campaign("node-b").await })
    };
    wait_queue_len(&client(), &s, &warden::election::election_resource("billing-leader"), 1).await;
    a.resign().await.expect("resign");
    let b = b_campaign.await.expect("task").expect("b leads");
    // Nobody may show for the instant between the terms; b's term must show within a second.
    let deadline = Instant::now() + sec;
    loop {
        let now = tokio::time::timeout_at(deadline, seen.next())
            .await
            .expect("b's term within a second")
            .expect("item")
            .expect("ok");
        if let Some(l) = now {
            assert_eq!(l.candidate_id, "node-b");
            assert_eq!(l.fencing_token, b.fencing_token());
            assert!(l.fencing_token > led.fencing_token);
            break;
        }
    }
}
