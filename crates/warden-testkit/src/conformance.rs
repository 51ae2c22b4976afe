//! The conformance suite: one set of behavioural tests that every backend must pass.
//! Instantiate it with [`crate::conformance_tests!`]. Tests that need a capability check that the backend
//! either declares it and honours it, or does not declare it.

use crate::checker::{Hold, HoldLog};
use crate::eventually;
use crate::harness::Harness;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, FifoGuarantee, LockKind};

const SEC: Duration = Duration::from_secs(1);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// N tasks × M locked read-modify-write increments of a non-atomic counter end at exactly N×M; no two
/// holds overlap and fencing tokens increase in grant order.
pub async fn mutual_exclusion(h: &dyn Harness) {
    const N: u64 = 8;
    const M: u64 = 25;
    let counter = h.counter().await;
    counter.set(0).await;
    let log = Arc::new(HoldLog::default());
    let inside = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..N {
        let w = h
            .client()
            .await
            .with_client_id(format!("worker-{i}"))
            .expect("client id");
        let counter = counter.clone();
        let log = log.clone();
        let inside = inside.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..M {
                let mut g = w
                    .lock("conformance:counter-lock")
                    .ttl(5 * SEC)
                    .wait(30 * SEC)
                    .acquire()
                    .await
                    .expect("acquire");
                let start = Instant::now();
                assert!(
                    !inside.swap(true, Ordering::SeqCst),
                    "two holders inside the critical section"
                );
                let v = counter.get().await;
                counter.set(v + 1).await;
                inside.store(false, Ordering::SeqCst);
                let end = Instant::now().min(g.valid_until());
                log.record(Hold {
                    start,
                    end,
                    fence: g.fencing_token(),
                    exclusive: true,
                });
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("worker");
    }
    assert_eq!(counter.get().await, N * M);
    assert_eq!(log.holds().len() as u64, N * M);
    log.assert_consistent();
}

/// Shared holders coexist; shared excludes exclusive; exclusive excludes both.
pub async fn compatibility_matrix(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    if !a.capabilities().shared {
        let r = a.lock("cm").shared().try_acquire().await;
        assert!(
            matches!(r, Err(Error::Unsupported { .. })),
            "backend without shared mode must refuse it: {r:?}"
        );
        return;
    }
    let mut s1 = a
        .lock("cm")
        .shared()
        .try_acquire()
        .await
        .expect("s1")
        .expect("shared granted");
    let mut s2 = b
        .lock("cm")
        .shared()
        .try_acquire()
        .await
        .expect("s2")
        .expect("second shared granted");
    assert!(
        b.lock("cm").exclusive().try_acquire().await.expect("x").is_none(),
        "exclusive granted beside readers"
    );
    assert!(
        b.lock("cm")
            .kind(LockKind::Write)
            .try_acquire()
            .await
            .expect("w")
            .is_none(),
        "write granted beside readers"
    );
    let mut r3 = b
        .lock("cm")
        .kind(LockKind::Read)
        .try_acquire()
        .await
        .expect("r3")
        .expect("read beside shared");
    let info = a.inspect("cm").await.expect("inspect");
    assert_eq!(info.holders.len(), 3);
    s1.release().await.expect("release s1");
    s2.release().await.expect("release s2");
    r3.release().await.expect("release r3");
    let mut x = a
        .lock("cm")
        .exclusive()
        .try_acquire()
        .await
        .expect("x")
        .expect("exclusive on a free lock");
    assert!(
        b.lock("cm").shared().try_acquire().await.expect("s").is_none(),
        "shared granted beside exclusive"
    );
    assert!(
        b.lock("cm").exclusive().try_acquire().await.expect("x2").is_none(),
        "two exclusive holders"
    );
    x.release().await.expect("release x");
    assert!(b.lock("cm").shared().try_acquire().await.expect("s").is_some());
}

/// A lease that is not renewed expires: another client gets the lock at about the TTL, and the first
/// holder's lost signal has fired by then.
pub async fn expiry_frees_the_lock(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    let start = Instant::now();
    let g = a.lock("exp").ttl(ms(300)).auto_renew(false).acquire().await.expect("a");
    let mut g2 = b
        .lock("exp")
        .ttl(SEC)
        .wait(5 * SEC)
        .acquire()
        .await
        .expect("b gets the lock after expiry");
    let waited = start.elapsed();
    assert!(
        waited >= ms(290),
        "granted before the first lease could expire: {waited:?}"
    );
    assert!(waited < ms(1500), "expiry not noticed promptly: {waited:?}");
    assert!(g.is_lost(), "first holder not told its lease ended");
    assert!(g2.fencing_token() > g.fencing_token());
    g2.release().await.expect("release");
}

/// Release and renew with a wrong token or client id are refused and change nothing. Release is idempotent.
pub async fn wrong_token_refused(h: &dyn Harness) {
    let a = h.client().await.with_client_id("owner").expect("id");
    let mut g = a.lock("wt").ttl(5 * SEC).acquire().await.expect("acquire");
    let bogus = warden::token::lock_id();
    assert!(matches!(a.release(&bogus, None).await, Err(Error::NotFound { .. })));
    assert!(matches!(a.renew(&bogus, SEC, None).await, Err(Error::NotFound { .. })));
    assert!(matches!(
        a.release(g.lock_id(), Some("intruder")).await,
        Err(Error::NotOwner { .. })
    ));
    assert!(matches!(
        a.renew(g.lock_id(), SEC, Some("intruder")).await,
        Err(Error::NotOwner { .. })
    ));
    assert!(matches!(
        a.release("not a token!", None).await,
        Err(Error::InvalidArgument { field: "lockId", .. })
    ));
    let info = a.inspect("wt").await.expect("inspect");
    assert_eq!(info.holders.len(), 1, "a refused release changed the holder");
    assert_eq!(info.holders[0].lease_handle, warden::lease_handle(g.lock_id()));
    assert!(a.lock("wt").try_acquire().await.expect("try").is_none());
    g.release().await.expect("release");
    g.release().await.expect("second release is a no-op");
    assert!(matches!(
        a.release(g.lock_id(), None).await,
        Err(Error::NotFound { .. })
    ));
}

/// The lost signal fires when the lease is taken away behind the holder's back.
pub async fn lost_signal_on_revoke(h: &dyn Harness) {
    let a = h.client().await;
    let g = a.lock("lost").ttl(ms(600)).acquire().await.expect("acquire");
    h.revoke("lost").await;
    let start = Instant::now();
    tokio::time::timeout(2 * SEC, g.lost())
        .await
        .expect("lost signal did not fire");
    // Renewal runs every ttl/3; the refusal is noticed at the next one at the latest.
    assert!(start.elapsed() <= ms(600), "lost noticed late: {:?}", start.elapsed());
    assert!(g.is_lost());
    assert!(matches!(g.renew(SEC).await, Err(Error::LeaseLost { .. })));
}

/// Renewal keeps a lease past its TTL; caps stop it.
pub async fn renewal_and_caps(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    let mut g = a.lock("renew").ttl(ms(300)).acquire().await.expect("acquire");
    let held_until = Instant::now() + ms(900);
    // b waits, but the lease keeps being renewed, so b times out.
    let r = b.lock("renew").wait(ms(900)).try_acquire().await.expect("try");
    assert!(r.is_none());
    let r = b
        .lock("renew")
        .wait(held_until.saturating_duration_since(Instant::now()))
        .acquire()
        .await;
    assert!(
        matches!(r, Err(Error::Timeout { .. })),
        "auto-renewed lease was taken: {r:?}"
    );
    assert!(!g.is_lost());
    assert!(g.renewal_count() >= 2, "renewed {} times", g.renewal_count());
    g.renew(ms(400)).await.expect("manual renew");
    g.release().await.expect("release");

    let mut capped = a
        .lock("cap")
        .ttl(ms(300))
        .max_renewals(1)
        .acquire()
        .await
        .expect("acquire");
    tokio::time::timeout(2 * SEC, capped.lost())
        .await
        .expect("capped lease must end");
    assert_eq!(capped.renewal_count(), 1);
    let _ = capped.release().await;
    let hold = a
        .lock("cap2")
        .ttl(ms(200))
        .max_hold(ms(350))
        .acquire()
        .await
        .expect("acquire");
    let start = Instant::now();
    tokio::time::timeout(2 * SEC, hold.lost())
        .await
        .expect("max_hold lease must end");
    assert!(start.elapsed() < ms(500));
}

/// Waiters are granted strictly in arrival order (across clients), and promptly after each release.
pub async fn fifo_order(h: &dyn Harness) {
    let clients = [h.client().await, h.client().await];
    if clients[0].capabilities().fifo != FifoGuarantee::Strict {
        return;
    }
    let mut holder = clients[0].lock("fifo").ttl(10 * SEC).acquire().await.expect("holder");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..10usize {
        let w = clients[i % 2].clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let mut g = w
                .lock("fifo")
                .ttl(10 * SEC)
                .wait(20 * SEC)
                .acquire()
                .await
                .expect("waiter");
            order.lock().expect("order").push(i);
            g.release().await.expect("release");
        }));
        let probe = clients[0].clone();
        assert!(
            eventually(5 * SEC, || async {
                probe
                    .inspect("fifo")
                    .await
                    .map(|r| r.queue.len() == i + 1)
                    .unwrap_or(false)
            })
            .await,
            "waiter {i} did not show up in the queue"
        );
    }
    let q = clients[0].inspect("fifo").await.expect("inspect").queue;
    assert_eq!(q.len(), 10);
    holder.release().await.expect("release holder");
    for t in tasks {
        t.await.expect("waiter task");
    }
    assert_eq!(*order.lock().expect("order"), (0..10).collect::<Vec<_>>());
}

