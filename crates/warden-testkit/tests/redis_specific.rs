//! Behaviour specific to the single-node Redis backend: interop with foreign `SET NX PX` lock clients,
//! round trips per operation, and faults (pause, restart with and without data).

use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::{eventually, RedisServer};

const SEC: Duration = Duration::from_secs(1);

async fn client(server: &RedisServer) -> Warden {
    Warden::connect(&format!("{}?timeout_ms=300", server.url()))
        .await
        .expect("connect")
}

#[tokio::test]
async fn foreign_set_nx_holder_excludes_warden_and_vice_versa() {
    let server = RedisServer::start();
    let w = client(&server).await;
    // A node-redlock / redis-py style holder: SET key token NX PX.
    assert_eq!(
        server
            .command(&["SET", "orders:42", "foreign-token", "NX", "PX", "5000"])
            .unwrap(),
        "+OK"
    );
    assert!(
        w.lock("orders:42").try_acquire().await.unwrap().is_none(),
        "warden ignored a foreign holder"
    );
    assert!(
        w.lock("orders:42").shared().try_acquire().await.unwrap().is_none(),
        "reader beside a foreign holder"
    );
    assert!(w.inspect("orders:42").await.unwrap().foreign_holder);
    // The foreign client releases (compare-and-delete); warden gets it.
    assert_eq!(server.command(&["DEL", "orders:42"]).unwrap(), ":1");
    let mut g = w
        .lock("orders:42")
        .try_acquire()
        .await
        .unwrap()
        .expect("free after foreign release");
    // warden's holder: the key holds its token as a plain string with a TTL, and SET NX fails.
    assert_eq!(server.command(&["GET", "orders:42"]).unwrap(), "$35");
    assert_eq!(
        server
            .command(&["SET", "orders:42", "other", "NX", "PX", "5000"])
            .unwrap(),
        "$-1"
    );
    let pttl: i64 = server
        .command(&["PTTL", "orders:42"])
        .unwrap()
        .trim_start_matches(':')
        .parse()
        .unwrap();
    assert!(pttl > 0 && pttl <= 30_000);
    // Readers also occupy the key, so foreign clients are excluded by them too.
    g.release().await.unwrap();
    let mut r = w
        .lock("orders:42")
        .shared()
        .try_acquire()
        .await
        .unwrap()
        .expect("reader");
    assert_eq!(
        server
            .command(&["SET", "orders:42", "other", "NX", "PX", "5000"])
            .unwrap(),
        "$-1"
    );
    r.release().await.unwrap();
    assert_eq!(server.command(&["EXISTS", "orders:42"]).unwrap(), ":0");
}

#[tokio::test]
async fn prefix_namespaces_keys() {
    let server = RedisServer::start();
    let w = Warden::connect(&format!("{}?prefix=app:", server.url())).await.unwrap();
    let mut g = w.lock("job").try_acquire().await.unwrap().unwrap();
    assert_eq!(server.command(&["EXISTS", "app:job"]).unwrap(), ":1");
    assert_eq!(server.command(&["EXISTS", "job"]).unwrap(), ":0");
    g.release().await.unwrap();
}

#[tokio::test]
async fn one_round_trip_per_uncontended_acquire_and_release() {
    let server = RedisServer::start();
    // No background sweep during the count (it is a script call of its own).
    let w = Warden::connect(&format!("{}?sweep_ms=3600000", server.url()))
        .await
        .unwrap();
    // Warm up (the scripts are loaded once at connect).
    let mut g = w.lock("rt").acquire().await.unwrap();
    g.release().await.unwrap();
    assert_eq!(server.command(&["CONFIG", "RESETSTAT"]).unwrap(), "+OK");
    for _ in 0..10 {
        let mut g = w.lock("rt").auto_renew(false).acquire().await.unwrap();
        g.release().await.unwrap();
    }
    let info = server.commandstats();
    assert_eq!(
        server.command_calls("evalsha"),
        20,
        "expected exactly one EVALSHA per acquire and per release:\n{info}"
    );
    // Commands run inside the scripts are counted too (SET, GET, ...); top-level extras would be these:
    for cmd in ["cmdstat_eval:", "cmdstat_script", "cmdstat_ping:", "cmdstat_publish"] {
        assert!(!info.contains(cmd), "unexpected extra round trips ({cmd}):\n{info}");
    }
}

