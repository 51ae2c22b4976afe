//! Lock groups: several resources as one lease, all or nothing, never deadlocking.

#[allow(unused_imports)]
use super::*;

async fn free(w: &warden::Warden, resource: &str) -> bool {
    match w.lock(resource).try_acquire().await.expect("probe") {
        Some(mut g) => {
            g.release().await.expect("release probe");
            true
        }
        None => false,
    }
}

/// A group whose member is held elsewhere holds nothing, whether it tries or waits; once free it gets every
/// member, each with its own fencing token, and one release frees them all.
pub async fn group_all_or_nothing(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    let mut blocker = a.lock("grp/b").ttl(10 * SEC).acquire().await.expect("blocker");
    let names = ["grp/c", "grp/a", "grp/b"];
    assert!(
        b.group(names).try_acquire().await.expect("try").is_none(),
        "a group was granted with a member held elsewhere"
    );
    assert!(
        free(&a, "grp/a").await && free(&a, "grp/c").await,
        "a refused group kept a member"
    );
    let start = Instant::now();
    match b.group(names).wait(ms(300)).acquire().await {
        Err(Error::Timeout { resource, .. }) => assert_eq!(resource, "grp/b", "the timeout names the busy member"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(start.elapsed() >= ms(290), "gave up early: {:?}", start.elapsed());
    assert!(
        free(&a, "grp/a").await && free(&a, "grp/c").await,
        "a timed-out group kept a member"
    );

    // Released while the group waits: the group gets all three.
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move { b.group(names).ttl(10 * SEC).wait(10 * SEC).acquire().await })
    };
    let probe = a.clone();
    assert!(
        eventually(5 * SEC, || async {
            probe
                .inspect("grp/b")
                .await
                .map(|r| r.queue.len() == 1)
                .unwrap_or(false)
        })
        .await,
        "the group did not queue for its busy member"
    );
    let blocked_fence = blocker.fencing_token();
    blocker.release().await.expect("release blocker");
    let mut group = waiter.await.expect("task").expect("group after release");
    assert_eq!(
        group.members().iter().map(|m| m.resource()).collect::<Vec<_>>(),
        ["grp/a", "grp/b", "grp/c"],
        "members in the global order"
    );
    assert!(group.fencing_token("grp/b").expect("member") > blocked_fence);
    assert_eq!(group.group_id().split('.').count(), 3);
    for r in names {
        assert!(!free(&a, r).await, "`{r}` not held by the group");
    }
    group.release().await.expect("release group");
    group.release().await.expect("second release is a no-op");
    for r in names {
        assert!(free(&a, r).await, "`{r}` still held after the group's release");
    }
    let later = a.lock("grp/a").acquire().await.expect("later");
    assert!(later.fencing_token() > group.fencing_token("grp/a").expect("member"));

    for (members, why) in [(vec![], "empty"), (vec!["x", "y", "x"], "twice")] {
        let r = b.group(members).try_acquire().await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { field: "members", .. })),
            "{why}: {r:?}"
        );
    }
}

/// Clients naming the same resources in opposite orders, with plain locks and shared members mixed in, all
/// finish (no deadlock), and no exclusive member is ever held twice at once.
pub async fn group_no_deadlock(h: &dyn Harness) {
    const TASKS: usize = 4;
    const ROUNDS: usize = 10;
    let inside: Arc<[AtomicUsize; 3]> = Arc::new(Default::default());
    let overlaps = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let w = h.client().await.with_client_id(format!("grp-{t}")).expect("client id");
        let (inside, overlaps, done) = (inside.clone(), overlaps.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            // Exclusive members, in an order of this task's own; odd tasks also share `dl/s`.
            let mut order = vec![0usize, 1, 2];
            order.rotate_left(t % 3);
            if t % 2 == 1 {
                order.reverse();
            }
            for round in 0..ROUNDS {
                let mut members: Vec<usize> = order.clone();
                if round % 3 == 2 {
                    members.truncate(1); // now and then a group of one
                }
                let names: Vec<String> = members.iter().map(|i| format!("dl/{i}")).collect();
                let mut b = w.group(names).ttl(5 * SEC).wait(60 * SEC);
                if t % 2 == 1 {
                    b = b.shared("dl/s");
                }
                let mut g = b.acquire().await.expect("group");
                for &i in &members {
                    if inside[i].fetch_add(1, Ordering::SeqCst) != 0 {
                        overlaps.fetch_add(1, Ordering::SeqCst);
                    }
                }
                tokio::task::yield_now().await;
                for &i in &members {
                    inside[i].fetch_sub(1, Ordering::SeqCst);
                }
                g.release().await.expect("release");
                done.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    assert_eq!(
        overlaps.load(Ordering::SeqCst),
        0,
        "an exclusive member held twice at once"
    );
    assert_eq!(done.load(Ordering::SeqCst), TASKS * ROUNDS);
}

/// One renewal renews every member; a member's lease running out fires the group's lost signal, and the
/// resources go to the next waiter.
pub async fn group_renew_and_lost(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    let g = a
        .group(["gl/a", "gl/b"])
        .ttl(ms(400))
        .auto_renew(false)
        .acquire()
        .await
        .expect("group");
    g.renew(5 * SEC).await.expect("renew");
    for m in g.members() {
        let left = m
            .expires_at()
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        assert!(left > 3 * SEC, "`{}` not renewed: {left:?} left", m.resource());
    }
    drop(g);

    let g = a
        .group(["gl/c", "gl/d"])
        .ttl(ms(300))
        .auto_renew(false)
        .acquire()
        .await
        .expect("group");
    let next = b.lock("gl/d").ttl(5 * SEC).wait(5 * SEC).acquire();
    let (lost, next) = tokio::join!(tokio::time::timeout(3 * SEC, g.lost()), next);
    assert!(lost.is_ok(), "the group's lost signal did not fire");
    assert!(g.is_lost());
    let next = next.expect("the lapsed member goes to the waiter");
    assert!(next.fencing_token() > g.fencing_token("gl/d").expect("member"));
}