/// A waiter is granted within a few milliseconds of the release (woken by notification, not polling).
pub async fn prompt_handoff(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    if !a.capabilities().notifications {
        return;
    }
    let mut worst = Duration::ZERO;
    for _ in 0..5 {
        let mut g = a.lock("handoff").ttl(10 * SEC).acquire().await.expect("holder");
        let b2 = b.clone();
        let waiter = tokio::spawn(async move {
            let g = b2
                .lock("handoff")
                .ttl(10 * SEC)
                .wait(10 * SEC)
                .acquire()
                .await
                .expect("waiter");
            (Instant::now(), g)
        });
        let probe = a.clone();
        assert!(
            eventually(5 * SEC, || async {
                probe
                    .inspect("handoff")
                    .await
                    .map(|r| r.queue.len() == 1)
                    .unwrap_or(false)
            })
            .await
        );
        let released = Instant::now();
        g.release().await.expect("release");
        let (granted, mut g2) = waiter.await.expect("waiter");
        worst = worst.max(granted - released);
        g2.release().await.expect("release");
    }
    // The heartbeat fallback would take 100 ms (waiter lease / 3): anything well below proves the notification.
    assert!(worst < ms(50), "handoff took {worst:?}");
}

/// A waiter that died (stopped heartbeating) leaves the queue within its waiter lease and blocks nobody.
pub async fn dead_waiter_does_not_block(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    let mut holder = a.lock("dead").ttl(10 * SEC).acquire().await.expect("holder");
    let probe = a.clone();
    let queue_len = |n: usize| {
        let probe = probe.clone();
        async move {
            eventually(5 * SEC, || async {
                probe.inspect("dead").await.map(|r| r.queue.len() == n).unwrap_or(false)
            })
            .await
        }
    };
    let remote_ghost = if a.capabilities().remote_wait {
        // Waiting happens on a server: a dead waiter is one whose connection closed. Start a wait and
        // abandon it below, once the live waiter queued behind it.
        let g = a.clone();
        let t = tokio::spawn(async move { g.lock("dead").client_id("ghost").wait(30 * SEC).acquire().await });
        assert!(queue_len(1).await, "ghost never queued");
        Some(t)
    } else {
        // A ghost waiter: queued through the raw backend, never heartbeats again.
        let mut req = ghost_request(a.backend().as_ref(), "dead");
        req.waiter_lease = ms(200);
        let r = a
            .backend()
            .attempt(&req, Some("ghost-waiter-0001"))
            .await
            .expect("ghost attempt");
        assert!(matches!(r, warden::Attempt::NotGranted { .. }));
        None
    };
    let b2 = b.clone();
    let live = tokio::spawn(async move { b2.lock("dead").ttl(SEC).wait(5 * SEC).acquire().await });
    assert!(queue_len(2).await, "live waiter never queued behind the ghost");
    if let Some(t) = remote_ghost {
        // The server drops the ghost's wait when its connection closes. Release only once it has: a release
        // that raced the close could grant the ghost in the instant before (a real, microsecond-wide window:
        // the lease then lives out its ttl), which is not what this test is about.
        t.abort();
        assert!(queue_len(1).await, "the ghost's closed connection never left the queue");
    }
    let released = Instant::now();
    holder.release().await.expect("release");
    let mut g = live
        .await
        .expect("task")
        .expect("live waiter granted despite the dead one ahead");
    assert!(
        released.elapsed() < SEC,
        "dead waiter blocked the queue for {:?}",
        released.elapsed()
    );
    g.release().await.expect("release");
}

