//! The schema, created and upgraded by the backend itself: versioned steps, applied once, in order, by one
//! process at a time (a transaction-scoped advisory lock), so any number of processes may start at once.

#[allow(unused_imports)]
use super::*;

/// The schema's steps; step `i` brings the schema to version `i + 1`. `{p}` stands for the table prefix. The
/// functions are this build's (PL/pgSQL resolves a body's columns when it runs, not when it is created): every
/// step that changes the tables installs the functions that read them again after its changes.
const STEPS: &[&str] = &[
    concat!(
        include_str!("sql/v1/tables.sql"),
        include_str!("sql/v1/queue.sql"),
        include_str!("sql/v1/acquire.sql"),
        include_str!("sql/v1/release.sql"),
        include_str!("sql/v1/batch.sql"),
    ),
    concat!(
        include_str!("sql/v2/semaphores.sql"),
        include_str!("sql/v1/queue.sql"),
        include_str!("sql/v1/acquire.sql"),
    ),
    // Version 3 changes no table: it installs the release that counts a resource's shared leases only once it
    // holds the resource's row, so that a shared lease being granted meanwhile is counted.
    include_str!("sql/v1/release.sql"),
    // Version 4 adds conditional acquires: {p}acquire_if, the acquire whose row lock it shares, and the batch
    // that calls it.
    concat!(
        include_str!("sql/v1/acquire.sql"),
        include_str!("sql/v4/conditions.sql"),
        include_str!("sql/v1/batch.sql"),
    ),
    // Version 5 adds waiter priorities: each waiter's place in its queue, and the acquires and batch that take a
    // priority (those of version 4 stay, waiting with priority 0, for processes of that version still running).
    concat!(
        include_str!("sql/v5/priorities.sql"),
        include_str!("sql/v1/queue.sql"),
        include_str!("sql/v1/acquire.sql"),
        include_str!("sql/v4/conditions.sql"),
        include_str!("sql/v1/batch.sql"),
        include_str!("sql/v5/compat.sql"),
    ),
    // Version 6 adds intention kinds: each resource's latest intention expiry, and the acquire, handover and
    // renewal that judge them.
    concat!(
        include_str!("sql/v6/intentions.sql"),
        include_str!("sql/v1/queue.sql"),
        include_str!("sql/v1/acquire.sql"),
        include_str!("sql/v1/release.sql"),
    ),
    // Version 7 changes no table: it installs the batch that runs a call's uncontended exclusive releases and
    // grants as one statement each.
    include_str!("sql/v1/batch.sql"),
    // Version 8 adds where each queue's live waiters begin, read and kept by the acquire and the handover; it
    // installs the release and renewal of a shared lease that lock its resource's row before the lease's, the
    // order a batch takes them in (before, a batch and a release of one resource's shared lease could wait
    // for each other in a circle until PostgreSQL broke it), and the batch whose commit waits for the disk
    // only when it granted, released, renewed or handed over.
    concat!(
        include_str!("sql/v8/queue_head.sql"),
        include_str!("sql/v1/queue.sql"),
        include_str!("sql/v1/acquire.sql"),
        include_str!("sql/v1/release.sql"),
        include_str!("sql/v1/batch.sql"),
    ),
];

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: i32 = STEPS.len() as i32;

/// Brings the schema under `prefix` to [`SCHEMA_VERSION`]. Refuses a schema newer than this build knows.
pub(super) async fn migrate(client: &mut tokio_postgres::Client, prefix: &str, address: &str) -> Result<()> {
    let err = |e| db_error(address, e);
    let tx = client.transaction().await.map_err(err)?;
    // One migrating process per prefix; the others wait here, then find the work done.
    tx.execute(
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        &[&format!("{prefix}schema")],
    )
    .await
    .map_err(err)?;
    tx.batch_execute(&format!(
        "CREATE TABLE IF NOT EXISTS {prefix}schema_version (id integer PRIMARY KEY CHECK (id = 1), \
         version integer NOT NULL)"
    ))
    .await
    .map_err(err)?;
    let row = tx
        .query_opt(&format!("SELECT version FROM {prefix}schema_version WHERE id = 1"), &[])
        .await
        .map_err(err)?;
    let current: i32 = match row {
        Some(r) => r.try_get(0).map_err(err)?,
        None => 0,
    };
    if current > SCHEMA_VERSION {
        return Err(Error::Protocol(format!(
            "the tables `{prefix}*` at {address} have schema version {current}, newer than this warden's \
             {SCHEMA_VERSION}: upgrade warden, or use another prefix"
        )));
    }
    for (i, step) in STEPS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(&step.replace("{p}", prefix)).await.map_err(err)?;
        tracing::info!(address, prefix, version = i + 1, "schema upgraded");
    }
    tx.execute(
        &format!(
            "INSERT INTO {prefix}schema_version (id, version) VALUES (1, $1) \
             ON CONFLICT (id) DO UPDATE SET version = excluded.version"
        ),
        &[&SCHEMA_VERSION],
    )
    .await
    .map_err(err)?;
    tx.commit().await.map_err(err)
}
