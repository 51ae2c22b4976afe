//! Tests every SQL backend runs against its throwaway database, beyond the conformance suite: leases and fences
//! survive a crash of the whole server and work resumes on the same client; a stopped (SIGSTOPped) server fails
//! every call fast, naming the host, and a holder learns it lost before its lease can have ended; many processes
//! starting at once create the schema once; a version 1 schema upgrades under held leases; 20 processes share a
//! counter under the lock; the sweep forgets what ended without losing counts or fence order; uncontended
//! cycles batched by one process answer as one by one would.

use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};

const SEC: Duration = Duration::from_secs(1);

/// A throwaway database server a test may crash, stop and query.
#[async_trait::async_trait]
pub trait Database: Sync {
    /// The backend URL clients use (with `timeout_ms=500&pool_size=8`).
    fn url(&self) -> &str;
    /// The server's own URL (the test's superuser, no warden options), for the counter's processes.
    fn server_url(&self) -> String;
    /// Runs one statement as the test's superuser.
    async fn exec(&self, sql: &str);
    /// The first column of every row a query answers, as integers.
    async fn ints(&self, sql: &str) -> Vec<i64>;
    /// The statements that create `counter (id, v)` with its one row `(1, 0)` and `counter_fences (seq, fence)`
    /// with `seq` growing on every insert, in this database's dialect.
    fn counter_tables(&self) -> &'static [&'static str];
    /// SIGKILL, then start again on the same data.
    fn restart(&self);
    /// SIGSTOP: it keeps its connections and answers nothing.
    fn pause(&self);
    /// SIGCONT after [`Database::pause`].
    fn resume(&self);
}

/// A lease and its fence survive a crash of the whole server; the same client carries on once it is back.
pub async fn leases_and_fences_survive_a_crash(db: &dyn Database) {
    let w = Warden::connect(db.url()).await.expect("connect");
    let mut held = w
        .lock("durable")
        .ttl(10 * SEC)
        .auto_renew(false)
        .acquire()
        .await
        .expect("acquire");
    let fence = held.fencing_token();
    db.restart();
    // Retry while the pool finds out its connections died with the server.
    let deadline = Instant::now() + 5 * SEC;
    let renewed = loop {
        match held.renew(10 * SEC).await {
            Err(e) if e.is_retryable() && Instant::now() < deadline => continue,
            other => break other,
        }
    };
    renewed.expect("the lease survived the crash");
    // Still held: another client is refused, then gets it after the release with a larger fence.
    let other = Warden::connect(db.url()).await.expect("connect");
    let r = other.lock("durable").acquire().await;
    assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
    held.release().await.expect("release");
    let g = other.lock("durable").acquire().await.expect("acquire after release");
    assert!(g.fencing_token() > fence);
}

/// A stopped server fails every call within the timeout, naming the host; a holder's lost signal fires before
/// its lease can have ended; work resumes once the server does.
pub async fn a_stopped_database_fails_fast_and_the_holder_learns_it_lost(db: &dyn Database) {
    let w = Warden::connect(db.url()).await.expect("connect");
    let ttl = Duration::from_millis(900);
    // The lease ends on the server no earlier than ttl after the request was sent.
    let sent = Instant::now();
    let g = w.lock("paused").ttl(ttl).acquire().await.expect("acquire");
    db.pause();
    let start = Instant::now();
    let r = w.lock("other").acquire().await;
    assert!(matches!(r, Err(Error::BackendUnavailable { .. })), "{r:?}");
    assert!(start.elapsed() < SEC, "took {:?}", start.elapsed());
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("127.0.0.1"), "{msg}");
    tokio::time::timeout(2 * SEC, g.lost()).await.expect("lost signal");
    assert!(
        Instant::now() < sent + ttl,
        "lost signal after the lease could have ended"
    );
    db.resume();
    let deadline = Instant::now() + 5 * SEC;
    loop {
        match w.lock("after").acquire().await {
            Ok(_) => break,
            Err(e) if e.is_retryable() && Instant::now() < deadline => continue,
            Err(e) => panic!("no recovery after the database came back: {e}"),
        }
    }
}

