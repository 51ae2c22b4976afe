//! Cluster-wide statistics without a global write per grant: each process counts grants, releases and
//! expiries in memory and adds them to one shared hash at most once a second (and before every read of the
//! statistics), so every process reads the same totals. A process that dies loses the counts of its last
//! second at most.

use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// The lock kinds, in the order of the scripts' kind bits.
pub(crate) const KINDS: [&str; 4] = ["exclusive", "shared", "read", "write"];
/// Most distinct resources counted per flush for the top-resources view; past it, grants still count in the
/// totals but not per resource.
const MAX_TOP_PER_FLUSH: usize = 10_000;

#[derive(Default)]
struct Pending {
    grants: [u64; 4],
    released: [u64; 4],
    expired: [u64; 4],
    hold_ms: u64,
    top: HashMap<String, u64>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.grants
            .iter()
            .chain(&self.released)
            .chain(&self.expired)
            .all(|n| *n == 0)
            && self.hold_ms == 0
    }

    fn merge(&mut self, other: Pending) {
        for k in 0..4 {
            self.grants[k] += other.grants[k];
            self.released[k] += other.released[k];
            self.expired[k] += other.expired[k];
        }
        self.hold_ms += other.hold_ms;
        for (r, n) in other.top {
            if self.top.len() < MAX_TOP_PER_FLUSH || self.top.contains_key(&r) {
                *self.top.entry(r).or_default() += n;
            }
        }
    }
}

fn kind_index(kind: &[u8]) -> Option<usize> {
    // A semaphore's permits (`semaphore:N`) and intentions count as shared holds.
    if kind.starts_with(b"semaphore:") || kind.starts_with(b"intent-") {
        return Some(1);
    }
    KINDS.iter().position(|k| k.as_bytes() == kind)
}

/// This process's counts not yet added to the shared hash.
#[derive(Default)]
pub(crate) struct Counters {
    pending: Mutex<Pending>,
}

impl Counters {
    fn with(&self, f: impl FnOnce(&mut Pending)) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut p)
    }

    /// A grant of `kind` on `resource`.
    pub(crate) fn granted(&self, kind: &[u8], resource: &str) {
        let Some(k) = kind_index(kind) else { return };
        self.with(|p| {
            p.grants[k] += 1;
            if let Some(n) = p.top.get_mut(resource) {
                *n += 1;
            } else if p.top.len() < MAX_TOP_PER_FLUSH {
                p.top.insert(resource.to_string(), 1);
            }
        })
    }

    /// A lease released after `held_ms`.
    pub(crate) fn released(&self, kind: &[u8], held_ms: i64) {
        let Some(k) = kind_index(kind) else { return };
        self.with(|p| {
            p.released[k] += 1;
            p.hold_ms += held_ms.max(0) as u64;
        })
    }

    /// A lease that ended by expiry after `held_ms`.
    pub(crate) fn expired(&self, kind: &[u8], held_ms: i64) {
        let Some(k) = kind_index(kind) else { return };
        self.with(|p| {
            p.expired[k] += 1;
            p.hold_ms += held_ms.max(0) as u64;
        })
    }

    /// Counts what one batched operation did, from its arguments (see `scripts/batch.lua`) and its reply.
    pub(crate) fn tally(&self, args: &[String], reply: &redis::Value) {
        use super::reply::bulk;
        use redis::Value;
        let int = |v: Option<&Value>| match v {
            Some(Value::Int(n)) => *n,
            _ => 0,
        };
        match (args.first().map(String::as_str), reply) {
            (Some("A"), Value::Int(_)) => self.granted(args[2].as_bytes(), &args[9]),
            (Some("A"), Value::Array(items)) if int(items.first()) == 1 && int(items.get(5)) == -1 => {
                self.granted(args[2].as_bytes(), &args[9])
            }
            (Some("R"), Value::Int(n)) => self.released(KINDS[(*n & 3) as usize].as_bytes(), n >> 2),
            (Some("R"), Value::Array(items)) => {
                let (kind, held) = (bulk(items.get(2)), int(items.get(1)));
                let resource = String::from_utf8_lossy(bulk(items.get(3)));
                let handed_from = if bulk(items.first()) == b"ok" {
                    self.released(kind, held);
                    4
                } else {
                    if int(items.get(4)) == 1 {
                        self.expired(kind, held);
                    }
                    5
                };
                for k in items.get(handed_from..).unwrap_or_default() {
                    self.granted(bulk(Some(k)), &resource);
                }
            }
            _ => {}
        }
    }

    /// Adds the pending counts to the shared hash `stats` (and grants per resource to `top`) in one pipeline.
    /// On failure they stay pending for the next flush: nothing is lost while the process lives.
    pub(crate) async fn flush(&self, conn: &ConnectionManager, stats: &str, top: &str, timeout: Duration) -> bool {
        let taken = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.is_empty() {
                return true;
            }
            std::mem::take(&mut *p)
        };
        let mut pipe = redis::pipe();
        for (k, kind) in KINDS.iter().enumerate() {
            for (name, n) in [
                ("grants", taken.grants[k]),
                ("released", taken.released[k]),
                ("expired", taken.expired[k]),
            ] {
                if n > 0 {
                    pipe.cmd("HINCRBY")
                        .arg(stats)
                        .arg(format!("{name}:{kind}"))
                        .arg(n)
                        .ignore();
                }
            }
        }
        if taken.hold_ms > 0 {
            pipe.cmd("HINCRBY")
                .arg(stats)
                .arg("hold_ms")
                .arg(taken.hold_ms)
                .ignore();
        }
        for (r, n) in &taken.top {
            pipe.cmd("HINCRBY").arg(top).arg(r).arg(*n).ignore();
        }
        let mut c = conn.clone();
        let sent = tokio::time::timeout(timeout, pipe.query_async::<()>(&mut c)).await;
        if matches!(sent, Ok(Ok(()))) {
            return true;
        }
        self.with(|p| p.merge(taken));
        false
    }
}

/// Totals read back from the shared hash: (grants, released, expired) per kind, and hold_ms.
pub(crate) fn totals(hash: &HashMap<String, u64>) -> ([u64; 4], [u64; 4], [u64; 4], u64) {
    let get = |name: &str, kind: &str| hash.get(&format!("{name}:{kind}")).copied().unwrap_or(0);
    let mut out = ([0; 4], [0; 4], [0; 4], hash.get("hold_ms").copied().unwrap_or(0));
    for (k, kind) in KINDS.iter().enumerate() {
        out.0[k] = get("grants", kind);
        out.1[k] = get("released", kind);
        out.2[k] = get("expired", kind);
    }
    out
}
