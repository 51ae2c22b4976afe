//! `warden serve --backend mysql://…`: two service instances over one throwaway MariaDB behave as one service
//! (a waiter on one is woken by a release on the other), and a database that goes away is a 503
//! `backend_unavailable` the client can retry, until it returns.

mod common;

use common::Instance;
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::mysql_harness::MysqlHarness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_mariadb_hand_a_lock_over_and_survive_the_database_restarting() {
    let db = MysqlHarness::new();
    let a = Instance::start(db.url());
    let b = Instance::start(db.url());
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
    // Rung across instances by the release, not found by a poll.
    let handoff = at - released;
    assert!(handoff < Duration::from_millis(250), "handoff took {handoff:?}");
    assert!(granted.fencing_token() > holder.fencing_token());
    drop(granted);

    db.server.lock().expect("server").kill();
    let start = Instant::now();
    let r = on_a.lock("while-down").acquire().await;
    assert!(matches!(r, Err(Error::ServerBackendUnavailable { .. })), "{r:?}");
    assert!(r.as_ref().err().is_some_and(Error::is_retryable));
    assert!(start.elapsed() < Duration::from_secs(2), "took {:?}", start.elapsed());
    db.server.lock().expect("server").restart();
    let back = warden_testkit::eventually(Duration::from_secs(10), || async {
        on_a.lock("after").acquire().await.is_ok()
    })
    .await;
    assert!(back, "the service did not resume after the database came back");
}
