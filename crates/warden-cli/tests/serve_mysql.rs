//! `warden serve --backend mysql://…`: two service instances over one throwaway MariaDB behave as one service
//! (a waiter on one is woken by a release on the other), and a database that goes away is a 503
//! `backend_unavailable` the client can retry, until it returns.

mod common;
#[path = "common/two_instances.rs"]
mod two_instances;

use warden_testkit::mysql_harness::MysqlHarness;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_mariadb_hand_a_lock_over_and_survive_the_database_restarting() {
    let db = MysqlHarness::new();
    two_instances::two_instances_hand_a_lock_over_and_survive_the_database_restarting(
        db.url(),
        || db.server.lock().expect("server").kill(),
        || db.server.lock().expect("server").restart(),
    )
    .await;
}
