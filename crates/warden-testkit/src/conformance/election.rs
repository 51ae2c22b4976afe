//! Leader election.

#[allow(unused_imports)]
use super::*;

/// Leader election: one leader at a time, FIFO among candidates, handover on resign within 50 ms, the lost
/// signal when the leadership lease is taken away, and `observe` reporting every change.
pub async fn election_handover(h: &dyn Harness) {
    use futures::StreamExt;
    let clients = [h.client().await, h.client().await, h.client().await];
    let election = |i: usize| clients[i].election("conf").ttl(2 * SEC);
    let first = election(0).campaign("c0").await.expect("first campaign");
    let mut observer = Box::pin(election(0).observe_every(ms(5)).observe());
    let seen = observer.next().await.expect("stream").expect("observe");
    assert_eq!(seen.map(|l| l.candidate_id), Some("c0".to_string()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 1..3 {
        let e = election(i);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let l = e.campaign(&format!("c{i}")).await.expect("campaign");
            let _ = tx.send((Instant::now(), l));
        }));
        let probe = election(0);
        assert!(
            eventually(5 * SEC, || async {
                clients[0]
                    .inspect(&warden::election::election_resource(probe.name()))
                    .await
                    .map(|r| r.queue.len() == i)
                    .unwrap_or(false)
            })
            .await,
            "candidate c{i} never queued"
        );
    }
    assert_eq!(
        election(1).leader().await.expect("leader").map(|l| l.candidate_id),
        Some("c0".to_string())
    );
    let first_fence = first.fencing_token();
    let resigned = Instant::now();
    first.resign().await.expect("resign");
    let (at, second) = tokio::time::timeout(5 * SEC, rx.recv())
        .await
        .expect("handover")
        .expect("leader");
    assert!(at - resigned < ms(50), "handover took {:?}", at - resigned);
    assert_eq!(second.candidate_id(), "c1", "candidates are served in arrival order");
    assert!(second.fencing_token() > first_fence);
    let seen = tokio::time::timeout(5 * SEC, observer.next())
        .await
        .expect("observe")
        .expect("stream");
    let seen = seen.expect("observe");
    // The observer may catch the short gap between the terms; it must end on c1.
    let seen = match seen {
        None => observer.next().await.expect("stream").expect("observe"),
        some => some,
    };
    assert_eq!(seen.map(|l| l.candidate_id), Some("c1".to_string()));

    // Taken away behind its back: the leader learns it through the lost signal, and c2 takes over.
    h.revoke(&warden::election::election_resource("conf")).await;
    tokio::time::timeout(3 * SEC, second.lost()).await.expect("lost signal");
    let (_, third) = tokio::time::timeout(5 * SEC, rx.recv())
        .await
        .expect("takeover")
        .expect("leader");
    assert_eq!(third.candidate_id(), "c2");
    assert!(third.fencing_token() > second.fencing_token());
    third.resign().await.expect("resign");
    drop(second);
    for t in tasks {
        t.await.expect("task");
    }
    assert!(election(0).leader().await.expect("leader").is_none());
}
