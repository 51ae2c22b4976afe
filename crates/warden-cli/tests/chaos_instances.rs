//! The chaos suite across service instances: two `warden serve` processes over one Redis, one killed with
//! SIGKILL while waiters are parked on it. Its dead waiters stop blocking the queue within the waiter lease;
//! the survivors are served in arrival order. Prints its figure (`-- --nocapture`).

mod common;

use common::{Instance, WAITER_LEASE};
use std::time::Duration;
use tokio::time::Instant;
use warden::Warden;
use warden_testkit::RedisServer;

async fn queue_len(w: &Warden, resource: &str) -> usize {
    w.inspect(resource).await.map(|i| i.queue.len()).unwrap_or(usize::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_an_instance_killed_with_waiters_parked_on_it() {
    let redis = RedisServer::start();
    let backend = format!("{}?timeout_ms=500", redis.url());
    let mut a = Instance::start(&backend);
    let b = Instance::start(&backend);
    let on_a = Warden::connect(&a.url).await.expect("client of A");
    let on_b = Warden::connect(&b.url).await.expect("client of B");
    let mut holder = on_b
        .lock("shift")
        .ttl(Duration::from_secs(30))
        .acquire()
        .await
        .expect("holder on B");
    // Queue: four waiters parked on A first, then four on B, each queued before the next arrives.
    let mut doomed = Vec::new();
    let mut survivors = Vec::new();
    for i in 0..8 {
        let w = if i < 4 { on_a.clone() } else { on_b.clone() };
        let task = tokio::spawn(async move {
            let mut g = w
                .lock("shift")
                .ttl(Duration::from_secs(30))
                .wait(Duration::from_secs(20))
                .acquire()
                .await?;
            let (at, fence) = (Instant::now(), g.fencing_token());
            g.release().await?;
            Ok::<_, warden::Error>((i, at, fence))
        });
        if i < 4 {
            doomed.push(task);
        } else {
            survivors.push(task);
        }
        let queued = warden_testkit::eventually(Duration::from_secs(5), || async {
            queue_len(&on_b, "shift").await == i + 1
        })
        .await;
        assert!(queued, "waiter {i} never showed in the queue");
    }
    // A dies with its four waiters parked at the head of the queue.
    tokio::task::spawn_blocking(move || {
        a.kill();
        a
    })
    .await
    .expect("kill A");
    for t in doomed {
        let r = t.await.expect("task");
        assert!(r.is_err(), "a waiter on the killed instance was granted: {r:?}");
    }
    let released = Instant::now();
    holder.release().await.expect("release on B");
    let mut grants = Vec::new();
    for t in survivors {
        grants.push(t.await.expect("task").expect("a waiter on B"));
    }
    let first = grants.iter().map(|&(_, at, _)| at).min().expect("grants") - released;
    let last = grants.iter().map(|&(_, at, _)| at).max().expect("grants") - released;
    grants.sort_by_key(|&(_, _, fence)| fence);
    let order: Vec<usize> = grants.iter().map(|&(i, _, _)| i).collect();
    println!(
        "instance killed with 4 waiters parked at the head of the queue: the first of 4 waiters on the other \
         instance granted {:.0} ms after the release (waiter lease {} ms), the last {:.0} ms; order {order:?}",
        first.as_secs_f64() * 1000.0,
        WAITER_LEASE.as_millis(),
        last.as_secs_f64() * 1000.0
    );
    assert_eq!(order, vec![4, 5, 6, 7], "survivors not served in arrival order");
    assert!(
        first <= WAITER_LEASE + Duration::from_millis(500),
        "dead waiters blocked the queue for {first:?}; their lease is {WAITER_LEASE:?}"
    );
}
