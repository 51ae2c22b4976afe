//! Fault tests every SQL backend runs against its throwaway database: leases and fences survive a crash of the
//! whole server and work resumes on the same client; a stopped (SIGSTOPped) server fails every call fast, naming
//! the host, and a holder learns it lost before its lease can have ended.

use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};

const SEC: Duration = Duration::from_secs(1);

/// A throwaway database server a test may crash and stop.
pub trait Database: Sync {
    /// The backend URL clients use (with `timeout_ms=500`).
    fn url(&self) -> &str;
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

impl Database for crate::postgres_harness::PostgresHarness {
    fn url(&self) -> &str {
        self.url()
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

impl Database for crate::mysql_harness::MysqlHarness {
    fn url(&self) -> &str {
        self.url()
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
