//! `warden serve --backend zk://…`: two service instances over one three-server ZooKeeper ensemble behave as
//! one service, and an ensemble that goes away is a 503 the client can retry, until it returns.

mod common;
#[path = "common/two_instances.rs"]
mod two_instances;

use std::sync::Mutex;
use std::time::Duration;
use warden_testkit::ZkEnsemble;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_zookeeper_ensemble_hand_a_lock_over_and_survive_the_ensemble_restarting() {
    let ensemble = Mutex::new(ZkEnsemble::start(3));
    let backend = format!(
        "{}?timeout_ms=500&session_timeout=6s",
        ensemble.lock().expect("ensemble").url()
    );
    two_instances::two_instances_hand_a_lock_over_and_survive_the_database_restarting(
        &backend,
        || ensemble.lock().expect("ensemble").kill_all(),
        || {
            let mut e = ensemble.lock().expect("ensemble");
            for i in 0..e.members.len() {
                e.restart(i);
            }
            for i in 0..e.members.len() {
                assert!(
                    e.wait_serving(i, Duration::from_secs(30)),
                    "server {i} did not come back"
                );
            }
        },
    )
    .await;
}
