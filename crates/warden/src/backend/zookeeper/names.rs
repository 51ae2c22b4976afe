//! Where a lock lives in ZooKeeper.
//!
//! Every holder and waiter of a resource is one ephemeral sequential node under `/l/{resource hash}` (a
//! container node, which ZooKeeper deletes once it is empty): `x{tag}-{sequence}` for exclusive and write
//! requests, `s{tag}-{sequence}` for shared and read ones, as Curator's read/write lock names its nodes, and
//! `m{permits}_{tag}-{sequence}` for a semaphore's (so the children's names say what the resource is in use as). The
//! sequence ZooKeeper appends orders the queue; the tag is the lease handle's 64 bits, so a lock id finds its
//! node and nobody learns the lock id from the name. The lock id carries the resource hash, so release and
//! renewal go straight to the resource's directory.

use crate::backend::queue_record::{random_part, resource_hash};
use crate::types::LockKind;

/// Characters of each part of a lock id (fixed-width base64url): 128 random bits, then the resource hash.
const RANDOM: usize = 22;
const HASH: usize = 20;

/// A fresh lock id for `resource`.
pub(crate) fn new_lock_id(resource: &str) -> String {
    let mut id = random_part();
    id.push_str(&resource_hash(resource));
    id
}

/// The resource hash a lock id of this backend carries.
pub(crate) fn lock_hash(lock_id: &str) -> Option<&str> {
    let ok = lock_id.len() == RANDOM + HASH
        && lock_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    ok.then(|| &lock_id[RANDOM..])
}

/// The tag of a lock id's node: its lease handle without the `lh_`.
pub(crate) fn tag(lock_id: &str) -> String {
    crate::lease_handle(lock_id).trim_start_matches("lh_").to_string()
}

/// Every resource's directory.
pub(crate) const LOCKS: &str = "/l";
/// The shared counters.
pub(crate) const STATS: &str = "/stats";
/// Grants per resource.
pub(crate) const COUNTS: &str = "/counts";
/// Each resource's last grant, when the ensemble records grants.
pub(crate) const GRANTS: &str = "/g";

/// The directory of one resource.
pub(crate) fn dir(hash: &str) -> String {
    format!("{LOCKS}/{hash}")
}

/// The grant count of one resource.
pub(crate) fn count(hash: &str) -> String {
    format!("{COUNTS}/{hash}")
}

/// What a node's name is before ZooKeeper appends its sequence (`permits`: a semaphore's).
pub(crate) fn stem(kind: LockKind, permits: u32, lock_id: &str) -> String {
    match kind {
        LockKind::Semaphore => format!("m{permits}_{}-", tag(lock_id)),
        LockKind::IntentShared => format!("i{}-", tag(lock_id)),
        LockKind::IntentExclusive => format!("y{}-", tag(lock_id)),
        k if k.is_exclusive() => format!("x{}-", tag(lock_id)),
        _ => format!("s{}-", tag(lock_id)),
    }
}

/// One child of a resource's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub name: String,
    /// Exclusive, shared, semaphore or an intention: what the node's first letter says.
    pub kind: LockKind,
    /// A semaphore's permits (0: a lock's node).
    pub permits: u32,
    pub tag: String,
    pub seq: i64,
}

impl Entry {
    /// A child name of ours, or `None` for anything else found there.
    pub fn parse(name: &str) -> Option<Entry> {
        let (kind, permits, rest) = match name.as_bytes().first()? {
            b'x' => (LockKind::Exclusive, 0, &name[1..]),
            b's' => (LockKind::Shared, 0, &name[1..]),
            b'i' => (LockKind::IntentShared, 0, &name[1..]),
            b'y' => (LockKind::IntentExclusive, 0, &name[1..]),
            b'm' => {
                let (n, rest) = name[1..].split_once('_')?;
                (LockKind::Semaphore, n.parse().ok().filter(|n| *n > 0)?, rest)
            }
            _ => return None,
        };
        let (tag, seq) = rest.split_once('-')?;
        Some(Entry {
            name: name.to_string(),
            kind,
            permits,
            tag: tag.to_string(),
            seq: seq.parse().ok()?,
        })
    }

