//! Operator views: a lease by lock id, a resource's holders and queue, a client's leases, statistics, health.

#[allow(unused_imports)]
use super::*;
use crate::types::QueueEntry;
use tokio_postgres::Row;

/// A lease's columns, from the leases table (shared leases) or from a resource's row (the exclusive one), with
/// `now_us` the database's clock.
const SHARED_COLUMNS: &str = "lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence, renewals, \
                              expires_us <= now_us";
const EXCLUSIVE_COLUMNS: &str = "holder, resource, holder_kind, holder_client, holder_acquired, holder_until, \
                                 holder_ttl_ms, holder_fence, holder_renewals, holder_until <= now_us";

impl PostgresBackend {
    fn lease_row(&self, row: &Row) -> Result<LeaseInfo> {
        let db = &self.db;
        let kind_name: String = db.get(row, 2)?;
        lease(
            db.get(row, 0)?,
            db.get(row, 1)?,
            &kind_name,
            db.get(row, 3)?,
            [db.get(row, 4)?, db.get(row, 5)?, db.get(row, 6)?, db.get(row, 7)?],
            db.get(row, 8)?,
            db.get(row, 9)?,
        )
    }

    /// Exclusive leases (on resource rows) matching `exclusive`, then shared ones matching `shared`.
    fn leases_where(&self, exclusive: &str, shared: &str) -> String {
        let p = &self.db.sql.prefix;
        format!(
            "WITH n AS (SELECT {p}now_us() AS now_us) \
             SELECT {EXCLUSIVE_COLUMNS} FROM {p}resources, n WHERE holder IS NOT NULL AND {exclusive} \
             UNION ALL SELECT {SHARED_COLUMNS} FROM {p}leases, n WHERE {shared}"
        )
    }

    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let sql = self.leases_where("key_hash = $2 AND holder = $1", "lock_id = $1");
        let hash = lock_hash(lock_id) as i32;
        let rows = self.db.query(&sql, &[&lock_id, &hash]).await?;
        rows.first().map(|r| self.lease_row(r)).transpose()
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let p = &self.db.sql.prefix;
        let sql = self.leases_where(
            "resource = $1 AND holder_until > now_us",
            "resource = $1 AND expires_us > now_us ORDER BY 8",
        );
        let holders = self.db.query(&sql, &[&resource]).await?;
        let sql = format!(
            "SELECT waiter_id, client_id, kind, ttl_ms FROM {p}waiters \
             WHERE resource = $1 AND deadline_us >= {p}now_us() ORDER BY place, seq LIMIT 10000"
        );
        let queue = self.db.query(&sql, &[&resource]).await?;
        let mut info = ResourceInfo {
            holders: holders.iter().map(|r| self.lease_row(r)).collect::<Result<_>>()?,
            ..ResourceInfo::default()
        };
        for r in &queue {
            let kind_name: String = self.db.get(r, 2)?;
            let ttl: i64 = self.db.get(r, 3)?;
            info.queue.push(QueueEntry {
                waiter_id: self.db.get(r, 0)?,
                client_id: self.db.get(r, 1)?,
                kind: kind(&kind_name)?,
                ttl: Duration::from_millis(ttl.max(0) as u64),
            });
        }
        Ok(info)
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        // Read through: an index by client would cost every grant to serve this view.
        let sql = self.leases_where(
            "holder_client = $1 AND holder_until > now_us",
            "client_id = $1 AND expires_us > now_us LIMIT 10000",
        );
        let rows = self.db.query(&sql, &[&client_id]).await?;
        rows.iter().map(|r| self.lease_row(r)).collect()
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let p = &self.db.sql.prefix;
        // Ended leases are counted at release, when a grant replaces an ended exclusive one, or when the sweep
        // forgets them; ended ones still on record are counted here (their whole lease as hold time). Grants: every
        // lease ended or live.
        let sql = format!(
            "WITH n AS (SELECT {p}now_us() AS now_us), \
             r AS (SELECT coalesce(sum(released), 0)::bigint AS rel, coalesce(sum(expired), 0)::bigint AS e, \
                          coalesce(sum(hold_ms), 0)::bigint AS h, \
                          count(*) FILTER (WHERE holder_until > now_us AND holder_kind = 'exclusive') AS ex, \
                          count(*) FILTER (WHERE holder_until > now_us AND holder_kind = 'write') AS wr, \
                          count(*) FILTER (WHERE holder IS NOT NULL AND holder_until <= now_us) AS gone, \
                          coalesce(sum((holder_until - holder_acquired) / 1000) \
                            FILTER (WHERE holder IS NOT NULL AND holder_until <= now_us), 0)::bigint AS gone_ms \
                   FROM {p}resources, n), \
             l AS (SELECT count(*) FILTER (WHERE expires_us > now_us AND kind = 'shared') AS sh, \
                          count(*) FILTER (WHERE expires_us > now_us AND kind = 'read') AS rd, \
                          count(*) FILTER (WHERE expires_us <= now_us) AS gone, \
                          coalesce(sum((expires_us - acquired_us) / 1000) FILTER (WHERE expires_us <= now_us), 0) \
                            ::bigint AS gone_ms \
                   FROM {p}leases, n) \
             SELECT t.released + r.rel, t.expired + r.e + r.gone + l.gone, t.hold_ms + r.h + r.gone_ms + l.gone_ms, \
                    r.ex, l.sh, r.wr + l.rd \
             FROM {p}totals t, r, l WHERE t.id = 1"
        );
        let row = self.db.call(&sql, &[]).await?;
        let v = |i| self.db.get::<i64>(&row, i).map(|n| n.max(0) as u64);
        let (released, expired, hold_ms) = (v(0)?, v(1)?, v(2)?);
        let mut stats = Stats::default();
        stats.expired_locks = expired;
        stats.active_exclusive = v(3)?;
        stats.active_shared = v(4)?;
        stats.active_read_write = v(5)?;
        stats.active_locks = stats.active_exclusive + stats.active_shared + stats.active_read_write;
        stats.total_locks = released + expired + stats.active_locks;
        let ended = released + expired;
        stats.average_hold_time_ms = hold_ms.checked_div(ended).unwrap_or(0);
        if top > 0 {
            // Grants: ended leases, and the live exclusive one (live shared ones are not counted here).
            let sql = format!(
                "SELECT resource, released + expired + (holder_until > {p}now_us())::integer AS grants \
                 FROM {p}resources ORDER BY grants DESC LIMIT $1"
            );
            let limit = top.min(10) as i64;
            for r in self.db.query(&sql, &[&limit]).await? {
                let n: i64 = self.db.get(&r, 1)?;
                stats.top_resources.push((self.db.get(&r, 0)?, n.max(0) as u64));
            }
        }
        Ok(stats)
    }

    pub(super) async fn view_health(&self) -> Health {
        let start = std::time::Instant::now();
        let answer = self.db.call("SELECT 1", &[]).await.map(drop);
        health("postgres", &self.db.address, answer, start.elapsed())
    }
}
