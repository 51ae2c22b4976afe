//! The store's own unit tests (the conformance suite covers its behaviour).

use super::*;

fn req(resource: &str, ttl_ms: u64) -> AcquireRequest {
    AcquireRequest::new(
        resource,
        LockKind::Exclusive,
        Duration::from_millis(ttl_ms),
        "c",
        &crate::token::lock_id(),
        Duration::from_millis(300),
    )
}

#[tokio::test(start_paused = true)]
async fn expired_leases_nobody_touches_are_reclaimed_by_the_rotating_sweep() {
    let b = MemoryBackend::new();
    for i in 0..10 {
        let r = b.attempt(&req(&format!("r{i}"), 50), None).await.unwrap();
        assert!(matches!(r, Attempt::Granted(_)));
    }
    assert_eq!(b.lease_count(), 10);
    tokio::time::advance(Duration::from_millis(100)).await;
    // Unrelated operations: each checks two leases from the cursor.
    for _ in 0..5 {
        let _ = b.lease(&crate::token::lock_id()).await;
        let _ = b.release(&crate::token::lock_id(), None).await;
    }
    assert_eq!(b.lease_count(), 0, "untouched expired leases must be reclaimed");
    let s = b.stats(10).await.unwrap();
    assert_eq!((s.expired_locks, s.active_locks, s.total_locks), (10, 0, 10));
}

#[tokio::test(start_paused = true)]
async fn an_expired_holder_frees_the_lock_for_the_next_attempt() {
    let b = MemoryBackend::new();
    assert!(matches!(
        b.attempt(&req("x", 50), None).await.unwrap(),
        Attempt::Granted(_)
    ));
    let second = req("x", 50);
    match b.attempt(&second, None).await.unwrap() {
        Attempt::NotGranted { retry_in, .. } => assert_eq!(retry_in, Some(Duration::from_millis(50))),
        other => panic!("{other:?}"),
    }
    tokio::time::advance(Duration::from_millis(51)).await;
    assert!(matches!(b.attempt(&second, None).await.unwrap(), Attempt::Granted(_)));
    assert_eq!(b.stats(0).await.unwrap().expired_locks, 1);
}

#[tokio::test]
async fn idle_resources_are_remembered_for_their_retention_then_forgotten() {
    // A retention far longer than making the resources takes, even on a loaded machine (at 100 ms the first
    // ones were forgotten before the count under a parallel build).
    let b = MemoryBackend::connect("memory://?retain_ms=1000").await.unwrap();
    let n = IDLE_SLACK + 100;
    let mut last = 0;
    for i in 0..n {
        let r = req(&format!("r{i}"), 10_000);
        let Attempt::Granted(g) = b.attempt(&r, None).await.unwrap() else {
            panic!("free resource refused");
        };
        last = g.fencing_token;
        b.release(&r.lock_id, None).await.unwrap();
    }
    assert_eq!(b.lock().resources.len(), n, "every idle resource is remembered");
    let mut resume = req(&format!("r{}", n - 1), 10_000);
    resume.condition = Some(crate::Condition::FencingToken(last));
    assert!(matches!(b.attempt(&resume, None).await, Ok(Attempt::Granted(_))));
    b.release(&resume.lock_id, None).await.unwrap();
    // What is tested here is time itself: the retention has to pass.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    for _ in 0..100 {
        let _ = b.lease(&crate::token::lock_id()).await;
        let _ = b.release(&crate::token::lock_id(), None).await;
    }
    let left = b.lock().resources.len();
    assert!(left <= IDLE_SLACK, "idle resources past their retention stay: {left}");
    assert!(MemoryBackend::connect("memory://?retain=1").await.is_err());
}