    /// A directory's children of ours, in queue order.
    pub fn queue(children: &[String]) -> Vec<Entry> {
        let mut v: Vec<Entry> = children.iter().filter_map(|c| Entry::parse(c)).collect();
        v.sort_by_key(|e| e.seq);
        v
    }
}

/// What blocks the entry `seq` of `kind` with tag `tag` in `queue` (in queue order): the nearest entry ahead of
/// it that its kind is not compatible with (for an exclusive request, the nearest; for a shared one, the nearest
/// exclusive or intent-exclusive one). Entries with the same tag are this request's own (an earlier create whose
/// answer was lost) and block nothing.
pub(crate) fn blocker<'a>(queue: &'a [Entry], kind: LockKind, seq: i64, tag: &str) -> Option<&'a Entry> {
    queue
        .iter()
        .rfind(|e| e.seq < seq && e.tag != tag && !kind.compatible_with(e.kind))
}

/// What blocks a semaphore's entry `seq` (tag `tag`) of `permits`: as many entries ahead of it as permits (the
/// oldest of them is answered), or nothing.
pub(crate) fn sem_blocker<'a>(queue: &'a [Entry], permits: u32, seq: i64, tag: &str) -> Option<&'a Entry> {
    let ahead = queue.iter().filter(|e| e.seq < seq && e.tag != tag);
    let first = ahead.clone().next();
    (ahead.count() >= permits as usize).then_some(first).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_ids_and_queues() {
        let id = new_lock_id("orders/{7}");
        assert_eq!(id.len(), 42);
        crate::validate::lock_id(&id).expect("a valid lock id");
        assert_eq!(lock_hash(&id), Some(resource_hash("orders/{7}").as_str()));
        assert!(lock_hash(&crate::token::lock_id()).is_none());
        let s = stem(LockKind::Write, 0, &id);
        assert!(s.starts_with('x') && s.ends_with('-') && s.len() == 18);
        let m = Entry::parse(&format!("{}0000000009", stem(LockKind::Semaphore, 3, &id))).expect("a semaphore's");
        assert_eq!((m.permits, m.kind, m.seq), (3, LockKind::Semaphore, 9));
        let sems: Vec<Entry> = ["m2_aa-0000000001", "m2_bb-0000000002", "m2_cc-0000000003"]
            .map(|n| Entry::parse(n).expect("name"))
            .to_vec();
        assert_eq!(sem_blocker(&sems, 2, 2, "bb"), None, "one ahead of two permits");
        assert_eq!(sem_blocker(&sems, 2, 3, "cc").map(|e| e.seq), Some(1));
        let names: Vec<String> = [
            "s00aa-0000000003",
            "xbb-0000000001",
            "sffff-0000000002",
            "junk",
            "xcc-0000000004",
        ]
        .map(String::from)
        .to_vec();
        let q = Entry::queue(&names);
        assert_eq!(q.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3, 4]);
        assert_eq!(blocker(&q, LockKind::Shared, 3, "00aa").map(|e| e.seq), Some(1));
        assert_eq!(blocker(&q, LockKind::Exclusive, 3, "00aa").map(|e| e.seq), Some(2));
        assert_eq!(
            blocker(&q, LockKind::Exclusive, 2, "bb"),
            None,
            "its own earlier node blocks nothing"
        );
        assert_eq!(blocker(&q, LockKind::Exclusive, 1, "bb"), None);
        // Intentions: intent-shared passes shared and intent-exclusive nodes; shared waits for intent-exclusive.
        let q = Entry::queue(&["ydd-0000000001", "see-0000000002", "iff-0000000003"].map(String::from));
        assert_eq!(q[0].kind, LockKind::IntentExclusive);
        assert_eq!(blocker(&q, LockKind::IntentShared, 4, "gg"), None);
        assert_eq!(blocker(&q, LockKind::Shared, 2, "ee").map(|e| e.seq), Some(1));
        assert_eq!(blocker(&q, LockKind::IntentExclusive, 4, "gg").map(|e| e.seq), Some(2));
    }
}
