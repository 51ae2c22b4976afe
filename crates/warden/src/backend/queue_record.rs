//! What the consensus-store backends (etcd, ZooKeeper) keep per holder or waiter, and what they derive from
//! it: one record per queue entry, the holders of a queue, the shared counters, the operator's view of a lease.
//! Both stores keep a queue as entries ordered by the store's own write counter; only how they read and write
//! those entries differs.

use crate::error::Error;
use crate::types::{AcquireRequest, LeaseInfo, LockKind};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The hash that names a resource's entries (120 bits of SHA-256, base64url).
pub(crate) fn resource_hash(resource: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(resource.as_bytes());
    b64(&d[..15])
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url without padding, most significant bits first.
pub(crate) fn b64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 4 / 3 + 2);
    for chunk in bytes.chunks(3) {
        let mut n = 0u32;
        for (i, b) in chunk.iter().enumerate() {
            n |= u32::from(*b) << (16 - 8 * i);
        }
        for i in 0..=chunk.len() {
            out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// The low `6 × width` bits of `n` as base64url, `width` characters.
#[cfg(feature = "etcd")]
pub(crate) fn b64_num(n: u64, width: usize) -> String {
    (0..width)
        .rev()
        .map(|i| B64[((n >> (6 * i)) & 63) as usize] as char)
        .collect()
}

/// 128 random bits as 22 base64url characters: the secret part of a lock id.
pub(crate) fn random_part() -> String {
    let mut random = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut random);
    b64(&random)
}

/// What one holder or waiter entry holds (JSON). Times are the writer's wall clock, for views only: expiry is
/// decided by elapsed time as each process measures it, never by comparing clocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Resource name.
    pub r: String,
    /// Lock id (the store's access control guards it, as the lock keys of the other stores).
    pub i: String,
    /// Kind (`LockKind::as_str`; a semaphore's with its permits, `semaphore:3`).
    pub k: String,
    /// Client id.
    pub c: String,
    /// Requested ttl, ms.
    pub t: u64,
    /// How long this write keeps the lease (ms): the ttl, or less under a hold cap. Whoever sees the entry at
    /// the head of its queue unchanged for this long may delete it.
    pub g: u64,
    /// Granted (or, while waiting, last attempted) at, ms since the epoch.
    pub a: u64,
    /// Renewals so far.
    pub n: u32,
    /// Renewal cap (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mr: Option<u32>,
    /// Hold cap, ms (absent: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mh: Option<u64>,
    /// Handed over by a release and not yet claimed: its first renewal is the claim, not counted as one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub h: bool,
    /// Waiter id while it waits (not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<String>,
}

impl Record {
    pub fn new(req: &AcquireRequest, waiter: Option<&str>) -> Self {
        Record {
            r: req.resource.clone(),
            i: req.lock_id.clone(),
            k: crate::types::stored_kind(req),
            c: req.client_id.clone(),
            t: ms(req.ttl),
            g: ms(req.ttl),
            a: now_ms(),
            n: 0,
            mr: req.max_renewals,
            mh: req.max_hold.map(ms),
            h: false,
            w: waiter.map(str::to_string),
        }
    }
    pub fn kind(&self) -> LockKind {
        crate::types::parse_kind(&self.k).unwrap_or(LockKind::Exclusive)
    }
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        serde_json::from_slice(bytes).ok()
    }
    pub fn acquired(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.a)
    }
    pub fn expires(&self) -> SystemTime {
        self.acquired() + Duration::from_millis(self.g)
    }

    /// The record a renewal by `ttl` writes, and the lease it grants; `None` when a renewal or hold cap is
    /// reached.
    pub fn renewed(&self, ttl: Option<Duration>) -> Option<(Record, Duration)> {
        if !self.h && self.mr.is_some_and(|m| self.n >= m) {
            return None;
        }
        let ttl = ttl.unwrap_or(Duration::from_millis(self.t));
        let mut granted = ttl;
        if let Some(mh) = self.mh {
            let held = now_ms().saturating_sub(self.a);
            if held >= mh {
                return None;
            }
            granted = granted.min(Duration::from_millis(mh - held));
        }
        let mut next = self.clone();
        if !std::mem::take(&mut next.h) {
            next.n += 1;
        }
        next.t = ms(ttl);
        next.g = ms(granted);
        Some((next, granted))
    }

    /// The operator's view of this lease, with its fencing token.
    pub fn lease_info(&self, fence: u64) -> LeaseInfo {
        LeaseInfo {
            lock_id: self.i.clone(),
            lease_handle: crate::lease_handle(&self.i),
            resource: self.r.clone(),
            kind: self.kind(),
            client_id: self.c.clone(),
            acquired_at: self.acquired(),
            expires_at: self.expires(),
            ttl: Duration::from_millis(self.t),
            fencing_token: fence,
            renewal_count: self.n,
            expired: false,
        }
    }

    /// `Err(NotOwner)` if a client id is given and is not this lease's.
    pub fn check_owner(&self, client: Option<&str>) -> crate::error::Result<()> {
        match client {
            Some(c) if c != self.c => Err(Error::NotOwner {
                lock_id: self.i.clone(),
                client_id: c.to_string(),
            }),
            _ => Ok(()),
        }
    }

    /// The error for this lease found gone by the process that held it.
    pub fn lost(&self) -> Error {
        Error::LeaseLost {
            lock_id: self.i.clone(),
            resource: self.r.clone(),
        }
    }
}