fn ghost_request(backend: &dyn warden::Backend, resource: &str) -> warden::AcquireRequest {
    // Built through the public builder path's types: a plain exclusive request with a fresh token.
    warden::AcquireRequest::new(
        resource,
        LockKind::Exclusive,
        SEC,
        "ghost",
        &backend.new_lock_id(resource),
        ms(300),
    )
}

/// The wait deadline is honoured within a small tolerance, and the timed-out waiter leaves the queue.
pub async fn wait_timeout_honoured(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    let mut holder = a.lock("wait").ttl(10 * SEC).acquire().await.expect("holder");
    let start = Instant::now();
    let r = b.lock("wait").wait(ms(300)).acquire().await;
    let took = start.elapsed();
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    assert!(took >= ms(300) && took < ms(450), "wait of 300 ms took {took:?}");
    assert!(
        a.inspect("wait").await.expect("inspect").queue.is_empty(),
        "timed-out waiter still queued"
    );
    let start = Instant::now();
    assert!(b.lock("wait").try_acquire().await.expect("try").is_none());
    assert!(start.elapsed() < ms(100), "try_acquire waited");
    // Cancelling a waiting acquire (dropping it) also leaves the queue.
    let b2 = b.clone();
    let waiting = tokio::spawn(async move { b2.lock("wait").wait(10 * SEC).acquire().await });
    assert!(
        eventually(5 * SEC, || async {
            a.inspect("wait").await.map(|r| r.queue.len() == 1).unwrap_or(false)
        })
        .await
    );
    waiting.abort();
    assert!(
        eventually(5 * SEC, || async {
            a.inspect("wait").await.map(|r| r.queue.is_empty()).unwrap_or(false)
        })
        .await,
        "cancelled waiter still queued"
    );
    holder.release().await.expect("release");
}

