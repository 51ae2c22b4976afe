//! Wake-ups without polling on a database that has no notifications: each process keeps one listening
//! connection (its *bell*, named by the connection's id) parked in a statement that first checks the process's
//! inbox, then waits for a named lock (`GET_LOCK`) that a second connection of the process holds. A release that
//! tells a waiter of another process writes the message to that process's inbox in its own transaction, then,
//! after commit, interrupts the parked statement with `KILL QUERY` (which MySQL and MariaDB allow on the
//! connections of one's own user). The listener wakes at once and reads its inbox. (A lock wait rather than
//! `SLEEP`: MariaDB makes a second concurrent `KILL QUERY` of a sleeping statement wait until the sleep ends.)
//!
//! Written by hand because no crate offers notifications over MySQL. A wake-up is never lost: a message
//! committed before the parked statement starts is found by its inbox check; one committed later is rung. A
//! ring that cannot be delivered (another database user, a listener reconnecting) costs latency only: waiters
//! re-attempt at their queue heartbeat, and every reconnect wakes all of the process's waiters.

#[allow(unused_imports)]
use super::*;
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicI64, Ordering};

/// How long a parked statement sleeps before it checks the connection (and the inbox) again.
const PARK: Duration = Duration::from_secs(2);

/// Marks the parked statement, so a ring only ever interrupts a listener.
const MARK: &str = "warden_bell";

/// This process's bell: the listening connection's id, or 0 while it is not connected.
#[derive(Debug, Default)]
pub(super) struct Bell(AtomicI64);

impl Bell {
    /// The id to store with this process's waiters (none while disconnected).
    pub(super) fn id(&self) -> Option<i64> {
        Some(self.0.load(Ordering::Relaxed)).filter(|&id| id > 0)
    }
}

/// Starts the listener; resolves once it is parked for the first time (or failed to connect within `timeout`).
pub(super) async fn spawn(
    builder: OptsBuilder,
    prefix: String,
    router: Arc<WakeRouter>,
    bell: Arc<Bell>,
    address: String,
    timeout: Duration,
) -> Result<tokio::task::JoinHandle<()>> {
    let first = tokio::time::timeout(timeout, pair(&builder, &prefix))
        .await
        .map_err(|_| unavailable(&address, format!("no answer within {} ms", timeout.as_millis())))?
        .map_err(|e| db_error(&address, e))?;
    Ok(tokio::spawn(async move {
        let mut conn = Some(first);
        let mut backoff = Duration::from_millis(50);
        loop {
            if let Some((holder, c, lock)) = conn.take() {
                bell.0.store(c.id() as i64, Ordering::Relaxed);
                // Waiters may have been told something while no listener was parked: they ask again.
                router.wake_all();
                let e = listen(c, &lock, &prefix, &router, timeout).await;
                drop(holder);
                bell.0.store(0, Ordering::Relaxed);
                tracing::warn!(address = %address, error = %e, "mysql listener lost its connection; reconnecting");
            }
            tokio::time::sleep(backoff).await;
            match tokio::time::timeout(timeout, pair(&builder, &prefix)).await {
                Ok(Ok(c)) => {
                    conn = Some(c);
                    backoff = Duration::from_millis(50);
                }
                _ => backoff = (backoff * 2).min(Duration::from_secs(2)),
            }
        }
    }))
}

/// The holding connection (which holds the named lock it returns) and the listening one.
async fn pair(builder: &OptsBuilder, p: &str) -> std::result::Result<(Conn, Conn, String), mysql_async::Error> {
    let mut holder = Conn::new(builder.clone()).await?;
    // Connection ids are unique on a server while it runs: so is the name.
    let lock = format!("{p}park.{}", holder.id());
    holder.query_drop(format!("DO GET_LOCK('{lock}', 0)")).await?;
    let listener = Conn::new(builder.clone()).await?;
    Ok((holder, listener, lock))
}

