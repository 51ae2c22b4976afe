//! One batch's statements and how its answer is read: every row locked by key in key order and read, one
//! `UPDATE` for the releases and one for the grants, the counts of rows each changed, the commit; then each
//! operation's outcome judged from the locked rows as the `UPDATE`s judged them, and checked against the counts.

use super::batch::{FastOp, Job};
#[allow(unused_imports)]
use super::*;
use mysql_async::Row;
use std::collections::HashMap;
use std::fmt::Write as _;

/// A byte string as a SQL hex literal: any bytes, nothing to escape.
fn hex(s: &str) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(3 + 2 * s.len());
    out.push_str("X'");
    for b in s.bytes() {
        // By table: a formatter call per byte was 5% of a uniform run's client time.
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out.push('\'');
    out
}

fn int_or_null(v: Option<i64>) -> String {
    v.map_or_else(|| "NULL".into(), |n| n.to_string())
}

/// What the batch did with one operation.
pub(super) enum Fast {
    Done(Box<Reply>),
    /// Not done: the resource is held or has waiters, or another operation of the batch took it.
    Contended,
    /// Not done, for another reason: no row yet, or not this lease's (ended, or another client's).
    Elsewhere,
}

/// The operations of one batch: the releases, and the first acquire of each resource (later ones in the same
/// batch go to the procedures).
pub(super) struct Plan<'a> {
    releases: Vec<(usize, &'a str, &'a str, Option<&'a str>)>,
    acquires: Vec<(usize, &'a AcquireRequest)>,
    /// Acquires of a resource another acquire of the batch goes first on.
    behind: Vec<usize>,
}

impl<'a> Plan<'a> {
    pub(super) fn of(jobs: &'a [Job]) -> Self {
        let mut plan = Plan {
            releases: Vec::new(),
            acquires: Vec::new(),
            behind: Vec::new(),
        };
        for (i, j) in jobs.iter().enumerate() {
            match &j.op {
                FastOp::Release {
                    resource,
                    lock_id,
                    client,
                } => plan.releases.push((i, resource, lock_id, client.as_deref())),
                FastOp::Acquire(req) if plan.acquires.iter().any(|(_, r)| r.resource == req.resource) => {
                    plan.behind.push(i)
                }
                FastOp::Acquire(req) => plan.acquires.push((i, req)),
            }
        }
        plan
    }

    /// The batch's statements: the clock; every row locked by key in key order and read; the releases'
    /// `UPDATE`; the grants' `UPDATE` (the procedure's fast path, per row); how many rows each changed; the
    /// commit.
    pub(super) fn sql(&self, p: &str, jobs: &[Job]) -> String {
        let list = |names: &mut dyn Iterator<Item = &str>| names.map(hex).collect::<Vec<_>>().join(",");
        let mut rows: Vec<&str> = jobs.iter().map(|j| j.op.resource()).collect();
        rows.sort_unstable();
        rows.dedup();
        let mut sql = format!(
            "SET @now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED), @released = 0, @granted = 0; \
             SELECT resource, holder, holder_client, holder_acquired, excl_until, queued, fence, holder_fence, \
             shared_until, @now FROM {p}resources WHERE resource IN ({}) ORDER BY resource FOR UPDATE; ",
            list(&mut rows.into_iter())
        );
        if !self.releases.is_empty() {
            // (resource, lock id) pairs, and (resource, lock id, client) triples for the releases that name
            // their client. The database finds the rows of either list by key (a range on the primary key);
            // of both lists joined by OR it would scan the table, so then the names are listed once more.
            let (mut pairs, mut triples) = (Vec::new(), Vec::new());
            for &(_, resource, lock_id, client) in &self.releases {
                let (r, l) = (hex(resource), hex(lock_id));
                match client {
                    None => pairs.push(format!("({r},{l})")),
                    Some(c) => triples.push(format!("({r},{l},{})", hex(c))),
                }
            }
            let mut which = Vec::new();
            if !pairs.is_empty() {
                which.push(format!("(resource, holder) IN ({})", pairs.join(",")));
            }
            if !triples.is_empty() {
                which.push(format!("(resource, holder, holder_client) IN ({})", triples.join(",")));
            }
            let rows = if which.len() > 1 {
                format!(
                    "resource IN ({}) AND ({})",
                    list(&mut self.releases.iter().map(|r| r.1)),
                    which.join(" OR ")
                )
            } else {
                which.join("")
            };
            let _ = write!(
                sql,
                "UPDATE {p}resources SET released = released + 1, \
                 hold_ms = hold_ms + GREATEST(@now - holder_acquired, 0) DIV 1000, holder = NULL, excl_until = 0 \
                 WHERE {rows} AND excl_until > @now AND queued = 0; \
                 SET @released = ROW_COUNT(); "
            );
        }
        if !self.acquires.is_empty() {
            // A column's value per row; one constant when every grant gives it the same (each statement is
            // parsed anew: parsing is a large part of its cost).
            let case = |value: &dyn Fn(&AcquireRequest) -> String| {
                let values: Vec<String> = self.acquires.iter().map(|(_, r)| value(r)).collect();
                if values.iter().all(|v| *v == values[0]) {
                    return values[0].clone();
                }
                let mut s = String::from("CASE resource");
                for ((_, r), v) in self.acquires.iter().zip(&values) {
                    let _ = write!(s, " WHEN {} THEN {v}", hex(&r.resource));
                }
                s.push_str(" END");
                s
            };
            // An ended lease still on the row is counted as expired as it is replaced.
            let _ = write!(
                sql,
                "UPDATE {p}resources SET expired = expired + (holder IS NOT NULL), \
                 hold_ms = hold_ms + COALESCE((excl_until - holder_acquired) DIV 1000, 0), \
                 fence = GREATEST(fence + 1, @now), holder_fence = fence, holder = {}, holder_kind = {}, \
                 holder_client = {}, holder_acquired = @now, excl_until = @now + {} * 1000, holder_ttl_ms = {}, \
                 holder_renewals = 0, holder_max_renewals = {}, holder_max_hold_ms = {}, grants = grants + 1, \
                 permits = 0 \
                 WHERE resource IN ({}) AND excl_until <= @now AND shared_until <= @now AND queued = 0; \
                 SET @granted = ROW_COUNT(); ",
                case(&|r| hex(&r.lock_id)),
                case(&|r| format!("'{}'", r.kind.as_str())),
                case(&|r| hex(&r.client_id)),
                case(&|r| millis(r.ttl).to_string()),
                case(&|r| millis(r.ttl).to_string()),
                case(&|r| int_or_null(r.max_renewals.map(i64::from))),
                case(&|r| int_or_null(r.max_hold.map(millis))),
                list(&mut self.acquires.iter().map(|(_, r)| r.resource.as_str())),
            );
        }
        sql.push_str("SELECT @released, @granted; COMMIT");
        sql
    }
}

/// A row as the batch found it, locked.
struct Before {
    holder: Option<Vec<u8>>,
    client: Option<Vec<u8>>,
    acquired: Option<i64>,
    until: i64,
    queued: i64,
    fence: i64,
    holder_fence: Option<i64>,
    shared_until: i64,
}

impl Plan<'_> {
    /// Each operation's outcome, judged from the locked rows as the `UPDATE`s judged them, and checked against
    /// the rows they changed.
    pub(super) fn read(&self, db: &Db, n: usize, rows: Vec<Row>, released: i64, granted: i64) -> Result<Vec<Fast>> {
        let mut before: HashMap<Vec<u8>, Before> = HashMap::new();
        let mut now: Option<i64> = None;
        for mut row in rows {
            now = Some(db.get(&mut row, 9)?);
            let b = Before {
                holder: db.get(&mut row, 1)?,
                client: db.get(&mut row, 2)?,
                acquired: db.get(&mut row, 3)?,
                until: db.get(&mut row, 4)?,
                queued: db.get(&mut row, 5)?,
                fence: db.get(&mut row, 6)?,
                holder_fence: db.get(&mut row, 7)?,
                shared_until: db.get(&mut row, 8)?,
            };
            before.insert(db.get(&mut row, 0)?, b);
        }
        let mut out: Vec<Fast> = (0..n).map(|_| Fast::Elsewhere).collect();
        for &i in &self.behind {
            out[i] = Fast::Contended;
        }
        let Some(now) = now else {
            // No row of these resources exists yet: the procedures make them.
            return Ok(out);
        };
        let mut counted = (0, 0);
        for &(i, resource, lock_id, client) in &self.releases {
            let Some(b) = before.get_mut(resource.as_bytes()) else {
                continue;
            };
            let live = b.holder.as_deref() == Some(lock_id.as_bytes())
                && b.until > now
                && client.is_none_or(|c| b.client.as_deref() == Some(c.as_bytes()));
            if live && b.queued > 0 {
                out[i] = Fast::Contended;
            } else if live {
                counted.0 += 1;
                out[i] = Fast::Done(Box::new(Reply {
                    status: "released".into(),
                    resource: Some(resource.into()),
                    now_us: Some(now),
                    held_us: Some((now - b.acquired.unwrap_or(now)).max(0)),
                    ..Reply::default()
                }));
                (b.holder, b.until) = (None, 0);
            }
        }
        for &(i, req) in &self.acquires {
            let Some(b) = before.get(req.resource.as_bytes()) else {
                continue;
            };
            let reply = |fence, expires, remaining| {
                Fast::Done(Box::new(Reply {
                    status: "granted".into(),
                    resource: Some(req.resource.clone()),
                    fence: Some(fence),
                    now_us: Some(now),
                    expires_us: Some(expires),
                    remaining_us: remaining,
                    ..Reply::default()
                }))
            };
            if b.until <= now && b.shared_until <= now && b.queued == 0 {
                counted.1 += 1;
                out[i] = reply((b.fence + 1).max(now), now + millis(req.ttl) * 1000, None);
            } else if b.holder.as_deref() == Some(req.lock_id.as_bytes()) && b.until > now {
                // Granted by an earlier attempt with this lock id, its answer lost: what is left of it.
                out[i] = reply(b.holder_fence.unwrap_or(b.fence), b.until, Some(b.until - now));
            } else {
                out[i] = Fast::Contended;
            }
        }
        if counted != (released, granted) {
            return Err(db.unexpected(
                "batch",
                &format!("{released} releases and {granted} grants where {counted:?} were judged to be"),
            ));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_bytes_become_a_hex_literal() {
        assert_eq!(super::hex("a'\u{0}é"), "X'612700c3a9'");
        assert_eq!(super::hex(""), "X''");
    }
}