#[tokio::test]
async fn paused_server_gives_backend_unavailable_within_the_timeout() {
    let server = RedisServer::start();
    let w = client(&server).await;
    server.pause();
    let start = Instant::now();
    let r = w.lock("p").try_acquire().await;
    server.resume();
    assert!(matches!(r, Err(Error::BackendUnavailable { .. })), "{r:?}");
    assert!(
        start.elapsed() < Duration::from_millis(800),
        "took {:?} with a 300 ms timeout",
        start.elapsed()
    );
    // Once it answers again, the client recovers.
    assert!(
        eventually(5 * SEC, || async {
            w.lock("p").try_acquire().await.map(|g| g.is_some()).unwrap_or(false)
        })
        .await
    );
}

#[tokio::test]
async fn restart_with_data_keeps_leases_and_waiters_resume() {
    let mut server = RedisServer::start();
    let a = client(&server).await;
    let b = client(&server).await;
    let mut g = a.lock("r").ttl(10 * SEC).acquire().await.unwrap();
    let fence = g.fencing_token();
    server.restart(true);
    // The lease survived; a new client still sees the holder.
    let c = client(&server).await;
    assert!(
        eventually(5 * SEC, || async {
            c.inspect("r").await.map(|i| i.holders.len() == 1).unwrap_or(false)
        })
        .await
    );
    // A waiter on b (whose subscriber reconnects) is woken by the release after the restart.
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.lock("r").ttl(SEC).wait(10 * SEC).acquire().await });
    assert!(
        eventually(5 * SEC, || async {
            c.inspect("r").await.map(|i| i.queue.len() == 1).unwrap_or(false)
        })
        .await
    );
    assert!(eventually(5 * SEC, || async { g.renew(10 * SEC).await.is_ok() }).await);
    let released = Instant::now();
    g.release().await.unwrap();
    let mut g2 = waiter.await.unwrap().expect("waiter granted after restart");
    assert!(
        released.elapsed() < Duration::from_millis(100),
        "waiter woken late: {:?}",
        released.elapsed()
    );
    assert!(g2.fencing_token() > fence);
    g2.release().await.unwrap();
}

#[tokio::test]
async fn key_expired_behind_the_holders_back_is_caught_by_fencing() {
    let server = RedisServer::start();
    let a = client(&server).await;
    let b = client(&server).await;
    let g = a.lock("stock").ttl(5 * SEC).acquire().await.unwrap();
    // A forward clock jump on the Redis node, as far as the key is concerned.
    assert_eq!(server.command(&["PEXPIRE", "stock", "1"]).unwrap(), ":1");
    let mut g2 = b
        .lock("stock")
        .wait(2 * SEC)
        .acquire()
        .await
        .expect("second holder after the key vanished");
    assert!(g2.fencing_token() > g.fencing_token());
    // The protected resource keeps the highest fence it saw and rejects older ones.
    let mut highest = 0u64;
    let mut fenced_write = |fence: u64| {
        if fence < highest {
            return Err("stale fencing token");
        }
        highest = fence;
        Ok(())
    };
    assert!(fenced_write(g2.fencing_token()).is_ok());
    assert_eq!(fenced_write(g.fencing_token()), Err("stale fencing token"));
    tokio::time::timeout(3 * SEC, g.lost())
        .await
        .expect("the first holder learns it lost the lease");
    g2.release().await.unwrap();
}

