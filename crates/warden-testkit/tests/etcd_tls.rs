//! `etcd://…?ca=…&identity=…`: TLS to every member, with a client certificate for a cluster that requires one.

use warden_testkit::{tls_checks, EtcdCluster};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_over_tls_with_a_client_certificate() {
    let cluster = EtcdCluster::start_tls(1);
    let ca = cluster.ca_path().expect("ca").display().to_string();
    let identity = cluster.identity_path().expect("identity").display().to_string();
    let url = format!("{}?ca={ca}&identity={identity}&timeout_ms=2000", cluster.url());
    let a = warden_testkit::harness::test_client(&url).await;
    let b = warden_testkit::harness::test_client(&url).await;
    tls_checks::handoff_over_tls(&a, &b, "over-tls").await;

    // Another CA's server check fails with a sentence naming the certificate and the cluster.
    let other = EtcdCluster::start_tls(1);
    let wrong_ca = other.ca_path().expect("ca").display().to_string();
    tls_checks::refused_for_its_certificate(&format!(
        "{}?ca={wrong_ca}&identity={identity}&timeout_ms=1000",
        cluster.url()
    ))
    .await;
    // Without a client certificate the members refuse the connection.
    let r = warden::Warden::connect(&format!("{}?ca={ca}&timeout_ms=1000", cluster.url())).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1"), "{msg}");
    // Plain text to a TLS-only member is refused too, never hangs past the timeout.
    let r = warden::Warden::connect(&format!("{}?timeout_ms=1000", cluster.url())).await;
    assert!(r.is_err());
}
