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
