//! Conditional acquires: the condition is judged in the same atomic step as the grant, a waiter whose condition
//! no longer holds leaves without the lock, and a release never hands the lock to such a waiter.

#[allow(unused_imports)]
use super::*;

/// Whether the backend offers conditions; if not, it must refuse one with `Unsupported`.
async fn offers_conditions(a: &warden::Warden) -> bool {
    if a.capabilities().conditions {
        return true;
    }
    let r = a.lock("cond-unsupported").if_fencing_token(1).try_acquire().await;
    assert!(
        matches!(r, Err(Error::Unsupported { .. })),
        "a backend without conditions must refuse one: {r:?}"
    );
    false
}

fn condition_failed<T: std::fmt::Debug>(r: Result<T, Error>, what: &str) {
    assert!(matches!(r, Err(Error::ConditionFailed { .. })), "{what}: {r:?}");
}

/// The three tests below on one harness: a backend that declares no conditions costs the suite one more start
/// of its servers (a consensus cluster, three), not three.
pub async fn conditional_acquire(h: &dyn Harness) {
    condition_fencing_token(h).await;
    condition_not_granted_within(h).await;
    condition_atomic(h).await;
}

/// `if_fencing_token(T)`: granted while T is the last token, refused once anyone else was granted since (also
/// when that grant happened while the caller waited, and when a release would have handed it the lock), and
/// granted after the lease that got T expired unreleased (the restarted owner's case).
pub async fn condition_fencing_token(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    if !offers_conditions(&a).await {
        return;
    }
    let r = a.lock("cond-fence").if_fencing_token(0).try_acquire().await;
    assert!(
        matches!(
            r,
            Err(Error::InvalidArgument {
                field: "ifFencingToken",
                ..
            })
        ),
        "token 0: {r:?}"
    );
    // Never granted: no token to match.
    condition_failed(
        a.lock("cond-fresh").if_fencing_token(5).try_acquire().await,
        "never granted",
    );

    let mut first = a.lock("cond-fence").ttl(10 * SEC).acquire().await.expect("first");
    let t = first.fencing_token();
    first.release().await.expect("release");
    let mut g = b
        .lock("cond-fence")
        .if_fencing_token(t)
        .ttl(10 * SEC)
        .try_acquire()
        .await
        .expect("resume")
        .expect("the last token is still t, so the resumed acquire is granted");
    let t2 = g.fencing_token();
    assert!(t2 > t);
    g.release().await.expect("release");
    condition_failed(
        a.lock("cond-fence").if_fencing_token(t).try_acquire().await,
        "someone held it since t",
    );

    // The holder of t3 dies (stops renewing); its successor waits for the lease to run out and resumes.
    let dead = a.lock("cond-fence").ttl(ms(400)).acquire_lease().await.expect("holder");
    let t3 = dead.fencing_token;
    let mut g = b
        .lock("cond-fence")
        .if_fencing_token(t3)
        .ttl(10 * SEC)
        .wait(10 * SEC)
        .acquire()
        .await
        .expect("granted once the dead holder's lease ran out");
    assert!(g.fencing_token() > t3);
    let t4 = g.fencing_token();

    // A plain waiter queues first, then a conditional one: the release goes to the plain waiter, whose grant
    // makes the condition false, so the conditional waiter leaves without the lock.
    let plain = {
        let a = a.clone();
        tokio::spawn(async move { a.lock("cond-fence").ttl(10 * SEC).wait(10 * SEC).acquire().await })
    };
    let queued = |n: usize| {
        let b = b.clone();
        async move {
            eventually(10 * SEC, || async {
                b.inspect("cond-fence").await.is_ok_and(|i| i.queue.len() == n)
            })
            .await
        }
    };
    assert!(queued(1).await, "the plain waiter queued");
    let cond = {
        let b = b.clone();
        tokio::spawn(async move {
            b.lock("cond-fence")
                .if_fencing_token(t4)
                .ttl(10 * SEC)
                .wait(10 * SEC)
                .acquire()
                .await
        })
    };
    assert!(queued(2).await, "the conditional waiter queued behind it");
    g.release().await.expect("release t4");
    let mut p = plain.await.expect("join").expect("the plain waiter is granted first");
    assert!(p.fencing_token() > t4);
    p.release().await.expect("release");
    condition_failed(
        cond.await.expect("join"),
        "a grant came between t4 and the conditional waiter's turn",
    );
    let info = a.inspect("cond-fence").await.expect("inspect");
    assert!(
        info.holders.is_empty() && info.queue.is_empty(),
        "left behind: {info:?}"
    );
}

