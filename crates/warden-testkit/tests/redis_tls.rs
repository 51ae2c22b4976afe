//! `rediss://` and `redlock://…?ca=`: TLS-only redis-servers whose certificate the test's own CA signed. With that
//! CA (`ca=`), locks, waiting and wake-ups work over TLS; anything that would not check the server is refused with
//! a sentence.

use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::RedisServer;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_anything_that_would_not_check_the_server_is_refused() {
    let server = RedisServer::start_tls();
    let ca = server.ca_path().expect("CA").display().to_string();
    let url = format!("{}?ca={ca}&timeout_ms=2000", server.url());
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let a = Warden::connect(&url).await.expect("connect over TLS");
    let b = Warden::connect(&url).await.expect("a second client over TLS");
    let mut held = a.lock("tls").ttl(10 * SEC).acquire().await.expect("acquire over TLS");
    let waiter = tokio::spawn(async move { b.lock("tls").wait(5 * SEC).acquire().await });
    let queued = warden_testkit::eventually(5 * SEC, || async {
        a.inspect("tls").await.map(|i| i.queue.len()) == Ok(1)
    })
    .await;
    assert!(queued, "the waiter never queued");
    // The handoff reaches the other client through its subscriber connection, also over TLS.
    let released = Instant::now();
    held.release().await.expect("release");
    let g = tokio::time::timeout(2 * SEC, waiter)
        .await
        .expect("the waiter was never granted")
        .expect("task")
        .expect("granted");
    assert!(
        released.elapsed() < Duration::from_millis(250),
        "took {:?}",
        released.elapsed()
    );
    assert!(g.fencing_token() > held.fencing_token());

    let port = server.port();
    // Plain text to the TLS port: no answer a client could mistake for Redis.
    let r = Warden::connect(&format!("redis://127.0.0.1:{port}?timeout_ms=500")).await;
    assert!(matches!(r, Err(Error::BackendUnavailable { .. })), "{r:?}");
    // Another CA, and the system's roots (which do not know the test's CA): refused, naming the host.
    let other = RedisServer::start_tls();
    let wrong = other.ca_path().expect("CA").display().to_string();
    for url in [
        format!("{}?ca={wrong}&timeout_ms=2000", server.url()),
        format!("{}?timeout_ms=2000", server.url()),
    ] {
        let msg = Warden::connect(&url)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("127.0.0.1") && msg.contains("certificate"), "{url}: {msg}");
    }
    // Skipping the check is not offered, nor a CA on a plain connection.
    let r = Warden::connect(&format!("{}#insecure", server.url())).await;
    assert!(
        matches!(r, Err(Error::InvalidArgument { field: "backend", .. })),
        "{r:?}"
    );
    let r = Warden::connect(&format!("redis://127.0.0.1:{port}?ca={ca}")).await;
    assert!(matches!(r, Err(Error::InvalidArgument { field: "ca", .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redlock_over_three_tls_nodes_grants_hands_over_and_refuses_a_wrong_ca() {
    let first = RedisServer::start_tls();
    let nodes = [RedisServer::start_tls_like(&first), RedisServer::start_tls_like(&first)];
    let ca = first.ca_path().expect("CA").display().to_string();
    let hosts: Vec<String> = std::iter::once(&first).chain(&nodes).map(|n| n.addr()).collect();
    let url = format!("redlock://{}?ca={ca}&timeout_ms=500", hosts.join(","));
    let a = Warden::connect(&url).await.expect("connect to the TLS nodes");
    let b = Warden::connect(&url).await.expect("a second client");
    let mut held = a.lock("tls").ttl(10 * SEC).acquire().await.expect("a quorum over TLS");
    let waiter = tokio::spawn(async move { b.lock("tls").wait(5 * SEC).acquire().await });
    let queued = warden_testkit::eventually(5 * SEC, || async {
        a.inspect("tls").await.map(|i| i.queue.len()) == Ok(1)
    })
    .await;
    assert!(queued, "the waiter never queued");
    held.release().await.expect("release");
    let g = tokio::time::timeout(2 * SEC, waiter)
        .await
        .expect("the waiter was never granted")
        .expect("task")
        .expect("granted");
    assert!(g.fencing_token() > held.fencing_token());
    // Without the CA the nodes' certificates are not trusted: no quorum, a sentence naming a node.
    let r = Warden::connect(&format!("redlock://{}?tls=true&timeout_ms=500", hosts.join(","))).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1") && msg.contains("certificate"), "{msg}");
}
