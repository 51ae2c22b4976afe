//! Where a lock lives in etcd, and what its key holds.
//!
//! Every holder and waiter of a resource is one key `{prefix}l/{resource hash}/{x|s}/{lease handle}`: `x/` for
//! exclusive and write requests, `s/` for shared and read ones, so "is an exclusive request ahead of me" is one
//! range read of `x/`. Order is the keys' create revision (etcd's store-wide write counter): the holders are
//! the first keys in that order, and a waiter waits for the deletion of the key ahead of it. The lock id
//! ends with the resource hash, so release and renewal go straight to the key.

use crate::types::{AcquireRequest, LockKind};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Hex digits of the resource hash (120 bits of SHA-256).
const HASH_HEX: usize = 30;

/// The hash that names a resource's keys.
pub(crate) fn resource_hash(resource: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(resource.as_bytes());
    d.iter().take(HASH_HEX / 2).map(|b| format!("{b:02x}")).collect()
}

/// The key layout under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    pub prefix: String,
}

impl Keys {
    /// Every lock key of every resource.
    pub fn locks(&self) -> String {
        format!("{}l/", self.prefix)
    }
    /// Every key of one resource.
    pub fn resource(&self, hash: &str) -> String {
        format!("{}l/{hash}/", self.prefix)
    }
    /// The exclusive keys of one resource.
    pub fn exclusive(&self, hash: &str) -> String {
        format!("{}l/{hash}/x/", self.prefix)
    }
    /// The key of one lease.
    pub fn member(&self, hash: &str, kind: LockKind, lock_id: &str) -> String {
        let side = if kind.is_exclusive() { "x" } else { "s" };
        format!("{}l/{hash}/{side}/{}", self.prefix, crate::lease_handle(lock_id))
    }
    /// Both keys a lock id may have (its kind is not in the id).
    pub fn both(&self, lock_id: &str) -> Option<[String; 2]> {
        let hash = lock_hash(lock_id)?;
        Some([LockKind::Exclusive, LockKind::Shared].map(|k| self.member(hash, k, lock_id)))
    }
    /// The cluster-wide counters.
    pub fn stats(&self) -> String {
        format!("{}stats", self.prefix)
    }
    /// Grants per resource.
    pub fn counts(&self) -> String {
        format!("{}counts/", self.prefix)
    }
    /// The resource hash of a lock key, if it is one.
    pub fn hash_of<'a>(&self, key: &'a str) -> Option<&'a str> {
        key.strip_prefix(&self.prefix)?.strip_prefix("l/")?.split('/').next()
    }
}

/// A fresh lock id for `resource`: 128 random bits, `-`, the resource hash.
pub(crate) fn new_lock_id(resource: &str) -> String {
    format!("{}-{}", crate::token::lock_id(), resource_hash(resource))
}

/// The resource hash a lock id of this backend ends with.
pub(crate) fn lock_hash(lock_id: &str) -> Option<&str> {
    let (_, h) = lock_id.rsplit_once('-')?;
    (h.len() == HASH_HEX && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

/// What a lock key holds (JSON). Times are the writer's wall clock, for views only: expiry is decided by
/// elapsed time as each process measures it, never by comparing clocks.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Resource name.
    pub r: String,
    /// Lock id (etcd's access control guards it, as the lock keys of the other stores).
    pub i: String,
    /// Kind (`LockKind::as_str`).
    pub k: String,
    /// Client id.
    pub c: String,
    /// Requested ttl, ms.
    pub t: u64,
    /// How long this write keeps the lease (ms): the ttl, or less under a hold cap. Whoever sees the key at
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
    /// Waiter id while it waits (not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub w: Option<String>,
}

impl Record {
    pub fn new(req: &AcquireRequest, waiter: Option<&str>) -> Self {
        Record {
            r: req.resource.clone(),
            i: req.lock_id.clone(),
            k: req.kind.as_str().into(),
            c: req.client_id.clone(),
            t: ms(req.ttl),
            g: ms(req.ttl),
            a: now_ms(),
            n: 0,
            mr: req.max_renewals,
            mh: req.max_hold.map(ms),
            w: waiter.map(str::to_string),
        }
    }
    pub fn kind(&self) -> LockKind {
        LockKind::parse(&self.k).unwrap_or(LockKind::Exclusive)
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
    fn lock_ids_name_their_keys() {
        let id = new_lock_id("orders/{7}");
        assert!(id.len() <= 64);
        crate::validate::lock_id(&id).expect("a valid lock id");
        let keys = Keys { prefix: "w/".into() };
        let hash = lock_hash(&id).expect("hash");
        assert_eq!(hash, resource_hash("orders/{7}"));
        let k = keys.member(hash, LockKind::Write, &id);
        assert!(k.starts_with(&keys.exclusive(hash)));
        assert_eq!(keys.hash_of(&k), Some(hash));
        assert!(keys.both(&id).expect("keys").contains(&k));
        assert!(lock_hash(&crate::token::lock_id()).is_none());
    }
}
