//! Semaphores: N holders at once, each its own lease and fencing token; FIFO waiters; the permit count fixed by
//! the resource's users.

#[allow(unused_imports)]
use super::*;

/// Exactly N holders coexist, each with its own lock id and a larger fencing token; the next waits; another
/// permit count, or a lock on the same name, is a conflict; an expired holder's permit goes to the next.
pub async fn semaphore_permits(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    if !a.capabilities().semaphores {
        let r = a.semaphore("sem", 3).try_acquire().await;
        assert!(
            matches!(r, Err(Error::Unsupported { .. })),
            "backend without semaphores must refuse one: {r:?}"
        );
        return;
    }
    let mut held = Vec::new();
    for i in 0..3 {
        let c = if i % 2 == 0 { &a } else { &b };
        let g = c
            .semaphore("sem", 3)
            .ttl(10 * SEC)
            .try_acquire()
            .await
            .expect("acquire")
            .unwrap_or_else(|| panic!("permit {i} of 3 refused"));
        if let Some(prev) = held.last() {
            let prev: &warden::LockGuard = prev;
            assert!(
                g.fencing_token() > prev.fencing_token(),
                "fencing token did not increase"
            );
            assert_ne!(g.lock_id(), prev.lock_id());
        }
        held.push(g);
    }
    assert!(
        b.semaphore("sem", 3).try_acquire().await.expect("4th").is_none(),
        "a 4th holder of a 3-permit semaphore"
    );
    let info = a.inspect("sem").await.expect("inspect");
    assert_eq!(info.holders.len(), 3);
    assert!(info.holders.iter().all(|l| l.kind == LockKind::Semaphore));
    let r = b.semaphore("sem", 2).try_acquire().await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "another permit count: {r:?}");
    let r = b.lock("sem").try_acquire().await;
    assert!(matches!(r, Err(Error::Conflict { .. })), "a lock on a semaphore: {r:?}");
    let r = b.semaphore("sem", 0).try_acquire().await;
    assert!(
        matches!(r, Err(Error::InvalidArgument { field: "permits", .. })),
        "0 permits: {r:?}"
    );
    // One holder stops renewing: its permit goes to a waiter at its expiry.
    for g in held.drain(..) {
        let mut g = g;
        g.release().await.expect("release");
    }
    let short = a
        .semaphore("sem", 3)
        .ttl(ms(300))
        .auto_renew(false)
        .acquire()
        .await
        .expect("short");
    let mut long: Vec<_> = Vec::new();
    for _ in 0..2 {
        long.push(b.semaphore("sem", 3).ttl(10 * SEC).acquire().await.expect("long"));
    }
    let start = Instant::now();
    let mut next = b
        .semaphore("sem", 3)
        .ttl(10 * SEC)
        .wait(5 * SEC)
        .acquire()
        .await
        .expect("the expired holder's permit");
    assert!(start.elapsed() < ms(1500), "expiry noticed late: {:?}", start.elapsed());
    assert!(short.is_lost(), "expired holder not told");
    assert!(next.fencing_token() > short.fencing_token());
    next.release().await.expect("release");
    for mut g in long {
        g.release().await.expect("release");
    }
    // Idle again: the permit count is free to change, and the name can be a lock.
    let mut x = a
        .lock("sem")
        .try_acquire()
        .await
        .expect("lock")
        .expect("idle semaphore as a lock");
    x.release().await.expect("release");
    let mut s = a
        .semaphore("sem", 5)
        .try_acquire()
        .await
        .expect("5")
        .expect("idle with 5 permits");
    s.release().await.expect("release");
}

/// With every permit taken, waiters are granted in arrival order, each promptly after a permit is freed.
pub async fn semaphore_fifo(h: &dyn Harness) {
    // Waiters that heartbeat once a second: a handoff that waited for the heartbeat instead of a notification
    // would take most of a second, far from what notifications take even on a loaded host.
    let slow_heartbeat = |w: warden::Warden| w.with_waiter_lease(3 * SEC).expect("waiter lease");
    let clients = [slow_heartbeat(h.client().await), slow_heartbeat(h.client().await)];
    let caps = clients[0].capabilities();
    if !caps.semaphores || caps.fifo != FifoGuarantee::Strict {
        return;
    }
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(
            clients[0]
                .semaphore("semfifo", 2)
                .ttl(10 * SEC)
                .acquire()
                .await
                .expect("holder"),
        );
    }
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..6usize {
        let w = clients[i % 2].clone();
        let order = order.clone();
        tasks.push(tokio::spawn(async move {
            let mut g = w
                .semaphore("semfifo", 2)
                .ttl(10 * SEC)
                .wait(20 * SEC)
                .acquire()
                .await
                .expect("waiter");
            order.lock().expect("order").push((i, g.fencing_token()));
            g.release().await.expect("release");
        }));
        let probe = clients[0].clone();
        assert!(
            eventually(5 * SEC, || async {
                probe
                    .inspect("semfifo")
                    .await
                    .map(|r| r.queue.len() == i + 1)
                    .unwrap_or(false)
            })
            .await,
            "waiter {i} did not show up in the queue"
        );
    }
    // One permit freed: the six waiters pass it on one after another, in arrival order.
    let released = Instant::now();
    let mut first = holders.remove(0);
    first.release().await.expect("release holder");
    for t in tasks {
        t.await.expect("waiter task");
    }
    let took = released.elapsed();
    let order = order.lock().expect("order").clone();
    assert_eq!(
        order.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    assert!(
        order.windows(2).all(|w| w[1].1 > w[0].1),
        "fencing tokens out of grant order: {order:?}"
    );
    if caps.notifications {
        // Six handoffs, each woken by a notification (the heartbeat fallback alone would take seconds).
        assert!(took < ms(6 * 150), "six handoffs took {took:?}");
    }
    for mut g in holders {
        g.release().await.expect("release");
    }
}

/// Many clients cycling through a 2-permit semaphore: never more than 2 inside at once, every cycle completes,
/// and every grant has its own fencing token.
pub async fn semaphore_bound(h: &dyn Harness) {
    const TASKS: usize = 6;
    const ROUNDS: usize = 15;
    let a = h.client().await;
    if !a.capabilities().semaphores {
        return;
    }
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let fences = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..TASKS {
        let w = h.client().await.with_client_id(format!("sem-{i}")).expect("client id");
        let (inside, most, fences) = (inside.clone(), most.clone(), fences.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..ROUNDS {
                let mut g = w
                    .semaphore("sembound", 2)
                    .ttl(5 * SEC)
                    .wait(30 * SEC)
                    .acquire()
                    .await
                    .expect("acquire");
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                fences.lock().expect("fences").push(g.fencing_token());
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                g.release().await.expect("release");
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert!(
        most.load(Ordering::SeqCst) <= 2,
        "{} holders of 2 permits",
        most.load(Ordering::SeqCst)
    );
    let mut fences = fences.lock().expect("fences").clone();
    assert_eq!(fences.len(), TASKS * ROUNDS);
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), TASKS * ROUNDS, "two grants shared a fencing token");
}
