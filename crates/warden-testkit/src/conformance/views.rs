//! What inspection, held leases and statistics report, and the run helper's release.

#[allow(unused_imports)]
use super::*;

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
            ctx.fencing_token()
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
