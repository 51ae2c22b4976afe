//! The schema, created and upgraded by the backend itself: versioned steps, applied once, in order, by one
//! process at a time (a named lock, `GET_LOCK`), so any number of processes may start at once.

#[allow(unused_imports)]
use super::*;
use mysql_async::prelude::Queryable;
use mysql_async::Conn;

/// This build's procedures, as one step's statements.
macro_rules! procedures {
    () => {
        concat!(
            include_str!("sql/v1/queue.sql"),
            "\n$$\n",
            include_str!("sql/v1/acquire.sql"),
            "\n$$\n",
            include_str!("sql/v1/release.sql"),
        )
    };
}

/// The schema's steps; step `i` brings the schema to version `i + 1`. `{p}` stands for the table prefix;
/// statements are separated by lines holding only `$$` (procedure bodies hold `;`). The procedures are this
/// build's (a procedure's body is checked when it runs, not when it is created): every step that changes the
/// tables installs them again after its changes.
const STEPS: &[&str] = &[
    concat!(include_str!("sql/v1/tables.sql"), "\n$$\n", procedures!()),
    concat!(include_str!("sql/v2/semaphores.sql"), "\n$$\n", procedures!()),
    // Version 3 changes no table: it installs acquire_if (conditional acquires; `acquire` stays, calling it) and
    // the handover that wakes a conditional waiter instead of handing it the lock.
    procedures!(),
    // Version 4 adds waiter priorities: each waiter's place in its queue, and acquire_with, which takes a
    // priority (acquire_if and acquire stay, waiting with priority 0, for processes of earlier versions).
    concat!(include_str!("sql/v4/priorities.sql"), "\n$$\n", procedures!()),
    // Version 5 adds intention kinds: each resource's latest intention expiry, read by the acquire, the
    // handover and the renewal.
    concat!(include_str!("sql/v5/intentions.sql"), "\n$$\n", procedures!()),
    // Version 6 adds where each queue's live waiters begin, read and kept by the acquire and the handover.
    concat!(include_str!("sql/v6/queue_head.sql"), "\n$$\n", procedures!()),
    // Version 7 changes no table: it installs the procedures again from a session that assigns an UPDATE's
    // columns left to right (a procedure runs in the `sql_mode` it was created in, and one created where the
    // server's default assigned them all at once gave a grant's record the fence before it).
    procedures!(),
    // Version 8 changes no table: it adds release_held, the release of a lease handed to a waiter, which locks
    // the resource's row first.
    procedures!(),
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = STEPS.len() as i32;

/// Brings the schema under `prefix` to [`SCHEMA_VERSION`]. Refuses a schema newer than this build knows.
pub(super) async fn migrate(conn: &mut Conn, prefix: &str, address: &str) -> Result<()> {
    let err = |e| db_error(address, e);
    // One migrating process per prefix and database; the others wait here, then find the work done. DDL commits
    // as it goes in MySQL, so the lock is a named one rather than a transaction.
    let lock = format!("{prefix}schema");
    let got: Option<i64> = conn
        .exec_first("SELECT GET_LOCK(CONCAT(DATABASE(), '.', ?), 60)", (lock.as_str(),))
        .await
        .map_err(err)?;
    if got != Some(1) {
        return Err(unavailable(address, "another process held the schema lock for 60 s"));
    }
    let result = apply(conn, prefix, address).await;
    let _ = conn
        .exec_drop("DO RELEASE_LOCK(CONCAT(DATABASE(), '.', ?))", (lock.as_str(),))
        .await;
    result
}

async fn apply(conn: &mut Conn, prefix: &str, address: &str) -> Result<()> {
    let err = |e| db_error(address, e);
    conn.query_drop(format!(
        "CREATE TABLE IF NOT EXISTS {prefix}schema_version (id INT NOT NULL PRIMARY KEY, version INT NOT NULL) \
         ENGINE = InnoDB"
    ))
    .await
    .map_err(err)?;
    let current: i32 = conn
        .query_first(format!("SELECT version FROM {prefix}schema_version WHERE id = 1"))
        .await
        .map_err(err)?
        .unwrap_or(0);
    if current > SCHEMA_VERSION {
        return Err(Error::Protocol(format!(
            "the tables `{prefix}*` at {address} have schema version {current}, newer than this warden's \
             {SCHEMA_VERSION}: upgrade warden, or use another prefix"
        )));
    }
    for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
        for statement in step.replace("{p}", prefix).split("\n$$\n") {
            let statement = statement.trim();
            if statement
                .lines()
                .all(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
            {
                continue;
            }
            conn.query_drop(statement).await.map_err(err)?;
        }
        tracing::info!(address, prefix, version = i + 1, "schema upgraded");
    }
    conn.exec_drop(
        format!(
            "INSERT INTO {prefix}schema_version (id, version) VALUES (1, ?) \
             ON DUPLICATE KEY UPDATE version = VALUES(version)"
        ),
        (SCHEMA_VERSION,),
    )
    .await
    .map_err(err)
}
