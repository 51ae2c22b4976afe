//! Many tasks of one process on one ZooKeeper session: writers and readers of one resource. Here a release
//! wakes the waiter behind it without the watch, and a waiter behind a released exclusive lease takes the lock
//! without reading the queue again; the holds must still never overlap wrongly, and the writers' counter must
//! stay exact.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warden::LockKind;
use warden_testkit::checker::{Hold, HoldLog};
use warden_testkit::zk_harness::ZkHarness;

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_and_writers_of_one_session_never_overlap_wrongly() {
    let h = ZkHarness::new();
    let w = warden_testkit::harness::test_client(h.url()).await;
    let log = Arc::new(HoldLog::default());
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..12u64 {
        let (w, log, counter) = (w.clone(), log.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..20u64 {
                let writer = (i + j) % 3 == 0;
                let kind = if writer { LockKind::Write } else { LockKind::Read };
                let mut g = w
                    .lock("rw")
                    .kind(kind)
                    .ttl(5 * SEC)
                    .wait(30 * SEC)
                    .acquire()
                    .await
                    .expect("acquire");
                let start = Instant::now();
                if writer {
                    // A read-modify-write that another writer inside at the same time would break.
                    let v = counter.load(Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    counter.store(v + 1, Ordering::SeqCst);
                } else {
                    tokio::task::yield_now().await;
                }
                log.record(Hold {
                    start,
                    end: Instant::now().min(g.valid_until()),
                    fence: g.fencing_token(),
                    exclusive: writer,
                });
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    let writes = (0..12u64)
        .flat_map(|i| (0..20u64).map(move |j| (i + j) % 3 == 0))
        .filter(|w| *w)
        .count() as u64;
    assert_eq!(counter.load(Ordering::SeqCst), writes, "a write was lost");
    assert_eq!(log.holds().len(), 240);
    log.assert_consistent();
}

/// A `Warden` dropped while one of its waiters watches a node closes its session: its connection to the
/// server goes (a watch left pending does not keep the session, and so its nodes, alive).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_client_closes_its_session() {
    let h = ZkHarness::new();
    let connections = || {
        let srvr = h.ensemble.lock().expect("ensemble").ask(0, "srvr").unwrap_or_default();
        srvr.lines()
            .find_map(|l| l.strip_prefix("Connections: "))
            .and_then(|n| n.trim().parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    };
    let a = warden_testkit::harness::test_client(h.url()).await;
    let _held = a.lock("watched").ttl(10 * SEC).acquire().await.expect("holder");
    let before = connections();
    let b = warden_testkit::harness::test_client(h.url()).await;
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.lock("watched").wait(30 * SEC).acquire().await });
    assert!(
        warden_testkit::eventually(5 * SEC, || async {
            a.inspect("watched").await.is_ok_and(|r| r.queue.len() == 1)
        })
        .await,
        "the waiter never queued"
    );
    assert_eq!(connections(), before + 1);
    waiter.abort();
    let _ = waiter.await;
    drop(b);
    assert!(
        warden_testkit::eventually(5 * SEC, || async { connections() == before }).await,
        "the dropped client's session stayed open ({} connections, {before} before)",
        connections()
    );
}