/// A queue's entries in queue order, split into holders (with their fence) and waiters, as the backends that
/// keep such queues grant: an entry holds when nothing ahead of it is of a kind it is incompatible with (a
/// semaphore's, when fewer entries than permits are ahead of it).
pub(crate) fn split(entries: impl IntoIterator<Item = (Record, u64)>) -> (Vec<(Record, u64)>, Vec<Record>) {
    let mut holders = Vec::new();
    let mut queue = Vec::new();
    let mut ahead: Vec<LockKind> = Vec::new();
    for (rec, fence) in entries {
        let kind = rec.kind();
        let holds = if kind == LockKind::Semaphore {
            ahead.len() < crate::types::stored_permits(&rec.k) as usize
        } else {
            ahead.iter().all(|k| kind.compatible_with(*k))
        };
        ahead.push(kind);
        if holds {
            holders.push((rec, fence));
        } else {
            queue.push(rec);
        }
    }
    (holders, queue)
}

/// The shared counters (JSON).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct StatsRecord {
    pub grants: u64,
    pub expired: u64,
    pub released: u64,
    pub held_ms: u64,
}

/// Grants of one resource (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CountRecord {
    pub r: String,
    pub n: u64,
}

/// Counts of one process not yet added to the shared statistics.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counts {
    pub grants: u64,
    pub expired: u64,
    pub released: u64,
    pub held_ms: u64,
    pub per_resource: HashMap<String, u64>,
}

impl Counts {
    /// Puts back counts whose flush failed.
    pub fn add(&mut self, other: Counts) {
        self.grants += other.grants;
        self.expired += other.expired;
        self.released += other.released;
        self.held_ms += other.held_ms;
        for (r, n) in other.per_resource {
            *self.per_resource.entry(r).or_default() += n;
        }
    }

    /// `shared` plus these counts, and the active leases of `holders`, as the statistics view.
    pub fn stats_with(&self, shared: &StatsRecord, holders: &[Record]) -> crate::types::Stats {
        let mut s = crate::types::Stats {
            total_locks: shared.grants + self.grants,
            expired_locks: shared.expired + self.expired,
            ..Default::default()
        };
        let released = shared.released + self.released;
        s.average_hold_time_ms = (shared.held_ms + self.held_ms).checked_div(released).unwrap_or(0);
        for rec in holders {
            s.active_locks += 1;
            match rec.kind() {
                LockKind::Exclusive => s.active_exclusive += 1,
                LockKind::Shared => s.active_shared += 1,
                _ => s.active_read_write += 1,
            }
        }
        s
    }

    /// The `top` most-granted resources: the shared counts plus these.
    pub fn top(&self, shared: impl IntoIterator<Item = CountRecord>, top: usize) -> Vec<(String, u64)> {
        let mut counts: HashMap<String, u64> = shared.into_iter().map(|c| (c.r, c.n)).collect();
        for (name, n) in &self.per_resource {
            *counts.entry(name.clone()).or_default() += n;
        }
        let mut counts: Vec<(String, u64)> = counts.into_iter().collect();
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(top);
        counts
    }
}

pub(crate) fn ms(d: Duration) -> u64 {
    d.as_millis().min(u128::from(u64::MAX)) as u64
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(ms).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_queue_split() {
        assert_eq!(b64(&[0xfb, 0xff]), "-_8");
        let req = AcquireRequest::new(
            "r",
            LockKind::Shared,
            Duration::from_secs(1),
            "c",
            "id-0123456789abcdef",
            Duration::from_secs(1),
        );
        let mut rec = Record::new(&req, None);
        let rec_base = rec.clone();
        rec.mr = Some(1);
        let (next, granted) = rec.renewed(None).expect("one renewal allowed");
        assert_eq!((next.n, granted), (1, Duration::from_secs(1)));
        assert!(next.renewed(None).is_none(), "the cap is reached");
        let mut x = rec.clone();
        x.k = "exclusive".into();
        let (holders, queue) = split([(rec.clone(), 1), (rec.clone(), 2), (x, 3), (rec, 4)]);
        assert_eq!(holders.iter().map(|h| h.1).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(queue.len(), 2);
        // Intentions: IX and IS hold together; S waits behind the IX; the IS behind that S holds too.
        let of = |k: &str| Record {
            k: k.into(),
            ..rec_base.clone()
        };
        let entries = [
            (of("intent-exclusive"), 1),
            (of("intent-shared"), 2),
            (of("shared"), 3),
            (of("intent-shared"), 4),
            (of("exclusive"), 5),
        ];
        let (holders, queue) = split(entries);
        assert_eq!(holders.iter().map(|h| h.1).collect::<Vec<_>>(), [1, 2, 4]);
        assert_eq!(
            queue.iter().map(|r| r.k.as_str()).collect::<Vec<_>>(),
            ["shared", "exclusive"]
        );
    }
}
