//! Housekeeping: the sweep forgets long-ended leases, dead waiters, unread wake-ups and idle resources, keeping
//! their counters in the totals (statistics stay cumulative).

#[allow(unused_imports)]
use super::*;
use mysql_async::prelude::Queryable;
use mysql_async::{IsolationLevel, Row, TxOpts, Value};
use std::collections::HashSet;

/// Resources looked at per sweep, and idle ones forgotten per transaction.
const BATCH: usize = 500;

/// A resource nobody holds or waits for, last granted before the retention's start (the three `?`): one the sweep
/// forgets. Listed where the candidates are found and again where their rows are locked, which decides.
const IDLE: &str = "queued = 0 AND holder IS NULL AND fence < ? AND excl_until < ? AND shared_until < ?";

impl Db {
    /// The housekeeping task, every `sweep_every`.
    pub(super) fn spawn_sweeper(self: &Arc<Self>) -> AbortOnDrop {
        let db = self.clone();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(db.opts.sweep_every).await;
                if let Err(e) = db.sweep().await {
                    tracing::debug!(error = %e, "mysql sweep did not finish; trying again at the next one");
                }
            }
        }))
    }

    async fn sweep(&self) -> Result<()> {
        let p = &self.prefix;
        let now: i64 = match self.first(&format!("SELECT {p}now_us()"), vec![]).await? {
            Some(mut row) => self.get(&mut row, 0)?,
            None => return Err(self.unexpected("now_us", "no row")),
        };
        let before = now - self.opts.retain.as_micros().min(i64::MAX as u128) as i64;
        // Resources with something ended in them: one transaction each, by the procedure that judges them.
        let sql = format!(
            "(SELECT resource FROM {p}leases WHERE expires_us < ? LIMIT {BATCH}) \
             UNION (SELECT resource FROM {p}waiters WHERE deadline_us < ? LIMIT {BATCH}) \
             UNION (SELECT resource FROM {p}resources WHERE holder IS NOT NULL AND excl_until < ? LIMIT {BATCH})"
        );
        for resource in self.names(self.rows(&sql, vec![before.into(); 3]).await?)? {
            let sql = format!("CALL {p}sweep_one(?, ?)");
            self.bounded(async {
                let (_turn, mut conn) = self.conn().await?;
                conn.exec_drop(sql, (resource, before))
                    .await
                    .map_err(|e| db_error(&self.address, e))
            })
            .await?;
        }
        // Idle resources, all at once: after a burst over many resources, a transaction each would commit as
        // often as the burst did, beside the live traffic.
        let sql = format!("SELECT resource FROM {p}resources WHERE {IDLE} LIMIT {BATCH}");
        let idle = self.names(self.rows(&sql, vec![before.into(); 3]).await?)?;
        if !idle.is_empty() {
            self.forget_idle(idle, before).await?;
        }
        let sql = format!("DELETE FROM {p}inbox WHERE at_us < ?");
        self.rows(&sql, vec![before.into()]).await.map(drop)
    }

    /// Forgets those of `names` still idle, in one transaction: their rows are locked first (every change to a
    /// resource, its leases and its queue locks its row first), one with a lease or a waiter left is kept for
    /// the procedure, and the counters of the others go to the totals before their rows are deleted.
    async fn forget_idle(&self, names: Vec<Vec<u8>>, before: i64) -> Result<()> {
        let p = &self.prefix;
        let err = |e| db_error(&self.address, e);
        let marks = |n: usize| vec!["?"; n].join(", ");
        self.bounded(async {
            let (_turn, mut conn) = self.conn().await?;
            // Read committed: the names no longer there (forgotten by another process's sweep) take no gap locks
            // that a first grant of a new name would wait for, and the later reads see what the locks settled.
            // Dropped before its commit, the transaction rolls back.
            let mut opts = TxOpts::default();
            opts.with_isolation_level(IsolationLevel::ReadCommitted);
            let mut tx = conn.start_transaction(opts).await.map_err(err)?;
            let sql = format!(
                "SELECT resource, released, expired, hold_ms FROM {p}resources WHERE resource IN ({}) AND {IDLE} \
                 FOR UPDATE",
                marks(names.len())
            );
            let mut params: Vec<Value> = names.into_iter().map(Value::from).collect();
            params.extend([before.into(), before.into(), before.into()]);
            let locked: Vec<Row> = tx.exec(sql, params).await.map_err(err)?;
            if locked.is_empty() {
                return Ok(());
            }
            let mut rows = Vec::with_capacity(locked.len());
            for mut row in locked {
                let name: Vec<u8> = self.get(&mut row, 0)?;
                let counts: [i64; 3] = [self.get(&mut row, 1)?, self.get(&mut row, 2)?, self.get(&mut row, 3)?];
                rows.push((name, counts));
            }
            let listed: Vec<Value> = rows.iter().map(|(n, _)| Value::from(n.as_slice())).collect();
            let sql = format!(
                "SELECT resource FROM {p}leases WHERE resource IN ({0}) \
                 UNION SELECT resource FROM {p}waiters WHERE resource IN ({0})",
                marks(listed.len())
            );
            let busy = tx.exec(sql, [listed.clone(), listed].concat()).await.map_err(err)?;
            let busy: HashSet<Vec<u8>> = self.names(busy)?.into_iter().collect();
            rows.retain(|(n, _)| !busy.contains(n));
            if rows.is_empty() {
                return Ok(());
            }
            let sum = |i: usize| rows.iter().map(|(_, c)| c[i]).sum::<i64>();
            let sql = format!(
                "UPDATE {p}totals SET released = released + ?, expired = expired + ?, hold_ms = hold_ms + ? \
                 WHERE id = 1"
            );
            tx.exec_drop(sql, (sum(0), sum(1), sum(2))).await.map_err(err)?;
            let sql = format!("DELETE FROM {p}resources WHERE resource IN ({})", marks(rows.len()));
            let names: Vec<Value> = rows.iter().map(|(n, _)| Value::from(n.as_slice())).collect();
            tx.exec_drop(sql, names).await.map_err(err)?;
            tx.commit().await.map_err(err)
        })
        .await
    }

    /// The first column of each row: resource names.
    fn names(&self, rows: Vec<Row>) -> Result<Vec<Vec<u8>>> {
        rows.into_iter().map(|mut row| self.get(&mut row, 0)).collect()
    }
}