/// Leases nobody releases are found by the background sweep and counted as expiries (without any client
/// call), and their records are dropped `retain_ms` later: nothing of them stays behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn background_sweep_counts_and_drops_abandoned_leases() {
    use warden::backend::redis::keys::tag_for;
    let server = warden_testkit::RedisServer::start();
    let w = warden::Warden::connect(&format!("{}?sweep_ms=10&retain_ms=200", server.url()))
        .await
        .unwrap();
    let names: Vec<String> = (0..5).map(|i| format!("abandoned:{i}")).collect();
    for n in &names {
        let l = w
            .lock(n.as_str())
            .ttl(Duration::from_millis(30))
            .acquire_lease()
            .await
            .unwrap();
        assert!(l.fencing_token > 0);
    }
    let records = || {
        names
            .iter()
            .map(|n| {
                let h = format!("{{{}}}\x01h", tag_for(n));
                server
                    .command(&["HLEN", &h])
                    .unwrap()
                    .trim_start_matches(':')
                    .parse::<u64>()
                    .unwrap()
            })
            .sum::<u64>()
    };
    assert_eq!(records(), 5);
    let counted = eventually(5 * SEC, || async {
        // HINCRBY by 0 reads the counter as an integer reply (HGET's first line is only its length).
        server
            .command(&["HINCRBY", "\x01warden:stats:", "expired:exclusive", "0"])
            .unwrap()
            == ":5"
    })
    .await;
    assert!(counted, "the sweep did not count the abandoned leases");
    assert!(
        eventually(5 * SEC, || async { records() == 0 }).await,
        "records stayed behind"
    );
    let stats = w.stats().await.unwrap();
    assert_eq!((stats.expired_locks, stats.active_locks, stats.total_locks), (5, 0, 5));
}

/// A renewal without a ttl extends by the lease's own ttl and answers the renewed lease, in one script call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renew_answers_the_renewed_lease_in_one_round_trip() {
    let server = warden_testkit::RedisServer::start();
    let w = warden::Warden::connect(&server.url()).await.unwrap();
    let l = w
        .lock("renew-me")
        .ttl(std::time::Duration::from_secs(7))
        .client_id("c")
        .acquire_lease()
        .await
        .unwrap();
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    match w.renew(&l.lock_id, None, Some("c")).await.unwrap() {
        warden::Renewal::Renewed { lease, granted } => {
            assert_eq!(lease.lock_id, l.lock_id);
            assert_eq!(lease.renewal_count, 1);
            assert_eq!(lease.ttl, std::time::Duration::from_secs(7));
            assert_eq!(lease.fencing_token, l.fencing_token);
            assert!(lease.expires_at >= l.expires_at);
            assert_eq!(granted, std::time::Duration::from_secs(7));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        server.command_calls("evalsha"),
        1,
        "one EVALSHA per renewal:\n{}",
        server.commandstats()
    );
}

/// Liveness probes and metric scrapes read the counters without scanning the per-resource grant counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_skip_the_top_resources_scan() {
    let server = warden_testkit::RedisServer::start();
    let w = warden::Warden::connect(&server.url()).await.unwrap();
    for i in 0..3 {
        let mut g = w.lock(format!("c{i}")).acquire().await.unwrap();
        g.release().await.unwrap();
    }
    server.command(&["CONFIG", "RESETSTAT"]).unwrap();
    let counts = w.counts().await.unwrap();
    assert_eq!((counts.total_locks, counts.active_locks), (3, 0));
    assert!(counts.top_resources.is_empty());
    assert!(
        !server.commandstats().contains("cmdstat_hscan"),
        "{}",
        server.commandstats()
    );
    let stats = w.stats().await.unwrap();
    assert_eq!(stats.top_resources.len(), 3);
    assert!(server.commandstats().contains("cmdstat_hscan"));
}

