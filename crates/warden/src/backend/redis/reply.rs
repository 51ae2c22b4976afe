//! Reading script replies: integers, strings and lease records out of redis-rs `Value`s.

use crate::error::Error;
use crate::types::{parse_kind, LeaseInfo};
use redis::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub(crate) fn ms_to_system(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

pub(crate) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d as i64),
        _ => None,
    }
}

pub(crate) fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

/// The bytes of a bulk string, or none.
pub(crate) fn bulk(v: Option<&Value>) -> &[u8] {
    match v {
        Some(Value::BulkString(b)) => b,
        _ => b"",
    }
}

/// Whether `v` is the string `s`, without allocating.
pub(crate) fn is_str(v: &Value, s: &str) -> bool {
    match v {
        Value::BulkString(b) => b == s.as_bytes(),
        Value::SimpleString(x) => x == s,
        _ => false,
    }
}

pub(crate) fn bad(what: &str, v: &Value) -> Error {
    Error::Protocol(format!("unexpected reply to {what}: {v:?}"))
}

/// Parses a lease record written by `record()` in `scripts/lib.lua`.
pub(crate) fn parse_record(token: String, rec: &str, held: bool) -> Option<LeaseInfo> {
    // kind, client, acquired_ms, expires_ms, ttl_ms, fence, renewals, max_renewals, max_hold_ms, resource
    let f: Vec<&str> = rec.splitn(10, '\n').collect();
    if f.len() < 10 {
        return None;
    }
    Some(LeaseInfo {
        lease_handle: crate::lease_handle(&token),
        lock_id: token,
        kind: parse_kind(f[0])?,
        client_id: f[1].to_string(),
        acquired_at: ms_to_system(f[2].parse().ok()?),
        expires_at: ms_to_system(f[3].parse().ok()?),
        ttl: Duration::from_millis(f[4].parse().ok()?),
        fencing_token: f[5].parse().ok()?,
        // -1: a provisional handoff not renewed yet.
        renewal_count: f[6].parse::<i64>().ok()?.clamp(0, u32::MAX as i64) as u32,
        resource: f[9].to_string(),
        expired: !held,
    })
}

/// Parses triples (token, record, held) from an inspect reply.
pub(crate) fn parse_leases(items: &[Value]) -> Result<Vec<LeaseInfo>, Error> {
    items
        .chunks(3)
        .filter(|c| c.len() == 3)
        .map(|c| {
            let tok = as_string(&c[0]).ok_or_else(|| bad("inspect", &c[0]))?;
            let rec = as_string(&c[1]).ok_or_else(|| bad("inspect", &c[1]))?;
            let held = as_i64(&c[2]) == Some(1);
            parse_record(tok, &rec, held).ok_or_else(|| Error::Protocol("malformed lease record".into()))
        })
        .collect()
}
