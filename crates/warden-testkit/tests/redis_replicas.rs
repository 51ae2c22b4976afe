//! `redis://…?replicas=1&wait_ms=…`: every operation counts only once a replica acknowledged its writes (`WAIT`).
//! With the replica up, locks work as usual; with it stopped, a grant fails fast (retryable) instead of counting
//! on writes a failover could lose, and the lock is not left held once the replica is back.

use redis::AsyncCommands;
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::RedisServer;

const SEC: Duration = Duration::from_secs(1);

/// Whether the primary at `url` has `n` replicas connected and past their initial sync.
async fn replicas_connected(url: &str, n: usize) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let Ok(mut c) = client.get_multiplexed_async_connection().await else {
        return false;
    };
    let info: String = redis::cmd("INFO")
        .arg("replication")
        .query_async(&mut c)
        .await
        .unwrap_or_default();
    info.lines()
        .filter(|l| l.starts_with("slave") && l.contains("state=online"))
        .count()
        == n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_count_only_once_a_replica_has_them() {
    let primary = RedisServer::start();
    let port = primary.port().to_string();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port]);
    let primary_url = primary.url();
    let linked = warden_testkit::eventually(10 * SEC, || replicas_connected(&primary_url, 1)).await;
    assert!(linked, "the replica never connected");
    // A generous wait where the replica is up (a loaded machine may take a while to acknowledge), a short one
    // where it is stopped, so the failure shows within a second.
    let url = format!("{}?replicas=1&wait_ms=3000&timeout_ms=5000", primary.url());
    let stalled_url = format!("{}?replicas=1&wait_ms=100&timeout_ms=1000", primary.url());
    let w = Warden::connect(&url).await.expect("connect");
    let impatient = Warden::connect(&stalled_url).await.expect("connect");
    let mut g = w
        .lock("durable")
        .ttl(10 * SEC)
        .acquire()
        .await
        .expect("acquire with a replica");
    // The grant is on the replica already.
    let client = redis::Client::open(replica.url()).expect("replica client");
    let mut c = client.get_multiplexed_async_connection().await.expect("replica");
    let on_replica: Option<String> = c.get("durable").await.expect("GET on the replica");
    assert!(on_replica.is_some(), "the replica does not have the lock key");
    g.release().await.expect("release");

    replica.pause();
    let started = Instant::now();
    let r = impatient.lock("stalled").ttl(10 * SEC).acquire().await;
    match &r {
        Err(Error::BackendUnavailable { reason, .. }) => {
            assert!(reason.contains("replicas"), "{reason}")
        }
        other => panic!("expected a retryable error, got {other:?}"),
    }
    assert!(started.elapsed() < SEC, "took {:?}", started.elapsed());
    replica.resume();
    // The failed attempt's grant is released once the replica acknowledges again.
    let other = Warden::connect(&url).await.expect("connect");
    let freed = warden_testkit::eventually(10 * SEC, || async {
        other.lock("stalled").try_acquire().await.is_ok_and(|g| g.is_some())
    })
    .await;
    assert!(freed, "the lock of the failed grant stayed held");
}
