use std::time::Duration;
use tokio::time::Instant;
use warden_testkit::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe() {
    let mut cluster = EtcdCluster::start(3);
    let url = format!("{}?timeout_ms=1000", cluster.url());
    let a = warden_testkit::harness::test_client(&url).await;
    let leader = cluster.leader().expect("a leader");
    eprintln!("leader {leader}");
    cluster.kill(leader);
    let t0 = Instant::now();
    for i in 0..30 {
        let s = Instant::now();
        let r = a.lock(format!("p{i}")).try_acquire().await;
        eprintln!(
            "{:?} took {:?}: {:?}",
            t0.elapsed(),
            s.elapsed(),
            r.as_ref().map(|g| g.is_some()).map_err(|e| e.to_string())
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
