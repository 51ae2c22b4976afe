//! Operator views: a lease by lock id, a resource's holders and queue, a client's leases, statistics, health.

#[allow(unused_imports)]
use super::*;
use crate::types::QueueEntry;
use mysql_async::{Row, Value};

/// A lease's columns, from the leases table (shared leases) or from a resource's row (the exclusive one), with
/// `n.now_us` the database's clock.
const SHARED_COLUMNS: &str = "lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence, renewals, \
                              expires_us <= n.now_us";
const EXCLUSIVE_COLUMNS: &str = "holder, resource, holder_kind, holder_client, holder_acquired, excl_until, \
                                 holder_ttl_ms, holder_fence, holder_renewals, excl_until <= n.now_us";

impl MysqlBackend {
    fn lease_row(&self, mut row: Row) -> Result<LeaseInfo> {
        let (db, r) = (&self.db, &mut row);
        let kind_name: String = db.get(r, 2)?;
        let expired: i64 = db.get(r, 9)?;
        lease(
            db.get(r, 0)?,
            db.get(r, 1)?,
            &kind_name,
            db.get(r, 3)?,
            [db.get(r, 4)?, db.get(r, 5)?, db.get(r, 6)?, db.get(r, 7)?],
            db.get(r, 8)?,
            expired != 0,
        )
    }

