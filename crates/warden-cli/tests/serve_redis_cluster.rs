//! `warden serve --backend redis+cluster://…`: two service instances over one Redis Cluster (3 primaries, 3
//! replicas) behave as one service, and a cluster that goes away is a 503 the client can retry, until it returns.

mod common;
#[path = "common/two_instances.rs"]
mod two_instances;

use std::sync::Mutex;
use std::time::Duration;
use warden_testkit::RedisCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_cluster_hand_a_lock_over_and_survive_the_cluster_restarting() {
    let cluster = Mutex::new(RedisCluster::start(3, 1, Duration::from_millis(2000)));
    let backend = format!("{}?timeout_ms=500", cluster.lock().expect("cluster").url());
    two_instances::two_instances_hand_a_lock_over_and_survive_the_database_restarting(
        &backend,
        || {
            for n in &mut cluster.lock().expect("cluster").nodes {
                n.kill();
            }
        },
        || {
            let mut c = cluster.lock().expect("cluster");
            for n in &mut c.nodes {
                n.restart(false);
            }
            c.wait_ok();
        },
    )
    .await;
}
