//! Redlock under faults, with real redis-server processes: nodes killed, paused, restarted without data,
//! keys expired behind the holder's back.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::harness::{Counter, Harness, LocalCounter, RedlockHarness};

const SEC: Duration = Duration::from_secs(1);

async fn contended_increments(w: &Warden, workers: u64, each: u64) -> u64 {
    let counter = Arc::new(LocalCounter::default());
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (w, counter) = (w.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..each {
                let mut g = w
                    .lock("counter")
                    .ttl(5 * SEC)
                    .wait(30 * SEC)
                    .acquire()
                    .await
                    .expect("acquire");
                let v = counter.get().await;
                counter.set(v + 1).await;
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    counter.get().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minority_down_still_grants_with_mutual_exclusion() {
    let h = RedlockHarness::with_nodes(5);
    let w = h.client().await;
    h.nodes[1].lock().unwrap().kill();
    h.nodes[3].lock().unwrap().kill();
    assert_eq!(contended_increments(&w, 8, 25).await, 200);
    let health = w.health().await;
    assert_eq!(health.quorum, Some(true));
    assert_eq!(health.nodes.iter().filter(|n| n.reachable).count(), 3);
    assert!(matches!(health.status, warden::HealthStatus::Degraded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn majority_down_fails_fast_and_recovers() {
    let h = RedlockHarness::with_nodes(5);
    let w = h.client().await;
    let mut g = w.lock("m").try_acquire().await.unwrap().expect("free");
    g.release().await.unwrap();
    for i in [0, 2, 4] {
        h.nodes[i].lock().unwrap().kill();
    }
    let started = Instant::now();
    let r = w.lock("m").wait(10 * SEC).acquire().await;
    let took = started.elapsed();
    match &r {
        Err(Error::QuorumUnavailable {
            reachable,
            total,
            needed,
            unreachable,
            ..
        }) => {
            assert_eq!((*reachable, *total, *needed), (2, 5, 3));
            for i in [0, 2, 4] {
                let addr = h.nodes[i].lock().unwrap().addr();
                assert!(unreachable.contains(&addr), "{unreachable} lacks {addr}");
            }
        }
        other => panic!("expected QuorumUnavailable, got {other:?}"),
    }
    assert!(
        took < 600 * Duration::from_millis(1),
        "took {took:?}: must fail within the per-node timeout"
    );
    assert!(r.unwrap_err().is_retryable());
    assert_eq!(w.health().await.quorum, Some(false));
    for i in [0, 2, 4] {
        h.nodes[i].lock().unwrap().restart(false);
    }
    // The nodes' connections reconnect in the background within a few hundred milliseconds.
    let resumed = warden_testkit::eventually(5 * SEC, || async {
        match w.lock("m").try_acquire().await {
            Ok(Some(mut g)) => g.release().await.is_ok(),
            _ => false,
        }
    })
    .await;
    assert!(resumed, "service did not resume after the nodes came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_node_does_not_slow_acquire() {
    let h = RedlockHarness::new(); // per-node timeout 100 ms
    let w = h.client().await;
    let mut g = w.lock("warm").try_acquire().await.unwrap().expect("free");
    g.release().await.unwrap();
    h.nodes[2].lock().unwrap().pause();
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let started = Instant::now();
        let mut g = w
            .lock(format!("s{i}"))
            .try_acquire()
            .await
            .unwrap()
            .expect("granted by two of three");
        worst = worst.max(started.elapsed());
        g.release().await.unwrap();
    }
    h.nodes[2].lock().unwrap().resume();
    assert!(
        worst < Duration::from_millis(100),
        "acquire took {worst:?} with one node stopped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fencing_never_repeats_across_minority_restarts_without_data() {
    let h = RedlockHarness::with_nodes(5);
    let w = h.client().await;
    let mut last = 0u64;
    for round in 0..30 {
        if round % 5 == 4 {
            // A rotating minority loses its data.
            for i in [round % 5, (round + 2) % 5] {
                h.nodes[i].lock().unwrap().restart(false);
            }
        }
        let mut g = w.lock("fenced").wait(5 * SEC).acquire().await.expect("acquire");
        assert!(
            g.fencing_token() > last,
            "round {round}: fence {} after {last}",
            g.fencing_token()
        );
        last = g.fencing_token();
        g.release().await.expect("release");
    }
}

/// The protected resource: accepts a write only with a token at least as high as the highest seen.
#[derive(Default)]
struct FencedStore(AtomicU64);

impl FencedStore {
    fn write(&self, fence: u64) -> bool {
        self.0.fetch_max(fence, Ordering::SeqCst) <= fence
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_lost_behind_the_holder_are_caught_by_fencing() {
    let h = RedlockHarness::new();
    let a = h.client().await;
    let b = h.client().await;
    let store = FencedStore::default();
    let ga = a.lock("doc").ttl(3 * SEC).acquire().await.expect("a");
    assert!(store.write(ga.fencing_token()));
    // One node forgets (a forward clock jump): a majority still holds A's lease, B cannot get it.
    h.nodes[0].lock().unwrap().command(&["PEXPIRE", "doc", "1"]).unwrap();
    assert!(
        b.lock("doc").try_acquire().await.unwrap().is_none(),
        "B granted while a majority holds A"
    );
    // A second node forgets: now the timing model is broken and B may get the lock...
    h.nodes[1].lock().unwrap().command(&["PEXPIRE", "doc", "1"]).unwrap();
    let mut gb = b
        .lock("doc")
        .wait(3 * SEC)
        .acquire()
        .await
        .expect("b after the majority lost A");
    assert!(gb.fencing_token() > ga.fencing_token());
    assert!(store.write(gb.fencing_token()));
    // ...but A's late write is rejected by its fencing token, and A learns it lost the lease.
    assert!(!store.write(ga.fencing_token()), "stale write accepted");
    tokio::time::timeout(3 * SEC, ga.lost()).await.expect("A's lost signal");
    gb.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_acquire_leaves_no_stray_keys() {
    let h = RedlockHarness::new();
    let w = h.client().await;
    // A foreign holder on two of three nodes: warden can win only the third, which it must undo.
    for i in [0, 1] {
        let r = h.nodes[i]
            .lock()
            .unwrap()
            .command(&["SET", "split", "foreign", "PX", "60000"])
            .unwrap();
        assert_eq!(r, "+OK");
    }
    for _ in 0..5 {
        assert!(w.lock("split").try_acquire().await.unwrap().is_none());
    }
    // The lease records of the resource's slot.
    let records = format!("{{{}}}\x01h", warden::backend::redis::keys::tag_for("split"));
    let clean = warden_testkit::eventually(2 * SEC, || async {
        let third = h.nodes[2].lock().unwrap().command(&["EXISTS", "split"]).unwrap();
        let leases = h.nodes[2].lock().unwrap().command(&["HLEN", &records]).unwrap();
        third == ":0" && leases == ":0"
    })
    .await;
    assert!(
        clean,
        "the failed attempts left a key or a lease record on the third node"
    );
    for i in [0, 1] {
        let v = h.nodes[i].lock().unwrap().command(&["EXISTS", "split"]).unwrap();
        assert_eq!(v, ":1", "foreign holder disturbed on node {i}");
    }
    // A waiter, given up at its deadline, leaves nothing behind either.
    let r = w.lock("split").wait(Duration::from_millis(200)).acquire().await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    let clean = warden_testkit::eventually(2 * SEC, || async {
        h.on_each(&["HLEN", &records])
            .iter()
            .all(|r| r.as_deref() == Some(":0"))
            && h.nodes[2].lock().unwrap().command(&["EXISTS", "split"]).unwrap() == ":0"
    })
    .await;
    assert!(clean, "a timed-out waiter left a grant behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiters_are_served_in_arrival_order_while_nodes_are_healthy() {
    let h = RedlockHarness::new();
    let clients = [h.client().await, h.client().await];
    let mut holder = clients[0].lock("q").ttl(10 * SEC).acquire().await.unwrap();
    let order = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..8usize {
        let (w, order) = (clients[i % 2].clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let mut g = w
                .lock("q")
                .ttl(10 * SEC)
                .wait(20 * SEC)
                .acquire()
                .await
                .expect("waiter");
            order.lock().unwrap().push(i);
            g.release().await.expect("release");
        }));
        let probe = clients[0].clone();
        assert!(
            warden_testkit::eventually(5 * SEC, || async {
                probe
                    .inspect("q")
                    .await
                    .map(|r| r.queue.len() == i + 1)
                    .unwrap_or(false)
            })
            .await
        );
    }
    holder.release().await.unwrap();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock().unwrap(), (0..8).collect::<Vec<_>>());
}

fn evalsha_calls(h: &RedlockHarness) -> u64 {
    h.nodes.iter().map(|n| n.lock().unwrap().command_calls("evalsha")).sum()
}

/// A client remembers the fence of its last grant of a resource and offers the next grant above it without
/// reading the fence first (one round: one script per node); a hint gone stale through another client's
/// grant falls back to reading the fence, and tokens still strictly increase.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fence_hint_skips_the_read_and_recovers_when_stale() {
    let h = RedlockHarness::with_nodes(3);
    let a = h.client().await;
    let b = h.client().await;
    let mut g = a.lock("hint").try_acquire().await.unwrap().expect("free");
    let mut last = g.fencing_token();
    g.release().await.unwrap();
    for n in &h.nodes {
        n.lock().unwrap().command(&["CONFIG", "RESETSTAT"]).unwrap();
    }
    let mut g = a.lock("hint").try_acquire().await.unwrap().expect("free");
    assert_eq!(
        evalsha_calls(&h),
        3,
        "a repeated grant should need one script per node, no fence read"
    );
    assert!(g.fencing_token() > last);
    last = g.fencing_token();
    g.release().await.unwrap();
    for round in 0..6 {
        let w = if round % 2 == 0 { &b } else { &a };
        let mut g = w.lock("hint").try_acquire().await.unwrap().expect("free");
        assert!(
            g.fencing_token() > last,
            "round {round}: {} after {last}",
            g.fencing_token()
        );
        last = g.fencing_token();
        g.release().await.unwrap();
    }
}

/// `EXISTS key` on node `i` (through no proxy): 1 or 0.
fn exists(h: &RedlockHarness, i: usize, key: &str) -> String {
    h.nodes[i].lock().unwrap().command(&["EXISTS", key]).expect("EXISTS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_reaches_a_node_that_was_unreachable_when_it_was_asked() {
    let h = RedlockHarness::behind_proxies(3);
    let w = h.client().await;
    let mut g = w
        .lock("handed-back")
        .ttl(20 * SEC)
        .try_acquire()
        .await
        .unwrap()
        .expect("free");
    // The grant returns on a quorum; the last node's grant completes in the background.
    let everywhere = warden_testkit::eventually(3 * SEC, || async {
        (0..3).all(|i| exists(&h, i, "handed-back") == ":1")
    })
    .await;
    assert!(everywhere, "not granted on every node");
    // Node 2's link goes down just before the release: a quorum still releases...
    h.proxies[2].refuse();
    g.release().await.expect("released on a quorum");
    assert_eq!(exists(&h, 0, "handed-back"), ":0");
    assert_eq!(exists(&h, 1, "handed-back"), ":0");
    assert_eq!(
        exists(&h, 2, "handed-back"),
        ":1",
        "node 2 cannot have been reached yet"
    );
    // ...and node 2 is released as soon as it can be reached again, long before the 20 s lease would end.
    // (The outage lasts longer than every per-call timeout and connection retry, so only a release that keeps
    // trying gets through.)
    tokio::time::sleep(Duration::from_millis(800)).await;
    h.proxies[2].pass(Duration::ZERO);
    let started = Instant::now();
    let gone = warden_testkit::eventually(3 * SEC, || async { exists(&h, 2, "handed-back") == ":0" }).await;
    assert!(
        gone,
        "node 2 still holds the released lock {:?} after it came back",
        started.elapsed()
    );
    // Then node 0 dies: the resource is free on the two that are left, at once.
    h.nodes[0].lock().unwrap().kill();
    let g = w.lock("handed-back").ttl(5 * SEC).try_acquire().await.unwrap();
    assert!(
        g.is_some(),
        "the resource stayed blocked although its holder released it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_release_reaches_every_node_under_a_slow_minority() {
    // One node answers 20 ms late: every call returns on the two fast nodes, and the slow node's share of
    // each release must still arrive: 10 workers, 30 cycles each, on 10 resources.
    let h = RedlockHarness::behind_proxies(3);
    let w = h.client().await;
    h.proxies[2].pass(Duration::from_millis(20));
    let mut tasks = Vec::new();
    for k in 0..10 {
        let w = w.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                let mut g = w
                    .lock(format!("cycle:{k}"))
                    .ttl(30 * SEC)
                    .wait(10 * SEC)
                    .acquire()
                    .await
                    .expect("acquire");
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    let left = warden_testkit::eventually(3 * SEC, || async {
        (0..10).all(|k| exists(&h, 2, &format!("cycle:{k}")) == ":0")
    })
    .await;
    let keys: Vec<String> = (0..10).map(|k| exists(&h, 2, &format!("cycle:{k}"))).collect();
    assert!(left, "released locks left behind on the slow node: {keys:?}");
}
