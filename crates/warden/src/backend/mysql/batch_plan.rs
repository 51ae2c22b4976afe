//! One batch's statements and how its answer is read: one `UPDATE` for the releases and one for the grants,
//! each noting the rows it changes; one row with those notes; the commit. An operation whose row was changed is
//! done; any other goes to the procedures, which judge it.

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
    /// Not done: another operation of the batch goes first on its resource.
    Contended,
    /// Not done, for a reason the procedures judge (and note, when it is contention): the resource is held or
    /// has waiters, it has no row yet, or the lease was not this one's (ended, or another client's).
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

    /// The batch's statements: the clock; the releases' `UPDATE`; the grants' `UPDATE` (the procedure's fast
    /// path, per row); what each did; the commit. Each `UPDATE` finds its rows by key and notes every row it
    /// changes in a session variable as it changes it (MariaDB has no `UPDATE … RETURNING`), so one small row
    /// answers the batch: measured, the locking read of every row that judged the operations before took a
    /// fifth of a batch's server time. Two batches never wait on each other in a circle: an `UPDATE` in read
    /// committed waits only for a row whose last committed version it would change, so a grant waits only for
    /// another grant of the same free resource, and each statement takes its rows in key order.
    pub(super) fn sql(&self, p: &str) -> String {
        let list = |names: &mut dyn Iterator<Item = &str>| names.map(hex).collect::<Vec<_>>().join(",");
        let mut sql = String::from(
            "SET @now = CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED), @released = '', @granted = ''; ",
        );
        if !self.releases.is_empty() {
            // (resource, lock id) pairs, and (resource, lock id, client) triples for the releases that name
            // their client, behind the names alone, by which the database finds the rows by key: MariaDB 10.11
            // takes a list of one tuple for a comparison of tuples, for which an `UPDATE` reads the whole table
            // (every batch of one release did: 1,001 rows read for one in a table of 1,000 resources).
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
            let rows = format!(
                "resource IN ({}) AND ({})",
                list(&mut self.releases.iter().map(|r| r.1)),
                which.join(" OR ")
            );
            // `excl_until` becomes 0 as before; the expression also notes the row and how long it was held.
            let _ = write!(
                sql,
                "UPDATE {p}resources SET released = released + 1, \
                 hold_ms = hold_ms + GREATEST(@now - holder_acquired, 0) DIV 1000, holder = NULL, \
                 excl_until = LEAST(0, LENGTH(@released := CONCAT(@released, HEX(resource), ' ', \
                 COALESCE(GREATEST(@now - holder_acquired, 0), 0), ' '))) \
                 WHERE {rows} AND excl_until > @now AND queued = 0; "
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
            // An ended lease still on the row is counted as expired as it is replaced. The new fence is kept in
            // a variable for `holder_fence` and the note, whatever order the server assigns columns in.
            // `permits` becomes 0 as before; the expression also notes the row and its fence.
            let _ = write!(
                sql,
                "UPDATE {p}resources SET expired = expired + (holder IS NOT NULL), \
                 hold_ms = hold_ms + COALESCE((excl_until - holder_acquired) DIV 1000, 0), \
                 fence = (@fence := GREATEST(fence + 1, @now)), holder_fence = @fence, holder = {}, \
                 holder_kind = {}, holder_client = {}, holder_acquired = @now, excl_until = @now + {} * 1000, \
                 holder_ttl_ms = {}, holder_renewals = 0, holder_max_renewals = {}, holder_max_hold_ms = {}, \
                 grants = grants + 1, \
                 permits = LEAST(0, LENGTH(@granted := CONCAT(@granted, HEX(resource), ' ', @fence, ' '))) \
                 WHERE resource IN ({}) AND excl_until <= @now AND shared_until <= @now AND queued = 0; ",
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
        sql.push_str("SELECT @now, @released, @granted; COMMIT");
        sql
    }

    /// Each operation's outcome from the batch's answer: the clock, and the rows each `UPDATE` changed (a
    /// resource's name in hex and a number: how long the released lease was held, the granted fence).
    pub(super) fn read(&self, db: &Db, n: usize, mut row: Row) -> Result<Vec<Fast>> {
        let now: i64 = db.get(&mut row, 0)?;
        let released = notes(db, db.get::<Vec<u8>>(&mut row, 1)?)?;
        let granted = notes(db, db.get::<Vec<u8>>(&mut row, 2)?)?;
        let mut out: Vec<Fast> = (0..n).map(|_| Fast::Elsewhere).collect();
        for &i in &self.behind {
            out[i] = Fast::Contended;
        }
        for &(i, resource, _, _) in &self.releases {
            if let Some(&held) = released.get(resource.as_bytes()) {
                out[i] = Fast::Done(Box::new(Reply {
                    status: "released".into(),
                    resource: Some(resource.into()),
                    now_us: Some(now),
                    held_us: Some(held),
                    ..Reply::default()
                }));
            }
        }
        for &(i, req) in &self.acquires {
            if let Some(&fence) = granted.get(req.resource.as_bytes()) {
                out[i] = Fast::Done(Box::new(Reply {
                    status: "granted".into(),
                    resource: Some(req.resource.clone()),
                    fence: Some(fence),
                    now_us: Some(now),
                    expires_us: Some(now + millis(req.ttl) * 1000),
                    ..Reply::default()
                }));
            }
        }
        if released.len() + granted.len() != out.iter().filter(|o| matches!(o, Fast::Done(_))).count() {
            return Err(db.unexpected("batch", "changed a row no operation of the batch named"));
        }
        Ok(out)
    }
}

/// An `UPDATE`'s notes: pairs of a resource's name in hex and a number, each followed by a space.
fn notes(db: &Db, text: Vec<u8>) -> Result<HashMap<Vec<u8>, i64>> {
    let bad = || db.unexpected("batch", "a note it could not read");
    let text = String::from_utf8(text).map_err(|_| bad())?;
    let mut words = text.split_ascii_whitespace();
    let mut out = HashMap::new();
    while let Some(name) = words.next() {
        let value = words.next().and_then(|v| v.parse().ok()).ok_or_else(bad)?;
        out.insert(unhex(name).ok_or_else(bad)?, value);
    }
    Ok(out)
}

/// The bytes of a hex string, as MySQL's `HEX()` writes them.
fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn any_bytes_become_a_hex_literal() {
        assert_eq!(super::hex("a'\u{0}é"), "X'612700c3a9'");
        assert_eq!(super::hex(""), "X''");
    }

    #[test]
    fn hex_from_the_database_reads_back() {
        assert_eq!(super::unhex("612700C3A9"), Some("a'\u{0}é".as_bytes().to_vec()));
        assert_eq!(super::unhex(""), Some(vec![]));
        assert_eq!(super::unhex("6"), None);
        assert_eq!(super::unhex("6G"), None);
        assert_eq!(super::unhex("é1"), None);
    }
}