/// Fencing tokens strictly increase per resource, also after the backend lost its data.
pub async fn fencing_increases(h: &dyn Harness) {
    let a = h.client().await;
    let mut last = 0;
    for i in 0..20 {
        let kind = if i % 3 == 0 && a.capabilities().shared {
            LockKind::Shared
        } else {
            LockKind::Exclusive
        };
        let mut g = a
            .lock("fence")
            .kind(kind)
            .try_acquire()
            .await
            .expect("try")
            .expect("free lock");
        assert!(
            g.fencing_token() > last,
            "fence went from {last} to {}",
            g.fencing_token()
        );
        last = g.fencing_token();
        g.release().await.expect("release");
    }
    if !a.capabilities().fencing_survives_data_loss || !h.restart_losing_data().await {
        return;
    }
    let b = h.client().await;
    let mut g = b.lock("fence").wait(5 * SEC).acquire().await.expect("after restart");
    assert!(
        g.fencing_token() > last,
        "fence went back after data loss: {last} then {}",
        g.fencing_token()
    );
    g.release().await.expect("release");
}

/// Bad inputs are refused with an InvalidArgument naming the field.
pub async fn bad_inputs_rejected(h: &dyn Harness) {
    let a = h.client().await;
    let field = |r: Result<warden::LockGuard, Error>| match r {
        Err(Error::InvalidArgument { field, .. }) => field,
        other => panic!("expected InvalidArgument, got {other:?}"),
    };
    assert_eq!(field(a.lock("").acquire().await), "resource");
    assert_eq!(field(a.lock("x".repeat(513)).acquire().await), "resource");
    assert_eq!(field(a.lock("a\u{0}b").acquire().await), "resource");
    assert_eq!(field(a.lock("r").ttl(Duration::ZERO).acquire().await), "ttl");
    assert_eq!(
        field(a.lock("r").ttl(Duration::from_secs(100_000)).acquire().await),
        "ttl"
    );
    assert_eq!(
        field(a.lock("r").wait(Duration::from_secs(601)).acquire().await),
        "waitTimeout"
    );
    assert_eq!(field(a.lock("r").client_id("").acquire().await), "clientId");
    assert_eq!(
        field(a.lock("r").client_id("c".repeat(257)).acquire().await),
        "clientId"
    );
    assert!(matches!(
        a.renew(&warden::token::lock_id(), Duration::ZERO, None).await,
        Err(Error::InvalidArgument { field: "ttl", .. })
    ));
    assert!(matches!(
        a.held("").await,
        Err(Error::InvalidArgument { field: "clientId", .. })
    ));
    // A 512-byte name with braces and unicode is fine.
    let name = format!("{{tag}}ü{}", "y".repeat(512 - 7));
    assert_eq!(name.len(), 512);
    let mut g = a
        .lock(name)
        .try_acquire()
        .await
        .expect("512-byte name")
        .expect("granted");
    g.release().await.expect("release");
}