    /// Exclusive leases (on resource rows) matching `exclusive`, then shared ones matching `shared`; `params`
    /// are what the two conditions read, in order.
    async fn leases_where(&self, exclusive: &str, shared: &str, params: Vec<Value>) -> Result<Vec<LeaseInfo>> {
        let p = &self.db.prefix;
        let sql = format!(
            "(SELECT {EXCLUSIVE_COLUMNS} FROM {p}resources, (SELECT {p}now_us() AS now_us) n \
               WHERE holder IS NOT NULL AND {exclusive} LIMIT 10000) \
             UNION ALL (SELECT {SHARED_COLUMNS} FROM {p}leases, (SELECT {p}now_us() AS now_us) n \
               WHERE {shared} ORDER BY fence LIMIT 10000)"
        );
        let rows = self.db.rows(&sql, params).await?;
        rows.into_iter().map(|r| self.lease_row(r)).collect()
    }

    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let params = vec![lock_hash(lock_id).into(), lock_id.into(), lock_id.into()];
        let mut found = self
            .leases_where("key_hash = ? AND holder = ?", "lock_id = ?", params)
            .await?;
        Ok(found.pop())
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let p = &self.db.prefix;
        let holders = self
            .leases_where(
                "resource = ? AND excl_until > n.now_us",
                "resource = ? AND expires_us > n.now_us",
                vec![resource.into(), resource.into()],
            )
            .await?;
        let sql = format!(
            "SELECT waiter_id, client_id, kind, ttl_ms FROM {p}waiters \
             WHERE resource = ? AND deadline_us >= {p}now_us() ORDER BY place, seq LIMIT 10000"
        );
        let mut info = ResourceInfo {
            holders,
            ..ResourceInfo::default()
        };
        for mut r in self.db.rows(&sql, vec![resource.into()]).await? {
            let db = &self.db;
            let kind_name: String = db.get(&mut r, 2)?;
            let ttl: i64 = db.get(&mut r, 3)?;
            info.queue.push(QueueEntry {
                waiter_id: db.get(&mut r, 0)?,
                client_id: db.get(&mut r, 1)?,
                kind: kind(&kind_name)?,
                ttl: Duration::from_millis(ttl.max(0) as u64),
            });
        }
        Ok(info)
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        // The exclusive ones read through: an index by client would cost every grant to serve this view.
        self.leases_where(
            "holder_client = ? AND excl_until > n.now_us",
            "client_id = ? AND expires_us > n.now_us",
            vec![client_id.into(), client_id.into()],
        )
        .await
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let p = &self.db.prefix;
        // Ended leases are counted at release, when a grant replaces an ended exclusive one, or when the sweep
        // forgets them; ended ones still on record are counted here (their whole lease as hold time).
        let sql = format!(
            "SELECT t.released + r.rel, t.expired + r.e + r.gone + l.gone, t.hold_ms + r.h + r.gone_ms + l.gone_ms, \
                    r.ex, l.sh, r.wr + l.rd \
             FROM {p}totals t, \
              (SELECT COALESCE(SUM(released), 0) AS rel, COALESCE(SUM(expired), 0) AS e, \
                      COALESCE(SUM(hold_ms), 0) AS h, \
                      COALESCE(SUM(excl_until > n.now_us AND holder_kind = 'exclusive'), 0) AS ex, \
                      COALESCE(SUM(excl_until > n.now_us AND holder_kind = 'write'), 0) AS wr, \
                      COALESCE(SUM(holder IS NOT NULL AND excl_until <= n.now_us), 0) AS gone, \
                      COALESCE(SUM(IF(holder IS NOT NULL AND excl_until <= n.now_us, excl_until - holder_acquired, \
                                      0)), 0) DIV 1000 AS gone_ms \
               FROM {p}resources, (SELECT {p}now_us() AS now_us) n) r, \
              (SELECT COALESCE(SUM(expires_us > n.now_us AND kind = 'shared'), 0) AS sh, \
                      COALESCE(SUM(expires_us > n.now_us AND kind = 'read'), 0) AS rd, \
                      COALESCE(SUM(expires_us <= n.now_us), 0) AS gone, \
                      COALESCE(SUM(IF(expires_us <= n.now_us, expires_us - acquired_us, 0)), 0) DIV 1000 AS gone_ms \
               FROM {p}leases, (SELECT {p}now_us() AS now_us) n) l \
             WHERE t.id = 1"
        );
        let mut row = self
            .db
            .first(&sql, vec![])
            .await?
            .ok_or_else(|| self.db.unexpected("stats", "no row"))?;
        let mut v = |i| {
            self.db
                .get::<mysql_async::Value>(&mut row, i)
                .and_then(|v| number(&self.db, v))
        };
        let (released, expired, hold_ms) = (v(0)?, v(1)?, v(2)?);
        let mut stats = Stats::default();
        stats.expired_locks = expired;
        stats.active_exclusive = v(3)?;
        stats.active_shared = v(4)?;
        stats.active_read_write = v(5)?;
        stats.active_locks = stats.active_exclusive + stats.active_shared + stats.active_read_write;
        stats.total_locks = released + expired + stats.active_locks;
        stats.average_hold_time_ms = hold_ms.checked_div(released + expired).unwrap_or(0);
        if top > 0 {
            let sql = format!("SELECT resource, grants FROM {p}resources ORDER BY grants DESC LIMIT ?");
            for mut r in self.db.rows(&sql, vec![(top.min(10) as u64).into()]).await? {
                let n: i64 = self.db.get(&mut r, 1)?;
                stats.top_resources.push((self.db.get(&mut r, 0)?, n.max(0) as u64));
            }
        }
        Ok(stats)
    }

    pub(super) async fn view_health(&self) -> Health {
        let start = std::time::Instant::now();
        let answer = self.db.first("SELECT 1", vec![]).await.map(drop);
        health("mysql", &self.db.address, answer, start.elapsed())
    }
}

/// A sum as MySQL answers it (an integer or a decimal, by server and expression).
fn number(db: &Db, v: Value) -> Result<u64> {
    let n = match v {
        Value::Int(n) => n,
        Value::UInt(n) => n.min(i64::MAX as u64) as i64,
        Value::Bytes(b) => String::from_utf8_lossy(&b)
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| db.unexpected("stats", "a sum that is no number"))?,
        Value::NULL => 0,
        _ => return Err(db.unexpected("stats", "a sum that is no number")),
    };
    Ok(n.max(0) as u64)
}
