//! Shared by the `warden serve` tests over a shared store (a SQL database, a Redis Cluster): two instances over one store behave as one service.

use crate::common::Instance;
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};

/// Two instances over the store at `backend` (with `timeout_ms=500`): a waiter on one is rung by a release on
/// the other within 250 ms; while the database is down (`down`) a call is a retryable 503 within 2 s; once it is
/// back (`up`) the service serves again, without restarting.
pub async fn two_instances_hand_a_lock_over_and_survive_the_database_restarting(
    backend: &str,
    down: impl FnOnce(),
    up: impl FnOnce(),
) {
    let a = Instance::start(backend);
    let b = Instance::start(backend);
    let on_a = Warden::connect(&a.url).await.expect("client of A");
    let on_b = Warden::connect(&b.url).await.expect("client of B");
    let mut holder = on_a
        .lock("shift")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("holder on A");
    let waiter = tokio::spawn(async move {
        let g = on_b.lock("shift").wait(Duration::from_secs(10)).acquire().await;
        (g, Instant::now())
    });
    let queued = warden_testkit::eventually(Duration::from_secs(5), || async {
        on_a.inspect("shift").await.map(|i| i.queue.len()) == Ok(1)
    })
    .await;
    assert!(queued, "the waiter on B never showed in the queue seen from A");
    let released = Instant::now();
    holder.release().await.expect("release on A");
    let (granted, at) = waiter.await.expect("waiter task");
    let granted = granted.expect("the waiter on B was granted");
    // Woken across instances by the database's notification, not by a poll.
    let handoff = at - released;
    assert!(handoff < Duration::from_millis(250), "handoff took {handoff:?}");
    assert!(granted.fencing_token() > holder.fencing_token());
    assert_eq!(on_a.health().await.kind, "http");
    drop(granted);

    down();
    let start = Instant::now();
    let r = on_a.lock("while-down").acquire().await;
    assert!(matches!(r, Err(Error::ServerBackendUnavailable { .. })), "{r:?}");
    assert!(r.as_ref().err().is_some_and(Error::is_retryable));
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    up();
    let back = warden_testkit::eventually(Duration::from_secs(10), || async {
        on_a.lock("after").acquire().await.is_ok()
    })
    .await;
    assert!(back, "the service did not resume after the database came back");
}