/// With the backend down, operations fail with BackendUnavailable within the configured timeout.
pub async fn backend_down(h: &dyn Harness) {
    if let Some(url) = h.unreachable_url() {
        let start = Instant::now();
        let r = warden::Warden::connect(&url).await;
        assert!(
            matches!(
                r,
                Err(Error::BackendUnavailable { .. }
                    | Error::ServerBackendUnavailable { .. }
                    | Error::QuorumUnavailable { .. })
            ),
            "{r:?}"
        );
        assert!(start.elapsed() < 2 * SEC);
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("127.0.0.1"), "error does not name the address: {msg}");
    }
    let a = h.client().await;
    let g = a
        .lock("down")
        .ttl(ms(900))
        .acquire()
        .await
        .expect("acquire before kill");
    if !h.kill().await {
        return;
    }
    let start = Instant::now();
    let r = a.lock("down2").wait(5 * SEC).acquire().await;
    assert!(
        matches!(
            r,
            Err(Error::BackendUnavailable { .. }
                | Error::ServerBackendUnavailable { .. }
                | Error::QuorumUnavailable { .. })
        ),
        "{r:?}"
    );
    assert!(r.as_ref().err().is_some_and(|e| e.is_retryable()));
    assert!(start.elapsed() < 2 * SEC, "took {:?}", start.elapsed());
    // The holder cannot renew: its lost signal fires by the end of its validity.
    tokio::time::timeout(2 * SEC, g.lost())
        .await
        .expect("lost signal with the backend down");
}

/// Inspection, held leases and statistics report what happened.
pub async fn inspection_and_stats(h: &dyn Harness) {
    let a = h.client().await.with_client_id("inspector").expect("id");
    let mut g1 = a.lock("insp:1").ttl(5 * SEC).acquire().await.expect("g1");
    let mut g2 = a.lock("insp:2").ttl(5 * SEC).acquire().await.expect("g2");
    let mut short = a
        .lock("insp:3")
        .ttl(ms(100))
        .auto_renew(false)
        .acquire()
        .await
        .expect("g3");
    let held = a.held("inspector").await.expect("held");
    assert_eq!(held.len(), 3);
    let info = a.inspect("insp:1").await.expect("inspect");
    assert_eq!(info.holders.len(), 1);
    let l = &info.holders[0];
    assert_eq!(
        (l.lease_handle.clone(), l.client_id.as_str(), l.fencing_token, l.kind),
        (
            warden::lease_handle(g1.lock_id()),
            "inspector",
            g1.fencing_token(),
            LockKind::Exclusive
        )
    );
    assert!(!l.expired);
    let lease = a.lease(g2.lock_id()).await.expect("lease").expect("known");
    assert_eq!(lease.resource, "insp:2");
    tokio::time::timeout(2 * SEC, short.lost())
        .await
        .expect("short lease expires");
    // The client gives up trust slightly before the backend expires the lease (drift): wait for the backend.
    let short_id = short.lock_id().to_string();
    assert!(
        eventually(2 * SEC, || async {
            a.lease(&short_id)
                .await
                .map(|l| l.is_none_or(|l| l.expired))
                .unwrap_or(false)
        })
        .await
    );
    // Redlock reports a lease expired once a quorum of nodes expired it; its counters take the highest node:
    // wait until every node let the short lease go.
    assert!(
        eventually(2 * SEC, || async {
            a.counts().await.map(|s| s.active_locks == 2).unwrap_or(false)
        })
        .await
    );
    g1.release().await.expect("release");
    let s = a.stats().await.expect("stats");
    assert_eq!(s.total_locks, 3);
    assert_eq!(s.active_locks, 1);
    assert_eq!(s.expired_locks, 1);
    assert_eq!(s.active_exclusive, 1);
    assert_eq!(s.top_resources.len(), 3);
    assert_eq!(a.held("inspector").await.expect("held").len(), 1);
    g2.release().await.expect("release");
    assert!(matches!(short.release().await, Err(Error::LeaseLost { .. })));
    let s = a.stats().await.expect("stats");
    assert_eq!(s.active_locks, 0);
    assert_eq!(s.expired_locks, 1, "the expired lease was counted twice");
    assert!(s.average_hold_time_ms < 5000);
}

