//! Intention kinds and path locks (multi-granularity locking): the kinds' compatibility matrix on one resource,
//! a path lock excluding what is below and above it but not its siblings, and FIFO across levels (a waiting
//! parent is granted before children that come after it). (Run by `compatibility_matrix`.)

#[allow(unused_imports)]
use super::*;
use warden::LockKind::{Exclusive, IntentExclusive, IntentShared, Shared};

/// Checks the intention kinds and path locks where declared, and their refusal elsewhere.
pub async fn path_locks(h: &dyn Harness) {
    let a = h.client().await;
    let b = h.client().await;
    if !a.capabilities().intentions {
        let r = a.path("p/q").try_acquire().await;
        assert!(matches!(r, Err(Error::Unsupported { .. })), "a path lock: {r:?}");
        let r = a.lock("p").kind(IntentShared).try_acquire().await;
        assert!(matches!(r, Err(Error::Unsupported { .. })), "an intention: {r:?}");
        return;
    }
    // The matrix, pair by pair, on resources of their own.
    let kinds = [IntentShared, IntentExclusive, Shared, Exclusive];
    for first in kinds {
        for second in kinds {
            let resource = format!("pm-{}-{}", first.as_str(), second.as_str());
            let mut held = a
                .lock(&resource)
                .kind(first)
                .try_acquire()
                .await
                .expect("first")
                .expect("a free resource");
            let got = b.lock(&resource).kind(second).try_acquire().await.expect("second");
            assert_eq!(
                got.is_some(),
                first.compatible_with(second),
                "{} beside {}",
                second.as_str(),
                first.as_str()
            );
            if let Some(mut g) = got {
                g.release().await.expect("release second");
            }
            held.release().await.expect("release first");
        }
    }

    // A path lock excludes below and above, never siblings.
    let mut eu = a.path("orders/eu").ttl(10 * SEC).acquire().await.expect("orders/eu");
    let token = eu.fencing_token("orders/eu").expect("the path's token");
    assert!(token > 0);
    let mut sibling = b
        .path("orders/us/7")
        .try_acquire()
        .await
        .expect("sibling")
        .expect("a sibling's child is free");
    for (path, shared) in [
        ("orders/eu/42", false),
        ("orders/eu/42", true),
        ("orders", false),
        ("orders", true),
    ] {
        let p = b.path(path);
        let p = if shared { p.shared() } else { p };
        let got = p.try_acquire().await.expect("try");
        assert!(got.is_none(), "{path} (shared: {shared}) granted beside orders/eu");
    }
    assert!(
        b.lock("orders/eu").try_acquire().await.expect("plain").is_none(),
        "a plain lock on the held node"
    );
    sibling.release().await.expect("release sibling");
    eu.release().await.expect("release orders/eu");
    // A try of a free path is granted, whichever of its levels' answers comes first (twenty times: a try once
    // let go of a level whose answer beat the root's, and gave up).
    for _ in 0..20 {
        let mut g = b
            .path("orders/eu/7")
            .try_acquire()
            .await
            .expect("try")
            .expect("a free path");
        g.release().await.expect("release");
    }
    // Shared paths share, down the tree too.
    let mut r1 = a
        .path("orders/eu")
        .shared()
        .try_acquire()
        .await
        .expect("r1")
        .expect("shared");
    let mut r2 = b
        .path("orders/eu/42")
        .shared()
        .try_acquire()
        .await
        .expect("r2")
        .expect("a shared child beside a shared parent");
    assert!(b.path("orders/eu/43").try_acquire().await.expect("x").is_none());
    r1.release().await.expect("release r1");
    r2.release().await.expect("release r2");
    // Bad paths are refused, naming the field.
    for bad in ["", "/orders", "orders/", "orders//eu"] {
        let r = a.path(bad).try_acquire().await;
        assert!(
            matches!(r, Err(Error::InvalidArgument { field: "path", .. })),
            "{bad:?}: {r:?}"
        );
    }

    // FIFO across levels: a parent waiting for a child is granted before a child that comes after it.
    let mut child = a.path("fleet/eu/1").ttl(10 * SEC).acquire().await.expect("child");
    let c = h.client().await;
    let parent = tokio::spawn(async move {
        let mut g = c
            .path("fleet/eu")
            .ttl(10 * SEC)
            .wait(10 * SEC)
            .acquire()
            .await
            .expect("parent");
        let fence = g.fencing_token("fleet/eu").expect("token");
        g.release().await.expect("release parent");
        fence
    });
    assert!(
        eventually(5 * SEC, || async {
            b.inspect("fleet/eu").await.map(|r| r.queue.len() == 1).unwrap_or(false)
        })
        .await,
        "the parent did not queue on fleet/eu"
    );
    assert!(
        b.path("fleet/eu/2").try_acquire().await.expect("late child").is_none(),
        "a later child went ahead of the waiting parent"
    );
    let later = b.path("fleet/eu/2").ttl(10 * SEC).wait(10 * SEC).acquire();
    let released = async {
        child.release().await.expect("release child");
    };
    let (later, ()) = tokio::join!(later, released);
    let mut later = later.expect("the later child, after the parent");
    let parent_fence = parent.await.expect("parent task");
    let later_fence = later.fencing_token("fleet/eu").expect("intention token");
    assert!(
        parent_fence < later_fence,
        "the parent ({parent_fence}) was granted after the later child's intention ({later_fence})"
    );
    later.release().await.expect("release later");
}
