//! `redis+sentinel://` across a failover (`SENTINEL FAILOVER`): warden follows the new primary without a restart,
//! a lock and its queue replicated before the failover carry on, and fences keep growing.

use std::time::{Duration, Instant};
use warden::Warden;
use warden_testkit::eventually;
use warden_testkit::redis_cluster::cli;
use warden_testkit::redis_sentinel::SentinelSet;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warden_follows_a_sentinel_failover_within_seconds() {
    let set = SentinelSet::start();
    let url = format!("{}?timeout_ms=500", set.url());
    let w = Warden::connect(&url).await.expect("connect through the sentinels");
    // A waiter whose queue lease outlasts the failover keeps its place without an attempt meanwhile.
    let b = Warden::connect(&url)
        .await
        .expect("a second client")
        .with_waiter_lease(20 * SEC)
        .expect("waiter lease");
    let mut held = w.lock("job").ttl(30 * SEC).acquire().await.expect("holder");
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.lock("job").ttl(10 * SEC).wait(30 * SEC).acquire().await })
    };
    assert!(
        eventually(5 * SEC, || async {
            w.inspect("job").await.map(|i| i.queue.len()) == Ok(1)
        })
        .await,
        "the waiter never queued"
    );
    let old = set.primary();
    assert_eq!(
        cli(set.nodes[old].port(), &["WAIT", "1", "2000"]).trim(),
        "1",
        "the replica has the lock"
    );

    let started = Instant::now();
    let new = set.failover();
    assert_ne!(new, old);
    // Within a few seconds the same client writes its locks on the new primary. (Until the sentinels demote the
    // old primary, a write it still takes is lost with it: the fence is what catches such a holder.)
    let mut n = 0;
    let probe = loop {
        n += 1;
        let name = format!("probe-{n}");
        if let Ok(Some(g)) = w.lock(&name).ttl(10 * SEC).try_acquire().await {
            if cli(set.nodes[new].port(), &["EXISTS", &name]).trim() == "1" {
                break g;
            }
        }
        assert!(
            started.elapsed() < 5 * SEC,
            "warden did not follow the failover within 5 s"
        );
    };
    assert!(probe.fencing_token() > held.fencing_token());

    // The replicated lock is released on the new primary, and its waiter is handed the lock.
    let fence = held.fencing_token();
    held.release().await.expect("release after the failover");
    let mut next = tokio::time::timeout(2 * SEC, waiter)
        .await
        .expect("the waiter granted after the failover")
        .unwrap()
        .expect("granted");
    assert!(next.fencing_token() > fence);
    next.release().await.unwrap();
    let health = w.health().await;
    assert_eq!(health.kind, "redis-sentinel");
    assert!(
        health
            .nodes
            .iter()
            .any(|n| n.address.ends_with(&set.nodes[new].port().to_string())),
        "{health:?}"
    );
    drop(probe);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_sentinel_set_with_its_ca_works_and_another_ca_is_refused() {
    let set = SentinelSet::start_tls();
    let ca = set.ca_path().expect("CA").display().to_string();
    let url = format!("{}?ca={ca}&timeout_ms=2000", set.url());
    assert!(url.starts_with("rediss+sentinel://"), "{url}");
    let a = Warden::connect(&url).await.expect("connect over TLS");
    let b = Warden::connect(&url).await.expect("a second client over TLS");
    warden_testkit::tls_checks::handoff_over_tls(&a, &b, "tls").await;
    let other = warden_testkit::RedisServer::start_tls();
    let wrong = other.ca_path().expect("CA").display().to_string();
    warden_testkit::tls_checks::refused_for_its_certificate(&format!("{}?ca={wrong}&timeout_ms=1000", set.url())).await;
}
