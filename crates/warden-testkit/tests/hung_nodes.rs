//! A hung node (SIGSTOP) is a timeout, never a stall: every call returns within the configured per-node
//! timeout plus a small margin, and once the node resumes every operation completes normally on the same
//! connections.

use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::harness::RedlockHarness;
use warden_testkit::RedisServer;

/// The per-node timeout the tests configure.
const TIMEOUT: Duration = Duration::from_millis(200);
/// The stated margin over it: scheduling and the reply's parsing (see the README's reliability section).
const MARGIN: Duration = Duration::from_millis(100);
const SEC: Duration = Duration::from_secs(1);

/// Runs `f`, returns its output and how long it took.
async fn timed<T>(f: impl std::future::Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

fn within_bound(what: &str, took: Duration) {
    assert!(
        took <= TIMEOUT + MARGIN,
        "{what} took {took:?} with a hung node; the bound is {TIMEOUT:?} + {MARGIN:?}"
    );
}

/// Every kind of call against a backend whose only node (or whose Redlock majority) is hung: each fails
/// within the bound, with an error that says the backend is unavailable.
async fn every_call_is_bounded(w: &Warden, held_id: &str) {
    let (r, took) = timed(w.lock("hung:try").try_acquire()).await;
    assert!(r.as_ref().is_err_and(Error::is_retryable), "try_acquire: {r:?}");
    within_bound("try_acquire", took);
    let (r, took) = timed(w.lock("hung:wait").wait(5 * SEC).acquire()).await;
    assert!(r.as_ref().is_err_and(Error::is_retryable), "acquire: {r:?}");
    within_bound("a waiting acquire", took);
    let (r, took) = timed(w.renew(held_id, Some(5 * SEC), None)).await;
    assert!(r.is_err(), "renew: {r:?}");
    within_bound("renew", took);
    let (r, took) = timed(w.lease(held_id)).await;
    assert!(r.is_err(), "status: {r:?}");
    within_bound("status", took);
    let (r, took) = timed(w.inspect("hung:held")).await;
    assert!(r.is_err(), "inspect: {r:?}");
    within_bound("inspect", took);
    let (_, took) = timed(w.health()).await;
    within_bound("health", took);
    // A release needs no quorum to answer: a node that released is enough (the hung ones are released when
    // they come back); with none reachable it is an error.
    let (_, took) = timed(w.release(held_id, None)).await;
    within_bound("release", took);
}

/// After the node resumes: a full cycle on many resources at once completes, promptly.
async fn everything_completes(w: &Warden) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..50 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            let mut g = w
                .lock(format!("after:{i}"))
                .ttl(5 * SEC)
                .wait(2 * SEC)
                .acquire()
                .await
                .expect("acquire after the node resumed");
            g.renew(5 * SEC).await.expect("renew after the node resumed");
            g.release().await.expect("release after the node resumed");
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert!(started.elapsed() < 2 * SEC, "took {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_redis_is_a_timeout_and_its_connection_recovers() {
    let server = RedisServer::start();
    let w = Warden::connect(&format!("{}?timeout_ms={}", server.url(), TIMEOUT.as_millis()))
        .await
        .expect("connect");
    let held = w
        .lock("hung:held")
        .ttl(30 * SEC)
        .acquire_lease()
        .await
        .expect("acquire before the pause");
    server.pause();
    every_call_is_bounded(&w, &held.lock_id).await;
    // Calls queued on the multiplexed connection while the node is hung...
    let stuck: Vec<_> = (0..20)
        .map(|i| {
            let w = w.clone();
            tokio::spawn(async move { w.lock(format!("stuck:{i}")).try_acquire().await.map(|g| g.is_some()) })
        })
        .collect();
    for t in stuck {
        let r = t.await.expect("task");
        assert!(r.is_err(), "a call to a hung node succeeded: {r:?}");
    }
    server.resume();
    // ...do not wedge the ones after the node is back.
    everything_completes(&w).await;
    // The release sent during the pause timed out, but it was on the wire: the node applied it on waking.
    let r = w.release(&held.lock_id, None).await;
    assert!(matches!(r, Err(Error::NotFound { .. })), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_redlock_minority_costs_nothing_and_a_hung_majority_is_a_timeout() {
    let h = RedlockHarness::with_nodes(3);
    let url = h
        .url()
        .replace("timeout_ms=100", &format!("timeout_ms={}", TIMEOUT.as_millis()));
    let w = Warden::connect(&url).await.expect("connect");
    let held = w
        .lock("hung:held")
        .ttl(30 * SEC)
        .acquire_lease()
        .await
        .expect("acquire before the pause");
    // One node hung: a quorum still answers, and no call waits for the hung node.
    h.nodes[2].lock().expect("node").pause();
    let mut worst = Duration::ZERO;
    for i in 0..30 {
        let (g, took) = timed(w.lock(format!("minority:{i}")).ttl(5 * SEC).acquire()).await;
        worst = worst.max(took);
        let mut g = g.expect("acquire with one node hung");
        let (r, took) = timed(g.release()).await;
        r.expect("release with one node hung");
        worst = worst.max(took);
    }
    assert!(
        worst < TIMEOUT,
        "with one of three nodes hung, a call took {worst:?}: it waited for the hung node"
    );
    // A client that starts while the node is hung connects within one timeout and is as fast at once.
    let (fresh, took) = timed(Warden::connect(&url)).await;
    let fresh = fresh.expect("connect with one node hung");
    within_bound("connecting", took);
    let mut worst = Duration::ZERO;
    for i in 0..10 {
        let (g, took) = timed(fresh.lock(format!("fresh:{i}")).ttl(5 * SEC).acquire()).await;
        worst = worst.max(took);
        g.expect("acquire with one node hung").release().await.expect("release");
    }
    assert!(
        worst < TIMEOUT,
        "a new client's acquire took {worst:?} with one node hung"
    );
    // A majority hung: every call is a bounded timeout.
    h.nodes[1].lock().expect("node").pause();
    every_call_is_bounded(&w, &held.lock_id).await;
    h.nodes[1].lock().expect("node").resume();
    h.nodes[2].lock().expect("node").resume();
    everything_completes(&w).await;
}
