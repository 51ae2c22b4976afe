//! `mysql://` beyond the conformance suite, on a throwaway MariaDB: durability across a crash, a database that
//! stops answering, the schema created by many processes at once, table prefixes, 20 processes sharing a
//! counter, the sweep, and wake-ups that cross processes (the listener's bell).

use mysql_async::prelude::Queryable;
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::mysql_harness::{connect, MysqlHarness};
use warden_testkit::sql_faults::{self, Database};

const SEC: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_and_fences_survive_a_crash_and_work_resumes_without_restarting_warden() {
    sql_faults::leases_and_fences_survive_a_crash(&MysqlHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_database_fails_fast_and_the_holder_learns_it_lost_before_its_lease_ends() {
    sql_faults::a_stopped_database_fails_fast_and_the_holder_learns_it_lost(&MysqlHarness::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_processes_starting_at_once_create_the_schema_once() {
    let version = warden::backend::mysql::SCHEMA_VERSION;
    sql_faults::many_processes_starting_at_once_create_the_schema_once(&MysqlHarness::new(), version).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_one_schema_upgrades_with_its_leases() {
    let version = warden::backend::mysql::SCHEMA_VERSION;
    let to_v1 = [
        "ALTER TABLE up_resources DROP COLUMN permits, DROP COLUMN intent_until, DROP COLUMN head_place, \
         MODIFY holder_kind VARCHAR(9) CHARACTER SET ascii NULL",
        "ALTER TABLE up_leases MODIFY kind VARCHAR(9) CHARACTER SET ascii NOT NULL",
        "ALTER TABLE up_waiters MODIFY kind VARCHAR(9) CHARACTER SET ascii NOT NULL, DROP KEY waiters_place, \
         DROP COLUMN place, ADD KEY waiters_order (resource, seq)",
    ];
    let h = MysqlHarness::new();
    sql_faults::a_version_one_schema_upgrades_with_its_leases(&h, &to_v1, version).await;
    // A process of an earlier version, still running through the upgrade, calls the procedures of its own
    // signature: they still answer (waiting with priority 0).
    h.exec("CALL up_acquire_if(NULL, 'older', 0, 'older-id', 'exclusive', 1000, 'c', 'w', 1000, NULL, NULL, 10, NULL)")
        .await;
    let held = h
        .ints("SELECT COUNT(*) FROM up_resources WHERE holder = 'older-id'")
        .await;
    assert_eq!(held, vec![1], "the acquire_if of an earlier version's signature");
    h.exec("CALL up_acquire('older', 0, 'older-2', 'exclusive', 1000, 'c', 'w2', 1000, NULL, NULL, 10, NULL)")
        .await;
    let queued = h.ints("SELECT COUNT(*) FROM up_waiters WHERE waiter_id = 'w2'").await;
    assert_eq!(queued, vec![1], "the acquire of an earlier version's signature");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prefixes_keep_two_applications_apart_and_a_password_is_never_shown() {
    let h = MysqlHarness::new();
    let a = Warden::connect(&format!("{}&prefix=app_a_", h.url())).await.expect("a");
    let b = Warden::connect(&format!("{}&prefix=app_b_", h.url())).await.expect("b");
    let _ga = a.lock("same").acquire().await.expect("a");
    let _gb = b
        .lock("same")
        .acquire()
        .await
        .expect("b: another prefix is another namespace");
    h.sql(&[
        "CREATE USER 'locker'@'127.0.0.1' IDENTIFIED BY 'right-one'",
        "GRANT ALL ON warden.* TO 'locker'@'127.0.0.1'",
    ])
    .await;
    let port = h.server.lock().expect("server").port();
    let r = Warden::connect(&format!(
        "mysql://locker:hunter2@127.0.0.1:{port}/warden?timeout_ms=2000"
    ))
    .await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1") && !msg.contains("hunter2"), "{msg}");
    // The right password, as another database user than the tables' creator: it works.
    let c = Warden::connect(&format!(
        "mysql://locker:right-one@127.0.0.1:{port}/warden?timeout_ms=2000&prefix=app_a_"
    ))
    .await
    .expect("the right password");
    assert!(c.lock("same").try_acquire().await.expect("try").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_processes_times_a_hundred_increments_end_at_exactly_2000_with_increasing_fences() {
    sql_faults::twenty_processes_share_a_counter(&MysqlHarness::new(), env!("CARGO_BIN_EXE_counter_client")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_forgets_ended_leases_and_idle_resources_without_losing_counts_or_fence_order() {
    sql_faults::the_sweep_forgets_without_losing_counts_or_fence_order(&MysqlHarness::new()).await;
}

/// A client whose waiters ask again only every 10 s: a prompt grant can only come from a wake-up.
async fn patient(url: &str) -> Warden {
    Warden::connect(url)
        .await
        .expect("connect")
        .with_waiter_lease(30 * SEC)
        .expect("waiter lease")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_in_one_process_wakes_a_waiter_in_another_at_once_and_a_lost_listener_recovers() {
    let h = MysqlHarness::new();
    let a = patient(h.url()).await;
    let b = patient(h.url()).await;
    for round in 0..2 {
        let mut held = a.lock("relay").ttl(10 * SEC).acquire().await.expect("A holds");
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.lock("relay").ttl(10 * SEC).wait(20 * SEC).acquire().await });
        let queued = warden_testkit::eventually(5 * SEC, || async {
            a.inspect("relay").await.map(|i| i.queue.len()) == Ok(1)
        })
        .await;
        assert!(queued, "B never queued");
        if round == 1 {
            // Every listener's parked connection dies; B's reconnects and still learns of the handover.
            let mut db = connect(&h.server_url()).await;
            let parked: Vec<u64> = db
                .query("SELECT ID FROM information_schema.PROCESSLIST WHERE INFO LIKE '%warden_bell%' AND ID <> CONNECTION_ID()")
                .await
                .expect("listeners");
            assert_eq!(parked.len(), 2, "one parked listener per client");
            for id in parked {
                db.query_drop(format!("KILL CONNECTION {id}")).await.expect("kill");
            }
        }
        let released = Instant::now();
        held.release().await.expect("A releases");
        let mut g = tokio::time::timeout(5 * SEC, waiter)
            .await
            .expect("B was never granted")
            .expect("task")
            .expect("B acquires");
        let took = released.elapsed();
        let bound = if round == 0 {
            Duration::from_millis(300)
        } else {
            3 * SEC
        };
        assert!(took < bound, "round {round}: B learned after {took:?}");
        assert!(g.fencing_token() > held.fencing_token());
        g.release().await.expect("B releases");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_the_servers_ca_works_and_anything_weaker_or_wrong_is_refused_with_a_sentence() {
    let db = warden_testkit::MariaDbServer::start_tls();
    let ca = db.ca_path().expect("CA").display().to_string();
    let port = db.port();
    let mut admin = connect(&db.url()).await;
    admin.query_drop("CREATE DATABASE warden").await.expect("database");
    let before = tls_handshakes(&mut admin).await;
    let base = format!("mysql://root@127.0.0.1:{port}/warden?timeout_ms=2000");
    let url = format!("{base}&ssl-mode=VERIFY_IDENTITY&ssl-ca={ca}");
    let w = Warden::connect(&url).await.expect("connect over TLS");
    let mut g = w.lock("tls").acquire().await.expect("acquire over TLS");
    g.release().await.expect("release over TLS");
    // The schema's connection, the listener's two and a pooled one at least: every one a TLS handshake.
    let after = tls_handshakes(&mut admin).await;
    assert!(after - before >= 4, "{} TLS handshakes", after - before);
    // Another CA: refused, naming the host; a mode that checks nothing: refused before connecting.
    let other = warden_testkit::MariaDbServer::start_tls();
    let wrong = other.ca_path().expect("CA").display().to_string();
    let r = Warden::connect(&format!("{base}&ssl-mode=VERIFY_IDENTITY&ssl-ca={wrong}")).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1"), "{msg}");
    let r = Warden::connect(&format!("{base}&ssl-mode=REQUIRED")).await;
    assert!(
        matches!(r, Err(Error::InvalidArgument { field: "ssl-mode", .. })),
        "{r:?}"
    );
}

/// How many TLS handshakes the server has accepted.
async fn tls_handshakes(admin: &mut mysql_async::Conn) -> u64 {
    let row: Option<(String, u64)> = admin
        .query_first("SHOW GLOBAL STATUS LIKE 'Ssl_accepts'")
        .await
        .expect("status");
    row.map(|r| r.1).unwrap_or(0)
}

/// A global status counter of the database.
async fn status(admin: &mut mysql_async::Conn, name: &str) -> u64 {
    let row: Option<(String, u64)> = admin
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await
        .expect("status");
    row.expect("status row").1
}

/// One process's uncontended grants and releases share transactions (group commit of the fast paths, no
/// procedure call), on names no SQL literal could hold, and answer exactly as the procedures do: increasing
/// fences, exact counts, a stranger refused, a lease that ended reported lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uncontended_grants_and_releases_share_transactions_and_answer_as_the_procedures_do() {
    let h = MysqlHarness::new();
    let w = Warden::connect(h.url()).await.expect("connect");
    let names = sql_faults::batch_names(40);
    // The first grant of each name makes its row (a procedure call).
    let last = sql_faults::cycles_at_once(&w, &names, 1, Vec::new()).await;
    let mut admin = connect(&h.server_url()).await;
    let (calls, commits) = (
        status(&mut admin, "Com_call_procedure").await,
        status(&mut admin, "Com_commit").await,
    );
    let rounds = 10;
    sql_faults::cycles_at_once(&w, &names, rounds, last).await;
    let ops = (2 * rounds * names.len()) as u64;
    let calls = status(&mut admin, "Com_call_procedure").await - calls;
    let commits = status(&mut admin, "Com_commit").await - commits;
    // Slack for the housekeeping sweep (a procedure call per stale resource; none is expected here).
    assert!(calls <= 2, "{calls} procedure calls for {ops} uncontended operations");
    assert!(
        commits < ops,
        "{commits} transactions for {ops} operations: none shared"
    );
    sql_faults::releases_with_and_without_a_client_at_once(&w, &names).await;
    sql_faults::a_stranger_is_refused_and_an_ended_lease_is_lost(&w, &names).await;
}

/// On a server that assigns an `UPDATE`'s columns all at once (MariaDB's `SIMULTANEOUS_ASSIGNMENT` in its
/// `sql_mode`, not the default), every grant still gets a fence above the last one, batched or handed over by
/// the procedures, and each lease's record shows the fence its holder was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fences_hold_on_a_server_that_assigns_columns_all_at_once() {
    let db = warden_testkit::MariaDbServer::start();
    let mut admin = connect(&db.url()).await;
    admin.query_drop("CREATE DATABASE warden").await.expect("database");
    admin
        .query_drop("SET GLOBAL sql_mode = CONCAT(@@sql_mode, ',SIMULTANEOUS_ASSIGNMENT')")
        .await
        .expect("sql_mode");
    let url = format!("mysql://root@127.0.0.1:{}/warden", db.port());
    let w = Warden::connect(&url).await.expect("connect");
    let names = sql_faults::batch_names(20);
    // The first round makes the rows (procedure calls); the next ones share batches.
    sql_faults::cycles_at_once(&w, &names, 3, Vec::new()).await;
    let mut g = w.lock(&names[0]).auto_renew(false).acquire().await.expect("acquire");
    record_shows_its_fence(&w, &g, "a batched grant").await;
    // A waiter, handed the lock by the release.
    let queued = {
        let (w, name) = (w.clone(), names[0].clone());
        tokio::spawn(async move { w.lock(&name).auto_renew(false).acquire().await })
    };
    let waiting = warden_testkit::eventually(10 * SEC, || async {
        w.inspect(&names[0]).await.is_ok_and(|i| i.queue.len() == 1)
    })
    .await;
    assert!(waiting, "the waiter never queued");
    g.release().await.expect("release");
    let next = queued.await.expect("task").expect("acquire");
    assert!(next.fencing_token() > g.fencing_token());
    record_shows_its_fence(&w, &next, "a handed-over grant").await;
    // The resource is known contended now: its next grant is the procedure's own one-statement grant. The
    // lease is released by another process, since a release here that hands the lock to nobody would end the
    // mark.
    let other = Warden::connect(&url).await.expect("connect");
    other.release(next.lock_id(), None).await.expect("release");
    let again = w.lock(&names[0]).auto_renew(false).acquire().await.expect("acquire");
    assert!(again.fencing_token() > next.fencing_token());
    record_shows_its_fence(&w, &again, "a procedure's grant").await;
}

/// The lease's record shows the fence its holder was given.
async fn record_shows_its_fence(w: &Warden, g: &warden::LockGuard, what: &str) {
    let lease = w.lease(g.lock_id()).await.expect("lease").expect("held");
    assert_eq!(lease.fencing_token, g.fencing_token(), "{what}'s record");
}

/// A lease handed to one of the process's waiters is released by its resource's row (`release_held`, without
/// the look-up by lock id) and judged as any release: the next waiter is handed the lock in order, a stranger
/// is refused and the lease stays its holder's, and a lease that ended is reported lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_handed_to_a_waiter_is_released_by_its_row_and_judged_as_any_other() {
    let h = MysqlHarness::new();
    let w = patient(h.url()).await;
    let name = "handed";
    let first = w.lock(name).auto_renew(false).acquire().await.expect("acquire");
    let mut waiters = Vec::new();
    for (i, ttl) in [(1, 30 * SEC), (2, 30 * SEC), (3, Duration::from_millis(100))] {
        let w2 = w.clone();
        waiters.push(tokio::spawn(async move {
            w2.lock(name).ttl(ttl).auto_renew(false).acquire().await
        }));
        let queued = warden_testkit::eventually(10 * SEC, || async {
            w.inspect(name).await.is_ok_and(|info| info.queue.len() == i)
        })
        .await;
        assert!(queued, "waiter {i} never queued");
    }
    let mut waiters = waiters.into_iter();
    let mut next = || waiters.next().expect("a waiter");
    w.release(first.lock_id(), None).await.expect("release");
    let second = next().await.expect("task").expect("handed");
    assert!(second.fencing_token() > first.fencing_token());
    // A stranger is refused, and the lease stays the holder's.
    let r = w.release(second.lock_id(), Some("someone else")).await;
    assert!(matches!(r, Err(Error::NotOwner { .. })), "{r:?}");
    assert_eq!(w.inspect(name).await.expect("inspect").holders.len(), 1);
    w.release(second.lock_id(), None).await.expect("release");
    let third = next().await.expect("task").expect("handed");
    assert!(third.fencing_token() > second.fencing_token());
    // Released by its row: the last waiter is handed the lock.
    let released = w.release(third.lock_id(), None).await.expect("release");
    assert!(released.held_for.is_some(), "{released:?}");
    let fourth = next().await.expect("task").expect("handed");
    assert!(fourth.fencing_token() > third.fencing_token());
    // Until the database's own view no longer shows it held (a handed lease of 100 ms, on its clock).
    let deadline = Instant::now() + 5 * SEC;
    while !w.inspect(name).await.expect("inspect").holders.is_empty() {
        assert!(Instant::now() < deadline, "the lease never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = w.release(fourth.lock_id(), None).await;
    assert!(matches!(r, Err(Error::LeaseLost { .. })), "{r:?}");
    let again = w.lock(name).auto_renew(false).acquire().await.expect("acquire");
    assert!(again.fencing_token() > fourth.fencing_token());
}

/// A batch finds its rows by key however many resources the table holds: a lone release and a lone grant
/// beside a thousand other resources read a few index entries, not the whole table (MariaDB plans a list of one
/// tuple as a comparison of tuples, which an `UPDATE` cannot look up by key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_find_their_rows_by_key_in_a_table_of_a_thousand_resources() {
    // A thousand idle resources, as a thousand first grants would have left them.
    let (_h, w, mut admin) = beside_a_thousand_resources("", "").await;
    // The resource's row is made by its first grant (a procedure call).
    let name = "by-key";
    let mut g = w.lock(name).auto_renew(false).acquire().await.expect("acquire");
    g.release().await.expect("release");
    let calls = status(&mut admin, "Com_call_procedure").await;
    let before = index_reads(&mut admin).await;
    let cycles = 20;
    for _ in 0..cycles {
        let mut g = w.lock(name).auto_renew(false).acquire().await.expect("acquire");
        g.release().await.expect("release");
    }
    let read = index_reads(&mut admin).await - before;
    let calls = status(&mut admin, "Com_call_procedure").await - calls;
    assert_eq!(calls, 0, "the cycles went through batches");
    assert!(
        read < 10 * 2 * cycles,
        "{read} index entries read for {cycles} batched cycles"
    );
}

/// A database with a thousand resources made by one `INSERT` (`columns` and their `values` added to the name and
/// hash), a `Warden` on it whose housekeeping sweep does not run, and an administrator's connection.
async fn beside_a_thousand_resources(columns: &str, values: &str) -> (MysqlHarness, Warden, mysql_async::Conn) {
    let h = MysqlHarness::new();
    let w = Warden::connect(&format!("{}&sweep_ms=3600000", h.url()))
        .await
        .expect("connect");
    let mut admin = connect(&h.server_url()).await;
    admin
        .query_drop(format!(
            "INSERT INTO warden.warden_resources (resource, key_hash{columns}) \
             SELECT CONCAT('other/', seq), seq{values} FROM seq_1_to_1000"
        ))
        .await
        .expect("resources");
    (h, w, admin)
}

/// Index entries and rows the server has read, in all.
async fn index_reads(admin: &mut mysql_async::Conn) -> u64 {
    let mut n = 0;
    for name in ["Handler_read_key", "Handler_read_next", "Handler_read_rnd_next"] {
        n += status(admin, name).await;
    }
    n
}

/// The sweep forgets a thousand idle resources a batch at a time (a few transactions, not one per resource, which
/// would commit beside the live traffic as often as the burst that made them), and their counts stay in the
/// statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_forgets_idle_resources_in_batches_and_keeps_their_counts() {
    // A thousand resources each released once, long ago (their fences are far in the past).
    let (h, w, mut admin) = beside_a_thousand_resources(", fence, released, hold_ms", ", seq, 1, 2").await;
    let mut g = w.lock("busy").auto_renew(false).acquire().await.expect("acquire");
    let updates = status(&mut admin, "Handler_update").await;
    let sweeper = Warden::connect(&format!("{}&sweep_ms=20&retain_ms=100", h.url()))
        .await
        .expect("connect");
    let forgotten = warden_testkit::eventually(10 * SEC, || async {
        h.ints("SELECT COUNT(*) FROM warden_resources").await == vec![1]
    })
    .await;
    assert!(forgotten, "the idle resources were not forgotten");
    let updates = status(&mut admin, "Handler_update").await - updates;
    assert!(updates < 50, "{updates} rows updated to forget 1,000 idle resources");
    // The held resource stays, and every count is kept.
    g.release().await.expect("the held lease was kept");
    let stats = sweeper.stats().await.expect("stats");
    assert_eq!((stats.total_locks, stats.active_locks), (1_001, 0));
}

/// Callers of one process taking turns on one lock hand it to each other through the batches, about one
/// transaction a handoff and no procedure call: a holder granted in a batch that releases at once, before the
/// release ahead of it has returned to its caller, still goes to the lane (not to the procedures, as the lane's
/// second release of the lock). The grants keep their order and fences.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_between_callers_of_one_process_is_one_transaction() {
    let h = MysqlHarness::new();
    let w = Warden::connect(h.url()).await.expect("connect");
    let name = "passed";
    // The first grant makes the resource's row (a procedure call).
    let mut first = w.lock(name).auto_renew(false).acquire().await.expect("acquire");
    first.release().await.expect("release");
    let mut admin = connect(&h.server_url()).await;
    let (calls, commits) = (
        status(&mut admin, "Com_call_procedure").await,
        status(&mut admin, "Com_commit").await,
    );
    let (workers, rounds) = (4, 50);
    let fences = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let cycle = |_| {
        let (w, fences) = (w.clone(), fences.clone());
        async move {
            for _ in 0..rounds {
                let mut g = w.lock(name).auto_renew(false).acquire().await.expect("acquire");
                fences.lock().expect("fences").push(g.fencing_token());
                g.release().await.expect("release");
            }
        }
    };
    futures::future::join_all((0..workers).map(cycle)).await;
    let cycles = (workers * rounds) as u64;
    let calls = status(&mut admin, "Com_call_procedure").await - calls;
    let commits = status(&mut admin, "Com_commit").await - commits;
    let fences = fences.lock().expect("fences").clone();
    assert!(
        fences.windows(2).all(|f| f[0] < f[1]),
        "fences in grant order: {fences:?}"
    );
    assert_eq!(fences.len() as u64, cycles);
    assert!(calls < cycles / 5, "{calls} procedure calls for {cycles} handoffs");
    assert!(
        commits <= cycles + cycles / 2,
        "{commits} transactions for {cycles} handoffs"
    );
}
