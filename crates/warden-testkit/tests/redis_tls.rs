//! `rediss://` and `redlock://…?ca=`: TLS-only redis-servers whose certificate the test's own CA signed. With that
//! CA (`ca=`), locks, waiting and wake-ups work over TLS; anything that would not check the server is refused with
//! a sentence.

use warden::{Error, Warden};
use warden_testkit::tls_checks::{handoff_over_tls, refused_for_its_certificate};
use warden_testkit::RedisServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_anything_that_would_not_check_the_server_is_refused() {
    let server = RedisServer::start_tls();
    let ca = server.ca_path().expect("CA").display().to_string();
    let url = format!("{}?ca={ca}&timeout_ms=2000", server.url());
    assert!(url.starts_with("rediss://127.0.0.1:"), "{url}");
    let a = Warden::connect(&url).await.expect("connect over TLS");
    let b = Warden::connect(&url).await.expect("a second client over TLS");
    handoff_over_tls(&a, &b, "tls").await;

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
        refused_for_its_certificate(&url).await;
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
    handoff_over_tls(&a, &b, "tls").await;
    // Without the CA the nodes' certificates are not trusted: no quorum, a sentence naming a node.
    refused_for_its_certificate(&format!("redlock://{}?tls=true&timeout_ms=500", hosts.join(","))).await;
}
