//! Operator views: a lease by lock id, a resource's holders and queue, a client's leases, statistics, health.

#[allow(unused_imports)]
use super::*;
use crate::types::{HealthStatus, NodeHealth, QueueEntry};
use tokio_postgres::Row;

const LEASE_COLUMNS: &str = "lock_id, resource, kind, client_id, acquired_us, expires_us, ttl_ms, fence, renewals, \
                             expires_us <= now_us AS expired";

impl PostgresBackend {
    fn lease_row(&self, row: &Row) -> Result<LeaseInfo> {
        let db = &self.db;
        let lock_id: String = db.get(row, 0)?;
        let kind_name: String = db.get(row, 2)?;
        let ttl: i64 = db.get(row, 6)?;
        let fence: i64 = db.get(row, 7)?;
        let renewals: i32 = db.get(row, 8)?;
        Ok(LeaseInfo {
            lease_handle: crate::lease_handle(&lock_id),
            lock_id,
            resource: db.get(row, 1)?,
            kind: kind(&kind_name)?,
            client_id: db.get(row, 3)?,
            acquired_at: at(db.get(row, 4)?),
            expires_at: at(db.get(row, 5)?),
            ttl: Duration::from_millis(ttl.max(0) as u64),
            fencing_token: fence as u64,
            renewal_count: renewals.max(0) as u32,
            expired: db.get(row, 9)?,
        })
    }

    fn leases_where(&self, condition: &str) -> String {
        let p = &self.db.sql.prefix;
        format!("SELECT {LEASE_COLUMNS} FROM {p}leases, (SELECT {p}now_us() AS now_us) n WHERE {condition}")
    }

    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let rows = self.db.query(&self.leases_where("lock_id = $1"), &[&lock_id]).await?;
        rows.first().map(|r| self.lease_row(r)).transpose()
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let p = &self.db.sql.prefix;
        // The exclusive holder is named on the resource's row; shared holders are found by resource.
        let sql = self.leases_where(&format!(
            "(lock_id = (SELECT holder FROM {p}resources WHERE resource = $1) \
              OR (resource = $1 AND kind IN ('shared', 'read'))) AND expires_us > now_us ORDER BY fence"
        ));
        let holders = self.db.query(&sql, &[&resource]).await?;
        let sql = format!(
            "SELECT waiter_id, client_id, kind, ttl_ms FROM {p}waiters \
             WHERE resource = $1 AND deadline_us >= {p}now_us() ORDER BY seq LIMIT 10000"
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
        let sql = self.leases_where("client_id = $1 AND expires_us > now_us ORDER BY acquired_us LIMIT 10000");
        let rows = self.db.query(&sql, &[&client_id]).await?;
        rows.iter().map(|r| self.lease_row(r)).collect()
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let p = &self.db.sql.prefix;
        // Ended leases are counted at release, or when the sweep forgets them; expired rows not yet forgotten are
        // counted here (with their whole lease as hold time). Grants: every lease ended or still on record.
        let sql = format!(
            "WITH n AS (SELECT {p}now_us() AS now_us), \
             r AS (SELECT coalesce(sum(released), 0)::bigint AS rel, coalesce(sum(expired), 0)::bigint AS e, \
                          coalesce(sum(hold_ms), 0)::bigint AS h \
                   FROM {p}resources), \
             l AS (SELECT count(*) AS rows, \
                          count(*) FILTER (WHERE expires_us > now_us AND kind = 'exclusive') AS ex, \
                          count(*) FILTER (WHERE expires_us > now_us AND kind = 'shared') AS sh, \
                          count(*) FILTER (WHERE expires_us > now_us AND kind IN ('read', 'write')) AS rw, \
                          count(*) FILTER (WHERE expires_us <= now_us) AS gone, \
                          coalesce(sum((expires_us - acquired_us) / 1000) FILTER (WHERE expires_us <= now_us), 0) \
                            ::bigint AS gone_ms \
                   FROM {p}leases, n) \
             SELECT t.released + r.rel + t.expired + r.e + l.rows, t.released + r.rel, t.expired + r.e + l.gone, \
                    t.hold_ms + r.h + l.gone_ms, l.ex, l.sh, l.rw \
             FROM {p}totals t, r, l WHERE t.id = 1"
        );
        let row = self.db.call(&sql, &[]).await?;
        let v = |i| self.db.get::<i64>(&row, i).map(|n| n.max(0) as u64);
        let (total, released, expired, hold_ms) = (v(0)?, v(1)?, v(2)?, v(3)?);
        let mut stats = Stats::default();
        stats.total_locks = total;
        stats.expired_locks = expired;
        stats.active_exclusive = v(4)?;
        stats.active_shared = v(5)?;
        stats.active_read_write = v(6)?;
        stats.active_locks = stats.active_exclusive + stats.active_shared + stats.active_read_write;
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
        let r = self.db.call("SELECT 1", &[]).await;
        let node = match r {
            Ok(_) => NodeHealth::new(
                self.db.address.clone(),
                true,
                Some(start.elapsed().as_secs_f64() * 1000.0),
                None,
            ),
            Err(e) => NodeHealth::new(self.db.address.clone(), false, None, Some(e.to_string())),
        };
        let status = if node.reachable {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("postgres", status, vec![node], None)
    }
}
