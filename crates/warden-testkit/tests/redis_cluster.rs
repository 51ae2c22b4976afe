//! Redis Cluster under faults: a primary SIGKILLed while locks are held and waiters queued, a slot moved to
//! another primary with a lock and a queue in it, keys of every script in one slot.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warden::Warden;
use warden_testkit::redis_cluster::cli;
use warden_testkit::{eventually, RedisCluster};

const SEC: Duration = Duration::from_secs(1);

/// A store that takes a write only with a fence at least as high as every fence it took before.
#[derive(Default)]
struct FencedStore(AtomicU64);

impl FencedStore {
    fn write(&self, fence: u64) -> bool {
        self.0.fetch_max(fence, Ordering::SeqCst) <= fence
    }
}

/// The first resource name `stem-N` whose slot node `node` serves, and that slot.
fn resource_on(c: &RedisCluster, node: usize, stem: &str) -> (String, u16) {
    (0..10_000)
        .map(|i| format!("{stem}-{i}"))
        .map(|r| {
            let s = c.keyslot(&r);
            (r, s)
        })
        .find(|(_, s)| c.owner_of(*s) == node)
        .expect("a resource on every primary")
}

async fn client(c: &RedisCluster) -> Warden {
    Warden::connect(&format!("{}?timeout_ms=300", c.url()))
        .await
        .expect("connect to the cluster")
        .with_waiter_lease(Duration::from_millis(500))
        .expect("waiter lease")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_primary_fails_over_and_fencing_catches_the_lease_it_lost() {
    let mut c = RedisCluster::start(3, 1, Duration::from_millis(1000));
    let primaries: Vec<usize> = (0..3).collect();
    let (lost_res, lost_slot) = resource_on(&c, primaries[0], "lost");
    let (queued_res, _) = resource_on(&c, primaries[0], "queued");
    let (other_res, _) = resource_on(&c, primaries[1], "other");
    let (third_res, _) = resource_on(&c, primaries[2], "third");
    let w = client(&c).await;
    let b = client(&c).await;
    // A waiter whose queue lease outlasts the failover: it keeps its place without an attempt meanwhile.
    let patient = client(&c).await.with_waiter_lease(20 * SEC).expect("waiter lease");

    // On the primary that will fail: a lock with a waiter queued behind it, replicated before the crash...
    let mut queued = w
        .lock(&queued_res)
        .ttl(30 * SEC)
        .acquire()
        .await
        .expect("queued holder");
    let qw = {
        let b = patient.clone();
        let r = queued_res.clone();
        tokio::spawn(async move { b.lock(&r).ttl(10 * SEC).wait(30 * SEC).acquire().await })
    };
    // ...and on the other primaries, locks with waiters too.
    let mut other = w.lock(&other_res).ttl(30 * SEC).acquire().await.expect("other holder");
    let ow = {
        let b = b.clone();
        let r = other_res.clone();
        tokio::spawn(async move { b.lock(&r).ttl(10 * SEC).wait(30 * SEC).acquire().await })
    };
    let third = w.lock(&third_res).ttl(30 * SEC).acquire().await.expect("third holder");
    assert!(
        eventually(5 * SEC, || async {
            let q = w.inspect(&queued_res).await.map(|i| i.queue.len()).unwrap_or(0);
            let o = w.inspect(&other_res).await.map(|i| i.queue.len()).unwrap_or(0);
            q == 1 && o == 1
        })
        .await,
        "the waiters never queued"
    );
    let victim = primaries[0];
    let replica = c.replica_of(victim).expect("the primary has a replica");
    assert_eq!(
        cli(c.nodes[victim].port(), &["WAIT", "1", "2000"]).trim(),
        "1",
        "the replica has the queue"
    );

    // A lease the replica never sees: its link to the primary is cut (it is told a password the primary does
    // not have, so it cannot link again) while the lock is granted, and the primary dies before it links again.
    cli(
        c.nodes[replica].port(),
        &["CONFIG", "SET", "masterauth", "not-the-password"],
    );
    cli(c.nodes[replica].port(), &["CLIENT", "KILL", "TYPE", "master"]);
    assert!(
        eventually(5 * SEC, || async {
            cli(c.nodes[replica].port(), &["INFO", "replication"]).contains("master_link_status:down")
        })
        .await,
        "the replica's link stayed up"
    );
    let store = FencedStore::default();
    let stale = w
        .lock(&lost_res)
        .ttl(3 * SEC)
        .acquire()
        .await
        .expect("the lease that will be lost");
    assert!(store.write(stale.fencing_token()));
    let before = stale.fencing_token().max(queued.fencing_token());
    c.nodes[victim].kill();

    // The other shards are untouched while the failover runs.
    let started = Instant::now();
    third
        .renew(30 * SEC)
        .await
        .expect("renew on a healthy shard during the failover");
    other
        .release()
        .await
        .expect("release on a healthy shard during the failover");
    let handed = tokio::time::timeout(5 * SEC, ow)
        .await
        .expect("the waiter on a healthy shard is granted during the failover")
        .unwrap()
        .expect("granted");
    assert!(started.elapsed() < 2 * SEC, "a healthy shard waited for the failover");

    // The replica is promoted; the failed slot serves again, without a new client.
    c.wait_ok();
    assert_eq!(c.owner_of(lost_slot), replica, "the replica took over");
    // Until the promotion the slot answers 503; a loop of bounded attempts, not a sleep.
    let deadline = Instant::now() + 10 * SEC;
    let mut fresh = loop {
        match b.lock(&lost_res).ttl(10 * SEC).wait(SEC).acquire().await {
            Ok(g) => break g,
            Err(e) => assert!(Instant::now() < deadline, "the failed slot never served again: {e}"),
        }
    };
    // The lost lease's holder hears it, its fence is below the new holder's, and its late write is refused.
    assert!(fresh.fencing_token() > before, "fences went back after the failover");
    assert!(store.write(fresh.fencing_token()));
    assert!(
        !store.write(stale.fencing_token()),
        "the stale holder's write was taken"
    );
    tokio::time::timeout(5 * SEC, stale.lost())
        .await
        .expect("the stale holder's lost signal");

    // The replicated queue survived: releasing its holder hands the lock to the waiter.
    queued
        .release()
        .await
        .expect("release the replicated lease on the new primary");
    // Woken by the release (its subscription followed the slot to the new primary), not by its own timer.
    let handed_after = tokio::time::timeout(2 * SEC, qw)
        .await
        .expect("the queued waiter granted after the failover")
        .unwrap()
        .expect("granted");
    assert!(handed_after.fencing_token() > before);
    fresh.release().await.unwrap();
    drop((handed, handed_after, third));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_moves_with_its_lock_and_queue() {
    let c = RedisCluster::start(3, 0, Duration::from_millis(2000));
    let (res, slot) = resource_on(&c, 0, "moving");
    let w = client(&c).await;
    let b = client(&c).await;
    let mut holder = w.lock(&res).ttl(10 * SEC).acquire().await.expect("holder");
    let waiter = {
        let b = b.clone();
        let r = res.clone();
        tokio::spawn(async move { b.lock(&r).ttl(10 * SEC).wait(30 * SEC).acquire().await })
    };
    assert!(
        eventually(5 * SEC, || async {
            w.inspect(&res).await.map(|i| i.queue.len() == 1).unwrap_or(false)
        })
        .await,
        "the waiter never queued"
    );
    c.move_slot(slot, 1);
    assert_eq!(c.owner_of(slot), 1);
    // Renew, inspect and release find the lease on its new primary; the queue moved with it.
    holder.renew(10 * SEC).await.expect("renew after the move");
    let info = w.inspect(&res).await.expect("inspect after the move");
    assert_eq!((info.holders.len(), info.queue.len()), (1, 1));
    let fence = holder.fencing_token();
    holder.release().await.expect("release after the move");
    let mut next = tokio::time::timeout(5 * SEC, waiter)
        .await
        .expect("the waiter granted after the move")
        .unwrap()
        .expect("granted");
    assert!(next.fencing_token() > fence);
    next.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_a_lock_touches_is_in_its_resource_slot() {
    let c = RedisCluster::start(3, 0, Duration::from_millis(2000));
    let w = client(&c).await;
    for res in ["plain", "{user7}:cart", "a{b", "{}x", "x{}{y}"] {
        let slot = c.keyslot(res);
        let owner = c.nodes[c.owner_of(slot)].port();
        let mut g = w.lock(res).ttl(10 * SEC).acquire().await.expect("acquire");
        let t = {
            let w = w.clone();
            tokio::spawn(async move { w.lock(res).ttl(10 * SEC).wait(10 * SEC).acquire().await })
        };
        assert!(
            eventually(5 * SEC, || async {
                w.inspect(res).await.map(|i| i.queue.len() == 1).unwrap_or(false)
            })
            .await
        );
        // Every key on the owner (the only one holding keys here) is in the resource's slot.
        let keys: HashSet<String> = cli(owner, &["KEYS", "*"]).lines().map(str::to_string).collect();
        assert!(keys.len() >= 3, "{keys:?}");
        for k in &keys {
            if k.contains("warden}:") {
                continue; // the statistics hash, written once a second by the process
            }
            assert_eq!(c.keyslot(k), slot, "{k:?} of {res}");
        }
        g.release().await.unwrap();
        t.await.unwrap().expect("waiter").release().await.unwrap();
        for n in &c.nodes {
            cli(n.port(), &["FLUSHALL"]);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_with_its_ca_works_and_another_ca_is_refused() {
    let c = RedisCluster::start_tls(3, 0, Duration::from_millis(2000));
    let ca = c.ca_path().expect("CA").display().to_string();
    let url = format!("{}?ca={ca}&timeout_ms=2000", c.url());
    assert!(url.starts_with("rediss+cluster://"), "{url}");
    let a = Warden::connect(&url).await.expect("connect over TLS");
    let b = Warden::connect(&url).await.expect("a second client over TLS");
    // On every primary, a handoff whose wake-up travels on a shard channel over TLS.
    for node in 0..3 {
        let (res, _) = resource_on(&c, node, "tls");
        warden_testkit::tls_checks::handoff_over_tls(&a, &b, &res).await;
    }
    // A CA that did not sign the nodes' certificates: refused with a sentence that says so.
    let other = warden_testkit::RedisServer::start_tls();
    let wrong = other.ca_path().expect("CA").display().to_string();
    warden_testkit::tls_checks::refused_for_its_certificate(&format!("{}?ca={wrong}&timeout_ms=1000", c.url())).await;
}