/// `run` always releases, and reports a lease lost during the closure.
pub async fn run_helper_releases(h: &dyn Harness) {
    let a = h.client().await;
    let counter = Arc::new(AtomicUsize::new(0));
    let c = counter.clone();
    let fence = a
        .lock("run")
        .run(|ctx| async move {
            c.fetch_add(1, Ordering::SeqCst);
            ctx.fencing_token
        })
        .await
        .expect("run");
    assert!(fence > 0);
    assert_eq!(counter.load(Ordering::SeqCst), 1);
    assert!(
        a.lock("run").try_acquire().await.expect("try").is_some(),
        "run did not release"
    );
    let r = a
        .lock("run2")
        .ttl(ms(300))
        .run(|ctx| async move {
            h.revoke("run2").await;
            ctx.lost().await;
        })
        .await;
    assert!(matches!(r, Err(Error::LeaseLost { .. })), "{r:?}");
}

/// Leader election: one leader at a time, FIFO among candidates, handover on resign within 50 ms, the lost
/// signal when the leadership lease is taken away, and `observe` reporting every change.
pub async fn election_handover(h: &dyn Harness) {
    use futures::StreamExt;
    let clients = [h.client().await, h.client().await, h.client().await];
    let election = |i: usize| clients[i].election("conf").ttl(2 * SEC);
    let first = election(0).campaign("c0").await.expect("first campaign");
    let mut observer = Box::pin(election(0).observe_every(ms(5)).observe());
    let seen = observer.next().await.expect("stream").expect("observe");
    assert_eq!(seen.map(|l| l.candidate_id), Some("c0".to_string()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 1..3 {
        let e = election(i);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let l = e.campaign(&format!("c{i}")).await.expect("campaign");
            let _ = tx.send((Instant::now(), l));
        }));
        let probe = election(0);
        assert!(
            eventually(5 * SEC, || async {
                clients[0]
                    .inspect(&warden::election::election_resource(probe.name()))
                    .await
                    .map(|r| r.queue.len() == i)
                    .unwrap_or(false)
            })
            .await,
            "candidate c{i} never queued"
        );
    }
    assert_eq!(
        election(1).leader().await.expect("leader").map(|l| l.candidate_id),
        Some("c0".to_string())
    );
    let first_fence = first.fencing_token();
    let resigned = Instant::now();
    first.resign().await.expect("resign");
    let (at, second) = tokio::time::timeout(5 * SEC, rx.recv())
        .await
        .expect("handover")
        .expect("leader");
    assert!(at - resigned < ms(50), "handover took {:?}", at - resigned);
    assert_eq!(second.candidate_id(), "c1", "candidates are served in arrival order");
    assert!(second.fencing_token() > first_fence);
    let seen = tokio::time::timeout(5 * SEC, observer.next())
        .await
        .expect("observe")
        .expect("stream");
    let seen = seen.expect("observe");
    // The observer may catch the short gap between the terms; it must end on c1.
    let seen = match seen {
        None => observer.next().await.expect("stream").expect("observe"),
        some => some,
    };
    assert_eq!(seen.map(|l| l.candidate_id), Some("c1".to_string()));

    // Taken away behind its back: the leader learns it through the lost signal, and c2 takes over.
    h.revoke(&warden::election::election_resource("conf")).await;
    tokio::time::timeout(3 * SEC, second.lost()).await.expect("lost signal");
    let (_, third) = tokio::time::timeout(5 * SEC, rx.recv())
        .await
        .expect("takeover")
        .expect("leader");
    assert_eq!(third.candidate_id(), "c2");
    assert!(third.fencing_token() > second.fencing_token());
    third.resign().await.expect("resign");
    drop(second);
    for t in tasks {
        t.await.expect("task");
    }
    assert!(election(0).leader().await.expect("leader").is_none());
}

/// Instantiates the whole suite for one harness constructor: `conformance_tests!(MemoryHarness::new());`
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            mutual_exclusion, compatibility_matrix, expiry_frees_the_lock, wrong_token_refused,
            lost_signal_on_revoke, renewal_and_caps, fifo_order, prompt_handoff, dead_waiter_does_not_block,
            wait_timeout_honoured, fencing_increases, bad_inputs_rejected, backend_down, inspection_and_stats,
            run_helper_releases, election_handover);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let h = $make;
                $crate::conformance::$name(&h).await;
            }
        )*
    };
}
