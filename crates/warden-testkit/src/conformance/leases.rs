//! One lease's life: expiry, refusals of the wrong token, the lost signal, renewal and its caps, fencing,
//! bad inputs.

#[allow(unused_imports)]
use super::*;

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