/// Any number of processes starting at once create the schema once; a schema from a newer warden is refused
/// with a sentence saying so. `version` is the backend's `SCHEMA_VERSION`.
pub async fn many_processes_starting_at_once_create_the_schema_once(db: &dyn Database, version: i32) {
    let url = format!("{}&prefix=fresh_", db.url());
    let starts = (0..8).map(|_| Warden::connect(&url));
    for r in futures::future::join_all(starts).await {
        r.expect("connect while others create the schema");
    }
    assert_eq!(
        db.ints("SELECT version FROM fresh_schema_version").await,
        vec![i64::from(version)]
    );
    db.exec("UPDATE fresh_schema_version SET version = 99").await;
    let r = Warden::connect(&url).await;
    let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(msg.contains("newer") && msg.contains("fresh_"), "{msg}");
}

/// A schema left at version 1 (by a warden without semaphores: `to_v1` undoes version 2 in this dialect) is
/// upgraded by the next process that connects; the leases held across the upgrade stay held, renew and release,
/// and semaphores work once it is done.
pub async fn a_version_one_schema_upgrades_with_its_leases(db: &dyn Database, to_v1: &[&str], version: i32) {
    let url = format!("{}&prefix=up_", db.url());
    let before = Warden::connect(&url).await.expect("connect");
    let mut excl = before.lock("kept").ttl(10 * SEC).acquire().await.expect("exclusive");
    let mut shared = before
        .lock("read")
        .shared()
        .ttl(10 * SEC)
        .acquire()
        .await
        .expect("shared");
    for sql in to_v1 {
        db.exec(sql).await;
    }
    db.exec("UPDATE up_schema_version SET version = 1").await;
    let after = Warden::connect(&url).await.expect("connect upgrades the schema");
    assert_eq!(
        db.ints("SELECT version FROM up_schema_version").await,
        vec![i64::from(version)]
    );
    assert!(
        after.lock("kept").try_acquire().await.expect("try").is_none(),
        "a lock held across the upgrade was granted again"
    );
    assert!(
        after
            .lock("read")
            .shared()
            .try_acquire()
            .await
            .expect("reader")
            .is_some(),
        "a reader beside the one held across the upgrade"
    );
    excl.renew(10 * SEC).await.expect("renew across the upgrade");
    let mut permits = Vec::new();
    for _ in 0..2 {
        permits.push(
            after
                .semaphore("pool", 2)
                .try_acquire()
                .await
                .expect("permit")
                .expect("a free permit"),
        );
    }
    assert!(after.semaphore("pool", 2).try_acquire().await.expect("third").is_none());
    assert!(matches!(
        after.semaphore("kept", 2).try_acquire().await,
        Err(Error::Conflict { .. })
    ));
    for mut p in permits {
        p.release().await.expect("release permit");
    }
    excl.release().await.expect("release across the upgrade");
    shared.release().await.expect("release reader");
}

/// 20 processes (`counter_client`, the testkit's binary at `bin`) × 100 non-atomic increments under one lock
/// end at exactly 2,000, and the fencing tokens they wrote grew in commit order.
pub async fn twenty_processes_share_a_counter(db: &dyn Database, bin: &str) {
    for sql in db.counter_tables() {
        db.exec(sql).await;
    }
    // Create the schema once, so the 20 processes do not all wait on its creation.
    drop(Warden::connect(db.url()).await.expect("connect"));
    let url = format!("{}&pool_size=2&timeout_ms=5000", db.url().replace("&pool_size=8", ""));
    let store = db.server_url();
    let children: Vec<_> = (0..20)
        .map(|_| {
            tokio::process::Command::new(bin)
                .args([&url, &store, "100"])
                .kill_on_drop(true)
                .spawn()
                .expect("spawn counter_client")
        })
        .collect();
    for mut c in children {
        let status = tokio::time::timeout(Duration::from_secs(120), c.wait())
            .await
            .expect("a counter process hung")
            .expect("wait");
        assert!(status.success(), "a counter process failed: {status}");
    }
    assert_eq!(db.ints("SELECT v FROM counter").await, vec![2000]);
    let fences = db.ints("SELECT fence FROM counter_fences ORDER BY seq").await;
    assert_eq!(fences.len(), 2000);
    assert!(
        fences.windows(2).all(|w| w[0] < w[1]),
        "fencing tokens did not strictly increase in commit order"
    );
}