/// Parks, reads the inbox, delivers, parks again, until a connection fails.
async fn listen(mut conn: Conn, lock: &str, p: &str, router: &WakeRouter, timeout: Duration) -> Error {
    let id = conn.id();
    let park = format!(
        "SELECT IF(EXISTS(SELECT 1 FROM {p}inbox WHERE bell = {id}), 0, GET_LOCK('{lock}', {})) AS {MARK}",
        PARK.as_secs()
    );
    let read = format!("SELECT id, msg FROM {p}inbox WHERE bell = {id} ORDER BY id LIMIT 1000");
    let bound = PARK + timeout;
    loop {
        match tokio::time::timeout(bound, conn.query_first::<Option<i64>, _>(&park)).await {
            Err(_) => return unavailable("listener", "the parked statement did not return"),
            // Interrupted: rung.
            Ok(Err(mysql_async::Error::Server(s))) if s.code == 1317 => {}
            Ok(Err(e)) => return db_error("listener", e),
            // The lock was free: the holding connection is gone.
            Ok(Ok(Some(Some(1)))) => return unavailable("listener", "the holding connection was lost"),
            Ok(Ok(_)) => {}
        }
        let rows: Vec<(i64, Vec<u8>)> = match tokio::time::timeout(timeout, conn.query(&read)).await {
            Err(_) => return unavailable("listener", "the inbox was not read in time"),
            Ok(Err(mysql_async::Error::Server(s))) if s.code == 1317 => continue,
            Ok(Err(e)) => return db_error("listener", e),
            Ok(Ok(rows)) => rows,
        };
        if rows.is_empty() {
            continue;
        }
        for (_, msg) in &rows {
            router.deliver(&String::from_utf8_lossy(msg));
        }
        // By id: one written earlier may commit later than those read.
        let read_ids = rows.iter().map(|r| r.0.to_string()).collect::<Vec<_>>().join(",");
        let clear = format!("DELETE FROM {p}inbox WHERE bell = {id} AND id IN ({read_ids})");
        // Interrupted or not, the next read finds what is left; a message read twice is delivered twice, which
        // a waiter ignores once it holds its grant.
        match tokio::time::timeout(timeout, conn.query_drop(&clear)).await {
            Err(_) => return unavailable("listener", "the inbox was not cleared in time"),
            Ok(Err(mysql_async::Error::Server(s))) if s.code == 1317 => {}
            Ok(Err(e)) => return db_error("listener", e),
            Ok(Ok(())) => {}
        }
    }
}

/// Rings the bells in `bells` (comma-separated connection ids) other than `own`, in the background: each
/// one that is a parked listener now is interrupted.
pub(super) fn ring(db: &Arc<Db>, bells: &str, own: Option<i64>) {
    let ids: BTreeSet<i64> = bells
        .split(',')
        .filter_map(|b| b.trim().parse().ok())
        .filter(|&b| Some(b) != own && b > 0)
        .collect();
    if ids.is_empty() {
        return;
    }
    let db = db.clone();
    tokio::spawn(async move {
        if let Err(e) = ring_now(&db, &ids).await {
            tracing::debug!(error = %e, "mysql: a bell was not rung; its waiters ask again at their heartbeat");
        }
    });
}

async fn ring_now(db: &Db, ids: &BTreeSet<i64>) -> Result<()> {
    let list = ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
    // Only connections parked in the listener's statement: an id alone may have been reused since it was stored.
    let sql = format!(
        "SELECT ID FROM information_schema.PROCESSLIST WHERE ID IN ({list}) AND INFO LIKE '%{MARK}%' \
         AND ID <> CONNECTION_ID()"
    );
    db.bounded(async {
        let err = |e| db_error(&db.address, e);
        let (_turn, mut conn) = db.conn().await?;
        let parked: Vec<i64> = conn.query(sql).await.map_err(err)?;
        for id in parked {
            conn.query_drop(format!("KILL QUERY {id}")).await.map_err(err)?;
        }
        Ok(())
    })
    .await
}