/// A release grants the lock to the head of the queue in the same script (direct handoff): the waiter is
/// granted without a round trip of its own, for min(ttl, waiter lease) at first, and its guard claims the
/// full ttl with one renewal that does not count against `max_renewals`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_the_lock_to_the_queue_head() {
    let server = RedisServer::start();
    let a = client(&server).await;
    let b = client(&server)
        .await
        .with_waiter_lease(Duration::from_millis(600))
        .unwrap();
    let mut holder = a.lock("hand").ttl(5 * SEC).acquire().await.unwrap();
    let b2 = b.clone();
    let waiter = tokio::spawn(async move {
        b2.lock("hand")
            .ttl(5 * SEC)
            .max_renewals(0)
            .wait(5 * SEC)
            .acquire()
            .await
    });
    assert!(
        eventually(5 * SEC, || async {
            a.inspect("hand").await.map(|r| r.queue.len() == 1).unwrap_or(false)
        })
        .await,
        "the waiter never queued"
    );
    assert_eq!(server.command(&["CONFIG", "RESETSTAT"]).unwrap(), "+OK");
    holder.release().await.unwrap();
    let g = waiter.await.unwrap().expect("handed the lock");
    assert_eq!(
        server.command_calls("evalsha"),
        1,
        "the release alone should grant the waiter:\n{}",
        server.commandstats()
    );
    assert!(g.fencing_token() > holder.fencing_token());
    let lease = |a: Warden, id: String| async move { a.lease(&id).await.unwrap().expect("lease record") };
    let first = lease(a.clone(), g.lock_id().to_string()).await;
    let span = first.expires_at.duration_since(first.acquired_at).unwrap();
    assert!(
        span <= Duration::from_millis(600),
        "handed over for {span:?}, not the waiter lease"
    );
    assert!(g.remaining() <= Duration::from_millis(600));
    // The guard claims the full ttl a third into that span, max_renewals(0) notwithstanding.
    assert!(
        eventually(2 * SEC, || async { g.remaining() > 4 * SEC }).await,
        "the handed-over lease was never claimed; remaining {:?}",
        g.remaining()
    );
    let claimed = lease(a.clone(), g.lock_id().to_string()).await;
    assert!(claimed.expires_at.duration_since(first.acquired_at).unwrap() > 4 * SEC);
    assert_eq!(claimed.renewal_count, 0);
    assert!(!g.is_lost());
}

/// A waiter that leaves the queue just after a release handed it the lock learns so from `leave_queue`
/// (and the lock layer then releases the lock id); a dead waiter holds it only for its waiter lease.
#[tokio::test]
async fn leaving_after_a_handoff_reports_it() {
    let server = RedisServer::start();
    let w = client(&server).await;
    let mut holder = w.lock("late").ttl(5 * SEC).acquire().await.unwrap();
    let req = warden::AcquireRequest::new(
        "late",
        warden::LockKind::Exclusive,
        5 * SEC,
        "ghost",
        &w.backend().new_lock_id("late"),
        Duration::from_millis(300),
    );
    let r = w.backend().attempt(&req, Some("ghost-waiter-0002")).await.unwrap();
    assert!(matches!(r, warden::Attempt::NotGranted { .. }));
    holder.release().await.unwrap();
    let info = w.inspect("late").await.unwrap();
    assert_eq!(info.holders.len(), 1);
    assert_eq!(info.holders[0].lock_id, req.lock_id, "the head was not handed the lock");
    let span = info.holders[0]
        .expires_at
        .duration_since(info.holders[0].acquired_at)
        .unwrap();
    assert!(span <= Duration::from_millis(300), "{span:?}");
    assert!(!w.backend().leave_queue("late", "ghost-waiter-0002").await.unwrap());
    // The ghost never claims it: the lock is free again once its waiter lease ran out.
    let t = Instant::now();
    let mut g = w.lock("late").wait(2 * SEC).acquire().await.unwrap();
    assert!(t.elapsed() < SEC, "blocked for {:?}", t.elapsed());
    g.release().await.unwrap();
}