/// With a short retention, the sweep forgets ended leases and idle resources; statistics stay cumulative and a
/// forgotten resource's next fence is still larger.
pub async fn the_sweep_forgets_without_losing_counts_or_fence_order(db: &dyn Database) {
    let url = format!("{}&sweep_ms=50&retain_ms=100", db.url());
    let w = Warden::connect(&url).await.expect("connect");
    let mut fences = Vec::new();
    for i in 0..3 {
        let g = w
            .lock(format!("swept:{i}"))
            .ttl(Duration::from_millis(50))
            .auto_renew(false)
            .acquire()
            .await
            .expect("acquire");
        fences.push(g.fencing_token());
        std::mem::forget(g); // ends by expiry, never released
    }
    let mut r = w
        .lock("swept:reader")
        .shared()
        .ttl(Duration::from_millis(50))
        .acquire()
        .await
        .expect("shared");
    r.release().await.expect("release");
    let forgotten = crate::eventually(5 * SEC, || async {
        db.ints("SELECT COUNT(*) FROM warden_resources").await == vec![0]
            && db.ints("SELECT COUNT(*) FROM warden_leases").await == vec![0]
    })
    .await;
    assert!(forgotten, "the sweep left rows behind");
    let stats = w.stats().await.expect("stats");
    assert_eq!((stats.total_locks, stats.expired_locks, stats.active_locks), (4, 3, 0));
    let g = w.lock("swept:0").acquire().await.expect("again");
    assert!(g.fencing_token() > fences[0], "a forgotten resource's fence went back");
}

#[async_trait::async_trait]
impl Database for crate::postgres_harness::PostgresHarness {
    fn url(&self) -> &str {
        self.url()
    }
    fn server_url(&self) -> String {
        self.server_url()
    }
    async fn exec(&self, sql: &str) {
        self.sql(sql).await
    }
    async fn ints(&self, sql: &str) -> Vec<i64> {
        let client = crate::postgres_harness::connect(&self.server_url()).await;
        let rows = client.query(sql, &[]).await.expect("query of the test");
        rows.iter()
            .map(|r| {
                r.try_get::<_, i64>(0)
                    .or_else(|_| r.try_get::<_, i32>(0).map(i64::from))
                    .expect("an integer")
            })
            .collect()
    }
    fn counter_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE counter (id integer PRIMARY KEY, v bigint NOT NULL)",
            "INSERT INTO counter VALUES (1, 0)",
            "CREATE TABLE counter_fences (seq bigserial PRIMARY KEY, fence bigint NOT NULL)",
        ]
    }
    fn restart(&self) {
        self.server.lock().expect("server").restart();
    }
    fn pause(&self) {
        self.server.lock().expect("server").pause();
    }
    fn resume(&self) {
        self.server.lock().expect("server").resume();
    }
}

#[async_trait::async_trait]
impl Database for crate::mysql_harness::MysqlHarness {
    fn url(&self) -> &str {
        self.url()
    }
    fn server_url(&self) -> String {
        self.server_url()
    }
    async fn exec(&self, sql: &str) {
        self.sql(&[sql]).await
    }
    async fn ints(&self, sql: &str) -> Vec<i64> {
        use mysql_async::prelude::Queryable;
        let mut c = crate::mysql_harness::connect(&self.server_url()).await;
        let v = c.query(sql).await.expect("query of the test");
        let _ = c.disconnect().await;
        v
    }
    fn counter_tables(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE counter (id INT PRIMARY KEY, v BIGINT NOT NULL) ENGINE = InnoDB",
            "INSERT INTO counter VALUES (1, 0)",
            "CREATE TABLE counter_fences (seq BIGINT AUTO_INCREMENT PRIMARY KEY, fence BIGINT NOT NULL) ENGINE = InnoDB",
        ]
    }
    fn restart(&self) {
        self.server.lock().expect("server").restart();
    }
    fn pause(&self) {
        self.server.lock().expect("server").pause();
    }
    fn resume(&self) {
        self.server.lock().expect("server").resume();
    }
}

