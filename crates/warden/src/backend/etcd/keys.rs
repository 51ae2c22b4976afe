//! Where a lock lives in etcd, and what its key holds.
//!
//! Every holder and waiter of a resource is one key `{prefix}l/{resource hash}/{x|s|m}/{lease handle}`: `x/` for
//! exclusive and write requests, `s/` for shared and read ones, `m/` for a semaphore's, so "is an exclusive
//! request ahead of me" is one range read of `x/`, and "is the resource a semaphore" one of `m/`. Order is the keys' create revision (etcd's store-wide write counter): the holders are
//! the first keys in that order, and a waiter waits for the deletion of the key ahead of it. The lock id
//! ends with the resource hash, so release and renewal go straight to the key.

use crate::backend::queue_record::{b64_num, random_part};
pub(crate) use crate::backend::queue_record::{now_ms, resource_hash, Record};
use crate::types::LockKind;

/// Characters of each field of a lock id, which is fixed-width base64url (`[A-Za-z0-9_-]`): 128 random bits,
/// the resource hash (120 bits), the session lease id and the slot.
const RANDOM: usize = 22;
const HASH: usize = 20;
const SESSION: usize = 11;
const SLOT: usize = 3;
/// Most slots one process uses at once for one resource (18 bits).
pub(crate) const SLOTS: u32 = 1 << 18;

/// A fresh lock id for `resource`, naming the key it will have: `slot` of this process's `session`. Keys are
/// named by session and slot, not by lock id, so a process reuses a few names per resource: etcd keeps every
/// name ever used in its index until compaction, and a queue's reads walk the names under its prefix.
pub(crate) fn new_lock_id(resource: &str, session: i64, slot: u32) -> String {
    let mut id = random_part();
    id.push_str(&resource_hash(resource));
    id.push_str(&b64_num(session as u64, SESSION));
    id.push_str(&b64_num(u64::from(slot), SLOT));
    id
}

fn parts(lock_id: &str) -> Option<(&str, &str)> {
    let ok = lock_id.len() == RANDOM + HASH + SESSION + SLOT
        && lock_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| (&lock_id[RANDOM..RANDOM + HASH], &lock_id[RANDOM + HASH..]))
}

/// The slot a lock id of this backend names.
pub(crate) fn slot_of(lock_id: &str) -> Option<u32> {
    let (_, m) = parts(lock_id)?;
    m[SESSION..].bytes().try_fold(0u32, |n, b| {
        let v = match b {
            b'A'..=b'Z' => b - b'A',
            b'a'..=b'z' => b - b'a' + 26,
            b'0'..=b'9' => b - b'0' + 52,
            b'-' => 62,
            _ => 63,
        };
        Some(n << 6 | u32::from(v))
    })
}

/// The resource hash a lock id of this backend carries.
pub(crate) fn lock_hash(lock_id: &str) -> Option<&str> {
    parts(lock_id).map(|(h, _)| h)
}

/// The name of a lock id's key under its resource: its session and slot (for a lock id of another shape,
/// its lease handle).
fn member_name(lock_id: &str) -> String {
    match parts(lock_id) {
        Some((_, m)) => m.to_string(),
        None => crate::lease_handle(lock_id),
    }
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
    /// The semaphore keys of one resource.
    pub fn semaphore(&self, hash: &str) -> String {
        format!("{}l/{hash}/m/", self.prefix)
    }
    /// The key of one lease. Its side names its kind: `i` intent-shared, `m` semaphore, `s` shared, `x`
    /// exclusive, `y` intent-exclusive, in that order, so that what blocks each kind is one range of keys (see
    /// [`Keys::blocking`]).
    pub fn member(&self, hash: &str, kind: LockKind, lock_id: &str) -> String {
        let side = match kind {
            LockKind::Semaphore => "m",
            LockKind::IntentShared => "i",
            LockKind::IntentExclusive => "y",
            k if k.is_exclusive() => "x",
            _ => "s",
        };
        format!("{}l/{hash}/{side}/{}", self.prefix, member_name(lock_id))
    }
    /// The range `[start, end)` of the keys of one resource that block a request of `kind` when ahead of it:
    /// every key (exclusive, semaphore), exclusive and intent-exclusive ones (shared), shared and exclusive ones
    /// (intent-exclusive), exclusive ones (intent-shared).
    pub fn blocking(&self, hash: &str, kind: LockKind) -> (String, String) {
        let at = |side: &str| format!("{}l/{hash}/{side}", self.prefix);
        match kind {
            LockKind::IntentShared => (at("x/"), at("x0")),
            LockKind::IntentExclusive => (at("s/"), at("y")),
            LockKind::Shared | LockKind::Read => (at("x/"), at("z")),
            _ => (self.resource(hash), format!("{}l/{hash}0", self.prefix)),
        }
    }
    /// Every key a lock id may have (its kind is not in the id).
    pub fn every(&self, lock_id: &str) -> Option<[String; 5]> {
        let hash = lock_hash(lock_id)?;
        let kinds = [
            LockKind::Exclusive,
            LockKind::Shared,
            LockKind::Semaphore,
            LockKind::IntentShared,
            LockKind::IntentExclusive,
        ];
        Some(kinds.map(|k| self.member(hash, k, lock_id)))
    }
    /// A resource's grant record (see [`super::records`]).
    pub fn grant(&self, hash: &str) -> String {
        format!("{}g/{hash}", self.prefix)
    }
    /// Whether the store records grants for conditional acquires.
    pub fn conditions_setting(&self) -> String {
        format!("{}settings/conditions", self.prefix)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_name_their_keys() {
        let id = new_lock_id("orders/{7}", 0x7123_4567_89ab_cdef, 5);
        assert_eq!(id.len(), 56);
        assert_eq!(&id[42..], format!("{}{}", b64_num(0x7123_4567_89ab_cdef, 11), "AAF"));
        assert_eq!(slot_of(&id), Some(5));
        crate::validate::lock_id(&id).expect("a valid lock id");
        let keys = Keys { prefix: "w/".into() };
        let hash = lock_hash(&id).expect("hash");
        assert_eq!(hash, resource_hash("orders/{7}"));
        let k = keys.member(hash, LockKind::Write, &id);
        assert!(k.starts_with(&format!("w/l/{hash}/x/")));
        assert_eq!(keys.hash_of(&k), Some(hash));
        assert!(keys.every(&id).expect("keys").contains(&k));
        assert!(lock_hash(&crate::token::lock_id()).is_none());
        // A key of kind b lies in the range that blocks kind a exactly when a is not compatible with b.
        use LockKind::*;
        let kinds = [Exclusive, Shared, Read, Write, IntentShared, IntentExclusive];
        for a in kinds {
            let (start, end) = keys.blocking(hash, a);
            for b in kinds {
                let key = keys.member(hash, b, &id);
                let inside = start <= key && key < end;
                assert_eq!(
                    inside,
                    !a.compatible_with(b),
                    "{a:?} blocked by {b:?}: {key} in [{start}, {end})"
                );
            }
            let (start, end) = keys.blocking(hash, Semaphore);
            assert!(start <= keys.member(hash, a, &id) && keys.member(hash, a, &id) < end);
        }
        assert_ne!(
            new_lock_id("a", 1, 1),
            new_lock_id("a", 1, 1),
            "the random part differs"
        );
    }
}
