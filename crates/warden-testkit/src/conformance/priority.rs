//! Waiter priorities: a higher priority is granted first, FIFO within one priority, and a waiter's place ages
//! with its wait, so a later higher-priority waiter overtakes it only if it arrives soon enough after it.
//! (Run by `fifo_order`, on its harness: a consensus backend starts a cluster per test.)

#[allow(unused_imports)]
use super::*;

type Waiting = tokio::task::JoinHandle<(String, u64)>;

/// Queues `(client id, priority)` waiters on `resource`, behind `already` queued ones, one after the other (each
/// in the queue before the next comes); each releases as soon as it is granted and answers its fencing token.
async fn queue_up(
    h: &dyn Harness,
    resource: &'static str,
    already: usize,
    waiters: &[(&'static str, i32)],
) -> Vec<Waiting> {
    let probe = h.client().await;
    let mut tasks = Vec::new();
    for (n, (name, priority)) in waiters.iter().copied().enumerate() {
        let w = h.client().await;
        tasks.push(tokio::spawn(async move {
            let mut g = w
                .lock(resource)
                .client_id(name)
                .priority(priority)
                .ttl(10 * SEC)
                .wait(30 * SEC)
                .acquire()
                .await
                .expect("waiter");
            let fence = g.fencing_token();
            g.release().await.expect("release");
            (name.to_string(), fence)
        }));
        assert!(
            eventually(5 * SEC, || async {
                probe
                    .inspect(resource)
                    .await
                    .map(|r| r.queue.len() == already + n + 1)
                    .unwrap_or(false)
            })
            .await,
            "{name} did not show up in the queue of {resource}"
        );
    }
    tasks
}

/// The waiters' client ids in the order of their grants (by fencing token).
async fn grant_order(tasks: Vec<Waiting>) -> Vec<String> {
    let mut granted = Vec::new();
    for t in tasks {
        granted.push(t.await.expect("waiter task"));
    }
    granted.sort_by_key(|(_, fence)| *fence);
    granted.into_iter().map(|(name, _)| name).collect()
}

/// Higher priorities first, FIFO within one; aging: a waiter that waited longer than a newcomer's head start
/// stays ahead of it. A backend without priorities refuses one (and takes 0, plain FIFO).
pub async fn priority_order(h: &dyn Harness) {
    let a = h.client().await;
    if !a.capabilities().priorities {
        let r = a.lock("prio-none").priority(5).try_acquire().await;
        assert!(
            matches!(r, Err(Error::Unsupported { .. })),
            "a priority on a backend without them: {r:?}"
        );
        let mut g = a
            .lock("prio-none")
            .priority(0)
            .try_acquire()
            .await
            .expect("0 is plain FIFO");
        g.as_mut().expect("free").release().await.expect("release");
        return;
    }
    let r = a.lock("prio").priority(101).try_acquire().await;
    assert!(
        matches!(r, Err(Error::InvalidArgument { field: "priority", .. })),
        "{r:?}"
    );

    let mut holder = a.lock("prio").ttl(30 * SEC).acquire().await.expect("holder");
    let tasks = queue_up(
        h,
        "prio",
        0,
        &[("first", 0), ("second", 0), ("urgent", 50), ("low", -50)],
    )
    .await;
    let queued: Vec<String> = a
        .inspect("prio")
        .await
        .expect("inspect")
        .queue
        .into_iter()
        .map(|w| w.client_id)
        .collect();
    assert_eq!(queued, ["urgent", "first", "second", "low"], "the queue's order");
    holder.release().await.expect("release");
    assert_eq!(grant_order(tasks).await, ["urgent", "first", "second", "low"]);

    // Aging: `waited` has waited 600 ms when `behind` (200 ms head start) and `ahead` (3 s) arrive.
    let mut holder = a.lock("prio-aging").ttl(30 * SEC).acquire().await.expect("holder");
    let mut tasks = queue_up(h, "prio-aging", 0, &[("waited", 0)]).await;
    // The time under test, not a synchronisation: the first waiter's place ages while it waits.
    tokio::time::sleep(ms(600)).await;
    tasks.extend(queue_up(h, "prio-aging", 1, &[("behind", 2), ("ahead", 30)]).await);
    holder.release().await.expect("release");
    assert_eq!(grant_order(tasks).await, ["ahead", "waited", "behind"]);
    aging_under_a_stream(h).await;
}

/// A plain waiter under a constant stream of priority-3 waiters (one every 20 ms, each holding 30 ms: more
/// than the lock can serve) is granted: only those sent within 300 ms (their head start) after it queued go
/// first; without aging it would wait for the whole stream.
async fn aging_under_a_stream(h: &dyn Harness) {
    let a = h.client().await;
    let mut holder = a.lock("prio-stream").ttl(30 * SEC).acquire().await.expect("holder");
    let low = queue_up(h, "prio-stream", 0, &[("low", 0)]).await;
    // Its place is at most now: whoever is sent 300 ms (and a clock tick) after this must queue behind it.
    let queued = Instant::now();
    let stream_end = queued + ms(1500);
    let mut stream = Vec::new();
    let (mut released, mut overtook) = (false, 0);
    while Instant::now() < stream_end {
        let w = h.client().await;
        let sent = Instant::now();
        stream.push(tokio::spawn(async move {
            let mut g = w
                .lock("prio-stream")
                .priority(3)
                .ttl(10 * SEC)
                .wait(30 * SEC)
                .acquire()
                .await
                .expect("stream waiter");
            // The hold under test, not a synchronisation: the stream asks for more than the lock can serve.
            tokio::time::sleep(ms(30)).await;
            let fence = g.fencing_token();
            g.release().await.expect("release");
            (sent, fence)
        }));
        // Once three of the stream queued, the holder lets go (a release hands the lock to the head of the
        // queue at once on some backends); those then ahead of the plain waiter must go first.
        if !released && stream.len() >= 3 {
            let probe = a.clone();
            let ahead = eventually(5 * SEC, || async {
                probe
                    .inspect("prio-stream")
                    .await
                    .map(|r| r.queue.len() >= 4)
                    .unwrap_or(false)
            });
            assert!(ahead.await, "the stream's first waiters never queued");
            let q = a.inspect("prio-stream").await.expect("inspect").queue;
            overtook = q.iter().take_while(|w| w.client_id != "low").count();
            holder.release().await.expect("release");
            released = true;
        }
        tokio::time::sleep(ms(20)).await;
    }
    let low_fence = low.into_iter().next().expect("low").await.expect("low waiter").1;
    let (mut before, mut after) = (0, 0);
    for s in stream {
        let (sent, fence) = s.await.expect("stream waiter");
        if fence < low_fence {
            before += 1;
            assert!(
                sent < queued + ms(310),
                "a waiter sent {:?} after the plain one queued went ahead of it: its head start is 300 ms",
                sent - queued
            );
        } else {
            after += 1;
        }
    }
    assert!(
        before >= overtook,
        "{overtook} queued ahead of the plain waiter, but {before} went first"
    );
    assert!(
        after > 0,
        "the plain waiter was granted only after the whole stream ({before} went first)"
    );
}
