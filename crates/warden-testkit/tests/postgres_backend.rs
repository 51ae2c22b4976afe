//! `postgres://` beyond the conformance suite: durability across a crash, a database that stops answering,
//! the schema created by many processes at once, table prefixes, 20 processes sharing a counter, and a call's
//! uncontended operations run as one statement each.

use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::postgres_harness::{connect, PostgresHarness};
use warden_testkit::sql_faults::{self, Database};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_fences_survive_a_crash_and_work_resumes_without_restarting_warden() {
    sql_faults::leases_and_fences_survive_a_crash(&PostgresHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_fast_and_the_holder_learns_it_lost_before_its_lease_ends() {
    sql_faults::a_stopped_database_fails_fast_and_the_holder_learns_it_lost(&PostgresHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_starting_at_once_create_the_schema_once() {
    let version = warden::backend::postgres::SCHEMA_VERSION;
    sql_faults::many_processes_starting_at_once_create_the_schema_once(&PostgresHarness::new(), version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_schema_upgrades_with_its_leases() {
    let version = warden::backend::postgres::SCHEMA_VERSION;
    let to_v1 = [
        "ALTER TABLE up_resources DROP COLUMN permits, DROP COLUMN intent_until, DROP COLUMN head_place",
        "ALTER TABLE up_waiters DROP COLUMN place",
    ];
    let h = PostgresHarness::new();
    sql_faults::a_version_one_schema_upgrades_with_its_leases(&h, &to_v1, version).await;
    // A process of the previous version, still running through the upgrade, calls the functions of its own
    // signature: they still answer (waiting with priority 0).
    let granted = h
        .ints(
            "SELECT count(*) FROM up_acquire('older', 0, 'older-id', 'exclusive', 1000, 'c', 'w', 1000, NULL, \
             NULL, 10) WHERE status = 'granted'",
        )
        .await;
    assert_eq!(granted, vec![1], "the acquire of the previous version's signature");
    let queued = h
        .ints(
            "SELECT count(*) FROM up_acquire_if('g0', 'older', 0, 'older-2', 'exclusive', 1000, 'c', 'w2', 1000, \
             NULL, NULL, 10) WHERE status = 'queued'",
        )
        .await;
    assert_eq!(
        queued,
        vec![1],
        "the conditional acquire of the previous version's signature"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_two_applications_apart_and_a_password_is_never_shown() {
    let h = PostgresHarness::new();
    let a = Warden::connect(&format!("{}&prefix=app_a_", h.url())).await.expect("a");
    let b = Warden::connect(&format!("{}&prefix=app_b_", h.url())).await.expect("b");
    let _ga = a.lock("same").acquire().await.expect("a");
    let _gb = b
        .lock("same")
        .acquire()
        .await
        .expect("b: another prefix is another namespace");
    // A wrong password: the error names the host, never the password.
    let db = connect(&h.server_url()).await;
    db.batch_execute("CREATE ROLE locker LOGIN PASSWORD 'right-one'")
        .await
        .expect("role");
    let port = h.server.lock().expect("server").port();
    let r = Warden::connect(&format!(
        "postgres://locker:hunter2@127.0.0.1:{port}/postgres?timeout_ms=2000"
    ))
    .await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1") && !msg.contains("hunter2"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_processes_times_a_hundred_increments_end_at_exactly_2000_with_increasing_fences() {
    sql_faults::twenty_processes_share_a_counter(&PostgresHarness::new(), env!("CARGO_BIN_EXE_counter_client")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_forgets_ended_leases_and_idle_resources_without_losing_counts_or_fence_order() {
    sql_faults::the_sweep_forgets_without_losing_counts_or_fence_order(&PostgresHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_anything_weaker_or_wrong_is_refused_with_a_sentence() {
    let pg = warden_testkit::PostgresServer::start_tls();
    let ca = pg.ca_path().expect("CA").display().to_string();
    let base = format!("{}?timeout_ms=2000", pg.url());
    let url = format!("{base}&sslmode=verify-full&sslrootcert={ca}");
    let w = Warden::connect(&url).await.expect("connect over TLS");
    let mut g = w.lock("tls").acquire().await.expect("acquire over TLS");
    // The pooled connections and the listening one are all encrypted: the database says so.
    let db = connect(&pg.url()).await;
    let plain: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a LEFT JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'warden' AND NOT coalesce(s.ssl, false)",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert_eq!(plain, 0, "a warden connection is not encrypted");
    let encrypted: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid) \
             WHERE a.application_name = 'warden' AND s.ssl",
            &[],
        )
        .await
        .expect("pg_stat_ssl")
        .get(0);
    assert!(
        encrypted >= 2,
        "expected the listening and a pooled connection, found {encrypted}"
    );
    g.release().await.expect("release");
    // Another CA: refused, naming the host; a mode that checks nothing: refused before connecting.
    let other = warden_testkit::PostgresServer::start_tls();
    let wrong = other.ca_path().expect("CA").display().to_string();
    let r = Warden::connect(&format!("{base}&sslmode=verify-full&sslrootcert={wrong}")).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1"), "{msg}");
    let r = Warden::connect(&format!("{base}&sslmode=require")).await;
    assert!(
        matches!(r, Err(Error::InvalidArgument { field: "sslmode", .. })),
        "{r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_whose_listening_connection_dies_still_gets_the_lock_handed_to_it() {
    let h = PostgresHarness::new();
    let a = Warden::connect(h.url()).await.expect("A");
    let b = Warden::connect(&format!("{}&application_name=waiter-b", h.url()))
        .await
        .expect("B");
    let mut held = a.lock("relay").ttl(10 * SEC).acquire().await.expect("A holds");
    let waiter = tokio::spawn(async move { b.lock("relay").ttl(10 * SEC).wait(10 * SEC).acquire().await });
    let queued = warden_testkit::eventually(5 * SEC, || async {
        a.inspect("relay").await.map(|i| i.queue.len()) == Ok(1)
    })
    .await;
    assert!(queued, "B never queued");
    // B's listening connection is the one of its connections that ran LISTEN (or its health check) last.
    let db = connect(&h.server_url()).await;
    let killed: i64 = db
        .query_one(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'waiter-b' AND query IN ('LISTEN warden_wake', 'SELECT 1')",
            &[],
        )
        .await
        .expect("terminate")
        .get(0);
    assert_eq!(killed, 1, "B's listening connection not found");
    // The release hands the lock to B while B cannot hear it; B still learns it holds the lock.
    let released = Instant::now();
    held.release().await.expect("A releases");
    let g = tokio::time::timeout(5 * SEC, waiter)
        .await
        .expect("B was never granted")
        .expect("task")
        .expect("B acquires");
    assert!(released.elapsed() < 2 * SEC, "B learned late: {:?}", released.elapsed());
    assert!(g.fencing_token() > held.fencing_token());
}

/// One process's uncontended exclusive grants and releases in one call run as one statement each (every grant
/// of such a statement carries the same database clock reading, where one by one each reads its own), on names
/// no SQL literal could hold, and answer exactly as one by one: increasing fences, exact counts, a stranger
/// refused, a lease that ended reported lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_operations_of_a_call_run_as_one_statement_each_and_answer_as_one_by_one() {
    let h = PostgresHarness::new();
    let w = Warden::connect(h.url()).await.expect("connect");
    let names = sql_faults::batch_names(40);
    // The first grant of each name makes its row (one by one).
    let last = sql_faults::cycles_at_once(&w, &names, 1, Vec::new()).await;
    sql_faults::cycles_at_once(&w, &names, 10, last).await;
    let moments = h
        .ints("SELECT count(DISTINCT holder_acquired) FROM warden_resources WHERE resource LIKE 'batch/%'")
        .await;
    assert!(
        moments[0] < names.len() as i64 / 2,
        "{} grant times for the last round's {} grants: few shared a statement",
        moments[0],
        names.len()
    );
    sql_faults::releases_with_and_without_a_client_at_once(&w, &names).await;
    sql_faults::a_stranger_is_refused_and_an_ended_lease_is_lost(&w, &names).await;
}

/// A shared lease's release and renewal lock its resource's row before the lease's, the order a call of several
/// operations takes them in: while another transaction holds the resource's row (as a batch does), the waiting
/// release has not touched the lease's row, so the two cannot wait for each other in a circle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_lease_is_released_and_renewed_resource_row_first_as_a_batch_locks_them() {
    let h = PostgresHarness::new();
    let w = Warden::connect(h.url()).await.expect("connect");
    let g = w.lock("order").shared().ttl(30 * SEC).acquire().await.expect("shared");
    let lock_id = g.lock_id().to_string();
    for call in [
        "SELECT status FROM warden_renew($1, NULL, NULL, 0)",
        "SELECT status FROM warden_release($1, NULL, 0)",
    ] {
        let batch = connect(&h.server_url()).await;
        let single = connect(&h.server_url()).await;
        batch
            .batch_execute("BEGIN; SELECT 1 FROM warden_resources WHERE resource = 'order' FOR UPDATE")
            .await
            .expect("the resource's row");
        let pid: i32 = single
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .expect("pid")
            .get(0);
        let id = lock_id.clone();
        let op = tokio::spawn(async move {
            single
                .query_one(call, &[&id])
                .await
                .map(|r| r.get::<_, Option<String>>(0))
        });
        let waiting = warden_testkit::eventually(5 * SEC, || async {
            h.ints(&format!(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = {pid} AND wait_event_type = 'Lock'"
            ))
            .await
                == [1]
        })
        .await;
        assert!(waiting, "{call}: never waited for the resource's row");
        let lease = batch
            .query(
                "SELECT 1 FROM warden_leases WHERE lock_id = $1 FOR UPDATE NOWAIT",
                &[&lock_id],
            )
            .await;
        assert!(lease.is_ok(), "{call} locked the lease's row first: {lease:?}");
        batch.batch_execute("COMMIT").await.expect("commit");
        let status = tokio::time::timeout(5 * SEC, op)
            .await
            .expect("the call ends")
            .expect("task")
            .expect("the call");
        let want = if call.contains("renew") { "renewed" } else { "released" };
        assert_eq!(status.as_deref(), Some(want), "{call}");
    }
}

/// Joining a queue commits without waiting for the disk: a crash of the database right after may forget the
/// waiter. It asks again when its listener reconnects, and is still granted the lock once the holder (whose
/// lease was committed durably) releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiter_that_joined_just_before_a_crash_still_gets_the_lock() {
    let h = PostgresHarness::new();
    let a = Warden::connect(h.url()).await.expect("A");
    let b = Warden::connect(h.url()).await.expect("B");
    let mut held = a
        .lock("crash-queue")
        .ttl(10 * SEC)
        .auto_renew(false)
        .acquire()
        .await
        .expect("A holds");
    let waiter = tokio::spawn(async move { b.lock("crash-queue").ttl(10 * SEC).wait(20 * SEC).acquire().await });
    let queued = warden_testkit::eventually(5 * SEC, || async {
        a.inspect("crash-queue").await.map(|i| i.queue.len()) == Ok(1)
    })
    .await;
    assert!(queued, "B never queued");
    Database::restart(&h);
    // Retry while the pool finds out its connections died with the server.
    let deadline = Instant::now() + 5 * SEC;
    let released = loop {
        match held.release().await {
            Err(e) if e.is_retryable() && Instant::now() < deadline => continue,
            other => break other,
        }
    };
    released.expect("the holder's lease survived the crash and is released");
    let g = tokio::time::timeout(15 * SEC, waiter)
        .await
        .expect("B was never granted")
        .expect("task")
        .expect("B acquires");
    assert!(g.fencing_token() > held.fencing_token());
}

/// Where a queue's live waiters begin stays at or before every waiter still queued: a handover that wakes a
/// conditional waiter (which stays queued, its own attempt judges its condition) and grants the shared waiter
/// behind it must not move the start past the conditional one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handover_past_a_woken_conditional_waiter_keeps_it_in_sight() {
    let h = PostgresHarness::new();
    let a = Warden::connect(h.url()).await.expect("A");
    let mut held = a.lock("keep").ttl(30 * SEC).acquire().await.expect("A holds");
    // A conditional shared waiter of a process that is slow to answer its wake-up: queued first.
    h.sql(
        "INSERT INTO warden_waiters (resource, waiter_id, client_id, kind, ttl_ms, deadline_us, lock_id, \
         waiter_lease_ms, place) VALUES ('keep', 'slow-conditional', 'c', 'shared', 30000, \
         (extract(epoch FROM clock_timestamp()) * 1000000)::bigint + 60000000, NULL, 60000, 1); \
         UPDATE warden_resources SET queued = queued + 1, head_place = least(head_place, 1) \
         WHERE resource = 'keep'",
    )
    .await;
    let (b, c) = (a.clone(), a.clone());
    let shared = tokio::spawn(async move { b.lock("keep").shared().ttl(30 * SEC).wait(20 * SEC).acquire().await });
    assert!(
        warden_testkit::eventually(5 * SEC, || async {
            a.inspect("keep").await.map(|i| i.queue.len()) == Ok(2)
        })
        .await
    );
    let exclusive = tokio::spawn(async move { c.lock("keep").ttl(30 * SEC).wait(20 * SEC).acquire().await });
    assert!(
        warden_testkit::eventually(5 * SEC, || async {
            a.inspect("keep").await.map(|i| i.queue.len()) == Ok(3)
        })
        .await
    );
    held.release().await.expect("release");
    let mut s = tokio::time::timeout(5 * SEC, shared)
        .await
        .expect("the shared waiter is granted")
        .expect("task")
        .expect("shared");
    let ahead = h
        .ints(
            "SELECT count(*) FROM warden_waiters w JOIN warden_resources r USING (resource) \
             WHERE resource = 'keep' AND w.place < r.head_place",
        )
        .await;
    assert_eq!(
        ahead,
        [0],
        "a queued waiter lies before where the queue's searches start"
    );
    s.release().await.expect("release shared");
    h.sql(
        "DELETE FROM warden_waiters WHERE waiter_id = 'slow-conditional'; \
         UPDATE warden_resources SET queued = queued - 1 WHERE resource = 'keep'",
    )
    .await;
    exclusive.abort();
}