/// A release hands a shared lock to the whole run of readers at the head of the queue at once, and stops at
/// the first writer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn release_hands_a_shared_lock_to_the_run_of_readers() {
    let server = RedisServer::start();
    let a = client(&server).await;
    let mut holder = a.lock("rw").ttl(5 * SEC).acquire().await.unwrap();
    let mut tasks = Vec::new();
    for (i, shared) in [true, true, false].into_iter().enumerate() {
        // A waiter lease above the ttl: handed leases are whole, so no claim renewal adds a script call.
        let w = client(&server).await.with_waiter_lease(10 * SEC).unwrap();
        tasks.push(tokio::spawn(async move {
            let b = w.lock("rw").ttl(5 * SEC).wait(5 * SEC);
            if shared { b.shared() } else { b.exclusive() }.acquire().await
        }));
        let queued = i + 1;
        assert!(
            eventually(5 * SEC, || async {
                a.inspect("rw").await.map(|r| r.queue.len() == queued).unwrap_or(false)
            })
            .await,
            "waiter {i} never queued"
        );
    }
    assert_eq!(server.command(&["CONFIG", "RESETSTAT"]).unwrap(), "+OK");
    holder.release().await.unwrap();
    let writer = tasks.pop().unwrap();
    let mut readers = Vec::new();
    for t in tasks {
        readers.push(t.await.unwrap().expect("reader handed the lock"));
    }
    assert_eq!(
        server.command_calls("evalsha"),
        1,
        "the release alone should grant both readers:\n{}",
        server.commandstats()
    );
    let info = a.inspect("rw").await.unwrap();
    assert_eq!(info.holders.len(), 2);
    assert_eq!(info.queue.len(), 1, "the writer stays queued");
    let mut tokens: Vec<u64> = readers.iter().map(|g| g.fencing_token()).collect();
    tokens.sort();
    assert!(
        tokens[0] > holder.fencing_token() && tokens[1] > tokens[0],
        "{tokens:?}"
    );
    for mut r in readers {
        r.release().await.unwrap();
    }
    let mut w = writer.await.unwrap().expect("writer after the readers");
    assert!(w.fencing_token() > tokens[1]);
    w.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_waiter_wakes_when_a_handed_over_lease_runs_out() {
    // A holds with a long lease; B and then C queue behind it, so C's own timer points at A's expiry (or its
    // heartbeat, a second away). A releases early and the lock is handed to B, which then stalls without
    // renewing: C must be granted when B's lease ends, not at its next heartbeat.
    let server = RedisServer::start();
    let w = client(&server).await;
    let mut a = w.lock("relay").ttl(10 * SEC).acquire().await.expect("A");
    let (wb, wc) = (w.clone(), w.clone());
    let b = tokio::spawn(async move {
        wb.lock("relay")
            .ttl(Duration::from_millis(300))
            .wait(10 * SEC)
            .auto_renew(false)
            .acquire()
            .await
    });
    assert!(
        eventually(5 * SEC, || async {
            w.inspect("relay").await.is_ok_and(|i| i.queue.len() == 1)
        })
        .await
    );
    let c = tokio::spawn(async move {
        let g = wc.lock("relay").ttl(5 * SEC).wait(10 * SEC).acquire().await;
        (Instant::now(), g)
    });
    assert!(
        eventually(5 * SEC, || async {
            w.inspect("relay").await.is_ok_and(|i| i.queue.len() == 2)
        })
        .await
    );
    a.release().await.expect("A releases");
    let handed = Instant::now();
    let gb = b.await.expect("task").expect("B is handed the lock");
    let (at, gc) = c.await.expect("task");
    let gc = gc.expect("C gets the lock after B's lease ends");
    let after = at - handed;
    assert!(gc.fencing_token() > gb.fencing_token());
    assert!(
        after >= Duration::from_millis(290) && after < Duration::from_millis(450),
        "C was granted {after:?} after the handover; B's lease lasted 300 ms"
    );
    drop(gb);
}
