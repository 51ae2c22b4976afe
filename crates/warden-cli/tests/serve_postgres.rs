//! `warden serve --backend postgres://…`: two service instances over one throwaway PostgreSQL behave as one
//! service (a waiter on one is woken by a release on the other), and a database that goes away is a 503
//! `backend_unavailable` the client can retry, until it returns.

mod common;
#[path = "common/two_instances.rs"]
mod two_instances;

use std::sync::Mutex;
use warden_testkit::PostgresServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_over_one_postgres_hand_a_lock_over_and_survive_the_database_restarting() {
    let pg = Mutex::new(PostgresServer::start());
    let backend = format!("{}?timeout_ms=500", pg.lock().expect("server").url());
    two_instances::two_instances_hand_a_lock_over_and_survive_the_database_restarting(
        &backend,
        || pg.lock().expect("server").kill(),
        || pg.lock().expect("server").restart(),
    )
    .await;
}
