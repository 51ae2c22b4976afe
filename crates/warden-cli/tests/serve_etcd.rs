//! `warden serve --backend etcd://…`: two service instances over one three-member etcd cluster behave as one
//! service, and a cluster that goes away is a 503 the client can retry, until it returns.

mod common;
#[path = "common/two_instances.rs"]
mod two_instances;

use std::sync::Mutex;
use std::time::Duration;
use warden_testkit::EtcdCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_etcd_cluster_hand_a_lock_over_and_survive_the_cluster_restarting() {
    let cluster = Mutex::new(EtcdCluster::start(3));
    let backend = format!("{}?timeout_ms=500", cluster.lock().expect("cluster").url());
    two_instances::two_instances_hand_a_lock_over_and_survive_the_database_restarting(
        &backend,
        || cluster.lock().expect("cluster").kill_all(),
        || {
            let mut c = cluster.lock().expect("cluster");
            for i in 0..c.members.len() {
                c.restart(i);
            }
            for i in 0..c.members.len() {
                assert!(
                    c.wait_healthy(i, Duration::from_secs(20)),
                    "member {i} did not come back"
                );
            }
        },
    )
    .await;
}