/// `if_not_granted_within(D)`: granted when nobody was granted within D, refused right after a grant, granted
/// again once D has passed; a window longer than the backend remembers is refused up front.
pub async fn condition_not_granted_within(h: &dyn Harness) {
    let a = h.client().await;
    if !offers_conditions(&a).await {
        return;
    }
    // Wide enough that a loaded host runs the next four calls well within it.
    let window = ms(1500);
    let mut g = a
        .lock("cond-cron")
        .if_not_granted_within(window)
        .try_acquire()
        .await
        .expect("first run")
        .expect("never granted: the first run goes ahead");
    g.release().await.expect("release");
    let ran = Instant::now();
    condition_failed(
        a.lock("cond-cron").if_not_granted_within(window).try_acquire().await,
        "a run within the window",
    );
    assert!(
        ran.elapsed() < window,
        "the test host is too slow for a {window:?} window"
    );
    // A plain grant, by someone else, counts as a grant too.
    let b = h.client().await;
    let mut plain = b
        .lock("cond-cron-plain")
        .try_acquire()
        .await
        .expect("plain")
        .expect("free");
    plain.release().await.expect("release");
    condition_failed(
        a.lock("cond-cron-plain")
            .if_not_granted_within(window)
            .try_acquire()
            .await,
        "a plain grant within the window",
    );
    // What is tested here is time itself: the window has to pass.
    tokio::time::sleep_until(ran + window + ms(50)).await;
    let mut g = a
        .lock("cond-cron")
        .if_not_granted_within(window)
        .try_acquire()
        .await
        .expect("after the window")
        .expect("the window has passed");
    g.release().await.expect("release");

    let r = a
        .lock("cond-cron")
        .if_not_granted_within(Duration::from_secs(23 * 3600))
        .try_acquire()
        .await;
    assert!(
        matches!(
            r,
            Err(Error::InvalidArgument {
                field: "ifNotGrantedWithin",
                ..
            })
        ),
        "a window longer than the backend remembers grants: {r:?}"
    );
}

/// Many clients race for one conditional grant, each both trying at once and waiting: exactly one wins per
/// condition, so the condition and the grant are one atomic step.
pub async fn condition_atomic(h: &dyn Harness) {
    let clients = [h.client().await, h.client().await, h.client().await];
    if !offers_conditions(&clients[0]).await {
        return;
    }
    let mut seed = clients[0].lock("cond-race-0").acquire().await.expect("seed");
    let t = seed.fencing_token();
    seed.release().await.expect("release");
    for round in 0..2 {
        let resource = format!("cond-race-{round}");
        let mut tasks = Vec::new();
        for i in 0..9 {
            let c = clients[i % clients.len()].clone();
            let resource = resource.clone();
            tasks.push(tokio::spawn(async move {
                let b = c.lock(resource).ttl(10 * SEC);
                let b = if round == 0 {
                    b.if_fencing_token(t)
                } else {
                    b.if_not_granted_within(30 * SEC)
                };
                // A third try once, the rest wait their turn; every winner holds briefly and releases.
                let wait = if i % 3 == 0 { Duration::ZERO } else { 10 * SEC };
                match b.wait(wait).acquire().await {
                    Ok(mut g) => {
                        tokio::task::yield_now().await;
                        g.release().await.expect("release");
                        Ok(true)
                    }
                    Err(Error::ConditionFailed { .. }) => Ok(false),
                    Err(Error::Timeout { .. }) if wait.is_zero() => Ok(false),
                    Err(e) => Err(e),
                }
            }));
        }
        let mut won = 0;
        for task in tasks {
            won += usize::from(task.await.expect("join").expect("acquire"));
        }
        assert_eq!(won, 1, "round {round}: exactly one conditional acquire may win");
    }
}

/// For a backend whose conditions are a setting of the store (`conditions=on` in the URL): off by default; a
/// process that connects later without asking follows the store, and a grant made by the recording process is
/// what the later one's condition sees. `h` runs the backend in its default mode.
pub async fn conditions_setting(h: &dyn Harness, url: &str) {
    let before = h.client().await;
    assert!(!before.capabilities().conditions, "off by default");
    let r = before.lock("r").if_fencing_token(1).try_acquire().await;
    assert!(matches!(r, Err(Error::Unsupported { .. })), "{r:?}");
    let on = warden::Warden::connect(&format!("{url}&conditions=on"))
        .await
        .expect("connect recording");
    assert!(on.capabilities().conditions);
    let later = h.client().await;
    assert!(later.capabilities().conditions, "a later process follows the store");
    let mut g = on.lock("r").try_acquire().await.expect("try").expect("free");
    let t = g.fencing_token();
    g.release().await.expect("release");
    let mut again = later
        .lock("r")
        .if_fencing_token(t)
        .try_acquire()
        .await
        .expect("resume")
        .expect("t is the last token");
    again.release().await.expect("release");
    condition_failed(
        later.lock("r").if_fencing_token(t).try_acquire().await,
        "granted since t",
    );
    // A record is forgotten once older than the process's retention period (`retain_ms`, here 1 s): the token
    // no longer known, and a window within the period passes. What is tested here is time itself.
    let short = warden::Warden::connect(&format!("{url}&retain_ms=1000"))
        .await
        .expect("connect with a short retention");
    let mut g = short.lock("kept").try_acquire().await.expect("try").expect("free");
    let (t, granted) = (g.fencing_token(), Instant::now());
    g.release().await.expect("release");
    tokio::time::sleep_until(granted + ms(1100)).await;
    condition_failed(
        short.lock("kept").if_fencing_token(t).try_acquire().await,
        "a token older than the retention period",
    );
    let mut g = short
        .lock("kept")
        .if_not_granted_within(ms(900))
        .try_acquire()
        .await
        .expect("window")
        .expect("no grant remembered within the window");
    g.release().await.expect("release");
    let r = warden::Warden::connect(&format!("{url}&conditions=maybe")).await;
    assert!(
        matches!(
            r,
            Err(Error::InvalidArgument {
                field: "conditions",
                ..
            })
        ),
        "{r:?}"
    );
}