/// Names no SQL literal could hold as they are (quotes, backslash, `%`, `_`, `;--`, non-ASCII), for batches.
pub fn batch_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("batch/{i}/it's \"q\" \\ %_ é;--")).collect()
}

/// One uncontended cycle on every name at once (one process: its operations share calls), `rounds` times:
/// each name's fence grows from round to round (`last`: each name's fence before), and the shared statistics
/// count every grant exactly, none active or expired after. Returns the last round's fences.
pub async fn cycles_at_once(w: &Warden, names: &[String], rounds: usize, mut last: Vec<u64>) -> Vec<u64> {
    let cycle = |name: String| {
        let w = w.clone();
        async move {
            let mut g = w.lock(&name).auto_renew(false).acquire().await.expect("acquire");
            let fence = g.fencing_token();
            g.release().await.expect("release");
            fence
        }
    };
    let before = w.stats().await.expect("stats");
    for _ in 0..rounds {
        let fences = futures::future::join_all(names.iter().cloned().map(cycle)).await;
        for (i, f) in fences.iter().enumerate() {
            let was = last.get(i).copied().unwrap_or(0);
            assert!(*f > was, "{}: fence {f} after {was}", names[i]);
        }
        last = fences;
    }
    let after = w.stats().await.expect("stats");
    assert_eq!(after.total_locks - before.total_locks, (rounds * names.len()) as u64);
    assert_eq!(after.active_locks, 0);
    assert_eq!(after.expired_locks, before.expired_locks);
    last
}

/// Releases at once of leases on every name, half by their guards (naming their client) and half by lock id
/// alone (as the service may): one process's call mixes both kinds, and every one is released exactly once.
pub async fn releases_with_and_without_a_client_at_once(w: &Warden, names: &[String]) {
    let mut held = Vec::new();
    for name in names {
        held.push(w.lock(name).auto_renew(false).acquire().await.expect("acquire"));
    }
    let releases = held.into_iter().enumerate().map(|(i, mut g)| {
        let w = w.clone();
        async move {
            if i % 2 == 0 {
                g.release().await.map(|_| ())
            } else {
                w.release(g.lock_id(), None).await.map(|_| ())
            }
        }
    });
    for r in futures::future::join_all(releases).await {
        r.expect("release");
    }
    for name in names {
        let info = w.inspect(name).await.expect("inspect");
        assert!(info.holders.is_empty(), "{name} still held: {info:?}");
    }
}

/// A stranger's release of `names[0]` is refused and the holder keeps its lease; a lease of `names[1]` that
/// ended (on the database's clock) is reported lost to its holder's release.
pub async fn a_stranger_is_refused_and_an_ended_lease_is_lost(w: &Warden, names: &[String]) {
    let g = w.lock(&names[0]).auto_renew(false).acquire().await.expect("acquire");
    let r = w.release(g.lock_id(), Some("someone else")).await;
    assert!(matches!(r, Err(Error::NotOwner { .. })), "{r:?}");
    let info = w.inspect(&names[0]).await.expect("inspect");
    assert_eq!(info.holders.len(), 1);
    assert!(w.release(g.lock_id(), None).await.is_ok());
    let short = w
        .lock(&names[1])
        .ttl(Duration::from_millis(100))
        .auto_renew(false)
        .acquire()
        .await
        .expect("acquire");
    // Until the database's own view no longer shows it held (it ends 100 ms after its grant, on its clock).
    let deadline = Instant::now() + 5 * SEC;
    while !w.inspect(&names[1]).await.expect("inspect").holders.is_empty() {
        assert!(Instant::now() < deadline, "the lease never ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = w.release(short.lock_id(), None).await;
    assert!(matches!(r, Err(Error::LeaseLost { .. })), "{r:?}");
}
