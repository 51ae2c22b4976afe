//! Exclusion: no two holders overlap, and the shared/exclusive compatibility matrix.

#[allow(unused_imports)]
use super::*;

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

/// Shared holders coexist; shared excludes exclusive; exclusive excludes both. (First: intention kinds and path
/// locks, see `path_locks`.)
pub async fn compatibility_matrix(h: &dyn Harness) {
    path_locks(h).await;
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
