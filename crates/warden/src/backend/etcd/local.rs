//! What this process knows about its own keys: the leases it holds (so release and renewal are one
//! conditional write), its queued waiters (their waiter leases, and the key each one waits behind), heads of
//! queues it watches expire, deletions it has seen, and counters not yet added to the shared statistics.

use super::keys::Record;
pub(crate) use crate::backend::queue_record::Counts;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;
use tokio::time::Instant;

/// A lease this process granted or renewed last.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub key: String,
    pub create_rev: i64,
    pub mod_rev: i64,
    pub record: Record,
    /// When this process deletes it unless renewed (its ttl after the write that granted or renewed it).
    pub deadline: Instant,
    /// A release was sent and its outcome is unknown (no answer within the timeout): if the key is gone when
    /// the caller tries again, that release is taken to have done it.
    pub release_sent: bool,
}

/// A waiter of this process with its key in a queue.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub key: String,
    pub lock_id: String,
    pub create_rev: i64,
    /// The key it waits behind: its deletion wakes the waiter.
    pub behind: Option<String>,
    /// Dropped from the queue unless attempted again by then (its waiter lease).
    pub deadline: Instant,
    pub session_epoch: u64,
    /// When the last attempt that found something ahead of it was sent.
    pub last_blocked: Instant,
    /// Attempts of it under way: the sweep leaves it alone meanwhile (see
    /// [`Table::attempting`](crate::backend::table::Table::attempting)).
    pub attempts: u32,
}

#[derive(Debug, Default)]
pub(crate) struct Local {
    pub held: HashMap<String, Held>,
    pub waiting: HashMap<String, Waiting>,
    /// Waiter ids by the key they wait behind.
    pub behind: HashMap<String, Vec<String>>,
    /// Heads of queues seen by this process: (key, mod revision) → first seen.
    pub heads: HashMap<(String, i64), Instant>,
    /// Recently deleted keys with the revision of the deletion, oldest first.
    pub deleted: VecDeque<(String, i64)>,
    pub counts: Counts,
    /// Key names in use by this process, per resource hash: slot → the lock id that has it.
    pub slots: HashMap<String, std::collections::BTreeMap<u32, String>>,
    /// Keys of exclusive leases this process is releasing right now.
    pub releasing: HashSet<String>,
    /// Waiters known to be at the head of their queue: the exclusive lease just ahead of them was released by
    /// this process, and nothing can come ahead of a holder. Their next attempt needs no read.
    pub free: HashSet<String>,
    /// Waiters' keys (key, create revision) the sweep is deleting or may have deleted (no answer): never granted.
    /// A grant does not change a key's create revision, which is all the sweep's delete compares; so a grant of
    /// such a key could be deleted behind its holder.
    pub swept: HashMap<(String, i64), Instant>,
}

/// Deletions remembered to close the race between a waiter's read and its registration behind a key.
const DELETIONS_KEPT: usize = 4096;
/// Queue heads remembered at most (the oldest are dropped).
const HEADS_KEPT: usize = 65_536;
/// Swept keys remembered at most; past it, those older than [`SWEPT_FOR`] are forgotten (a delete with no answer
/// is applied within an election or never).
const SWEPT_KEPT: usize = 4096;
const SWEPT_FOR: Duration = Duration::from_secs(60);

impl Local {
    /// Registers waiter `id` behind `key` (read at `rev`). True if that key was deleted after `rev` already. A
    /// key ending in `/` is a resource's prefix (a semaphore's waiter): any deletion under it wakes the waiter.
    pub fn wait_behind(&mut self, id: &str, key: Option<String>, rev: i64) -> bool {
        let Some(w) = self.waiting.get_mut(id) else {
            return false;
        };
        self.free.remove(id);
        let old = std::mem::replace(&mut w.behind, key.clone());
        if let Some(old) = old {
            self.unlink(&old, id);
        }
        let Some(key) = key else {
            return false;
        };
        self.behind.entry(key.clone()).or_default().push(id.to_string());
        let prefix = key.ends_with('/');
        self.deleted
            .iter()
            .any(|(k, r)| (*k == key || (prefix && k.starts_with(&key))) && *r > rev)
    }

    fn unlink(&mut self, key: &str, id: &str) {
        if let Some(v) = self.behind.get_mut(key) {
            v.retain(|x| x != id);
            if v.is_empty() {
                self.behind.remove(key);
            }
        }
    }

    /// Forgets a waiter.
    pub fn drop_waiter(&mut self, id: &str) -> Option<Waiting> {
        self.free.remove(id);
        let w = self.waiting.remove(id)?;
        if let Some(k) = &w.behind {
            self.unlink(k, id);
        }
        Some(w)
    }

    /// A key was deleted at `rev`: the waiters behind it, to wake. If this process was releasing it as an
    /// exclusive lease of its own, they are at the head now (a semaphore's waiters, behind the resource, are not).
    pub fn deleted(&mut self, key: &str, rev: i64) -> Vec<String> {
        self.deleted.push_back((key.to_string(), rev));
        if self.deleted.len() > DELETIONS_KEPT {
            self.deleted.pop_front();
        }
        self.heads.retain(|(k, _), _| k != key);
        let mut ids = self.behind.remove(key).unwrap_or_default();
        for id in &ids {
            if let Some(w) = self.waiting.get_mut(id) {
                w.behind = None;
            }
        }
        if self.releasing.contains(key) {
            self.free.extend(ids.iter().cloned());
        }
        // The waiters of the key's resource as a whole (`{prefix}l/{hash}/`): a semaphore's.
        if let Some(resource) = key.rsplitn(3, '/').nth(2) {
            ids.extend(self.behind.remove(&format!("{resource}/")).unwrap_or_default());
        }
        ids
    }

    /// When this process first saw `key` at `mod_rev` at the head of its queue.
    pub fn head_seen(&mut self, key: &str, mod_rev: i64, now: Instant) -> Instant {
        if self.heads.len() >= HEADS_KEPT {
            let cutoff = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
            self.heads.retain(|_, t| *t > cutoff);
            if self.heads.len() >= HEADS_KEPT {
                self.heads.clear();
            }
        }
        *self.heads.entry((key.to_string(), mod_rev)).or_insert(now)
    }

    /// The lowest slot of `hash` free in this process, taken for the lock id `make(slot)` returns.
    pub fn take_slot(&mut self, hash: &str, make: impl FnOnce(u32) -> String) -> String {
        let used = self.slots.entry(hash.to_string()).or_default();
        let slot = (0..super::keys::SLOTS)
            .zip(used.keys().copied().chain(std::iter::once(u32::MAX)))
            .find(|(want, have)| want != have)
            .map_or(super::keys::SLOTS - 1, |(want, _)| want);
        let id = make(slot);
        used.insert(slot, id.clone());
        id
    }

    /// Gives back a lock id's slot: its key is gone and the lock id is done with.
    pub fn free_slot(&mut self, lock_id: &str) {
        let (Some(hash), Some(slot)) = (super::keys::lock_hash(lock_id), super::keys::slot_of(lock_id)) else {
            return;
        };
        if let Some(used) = self.slots.get_mut(hash) {
            if used.get(&slot).is_some_and(|id| id == lock_id) {
                used.remove(&slot);
            }
            if used.is_empty() {
                self.slots.remove(hash);
            }
        }
    }

    /// Counts a grant.
    pub fn granted(&mut self, resource: &str) {
        self.counts.grants += 1;
        *self.counts.per_resource.entry(resource.to_string()).or_default() += 1;
    }

    /// Whether `key` at `create_rev` was dropped by the sweep: it must not be granted.
    pub fn is_swept(&self, key: &str, create_rev: i64) -> bool {
        !self.swept.is_empty() && self.swept.contains_key(&(key.to_string(), create_rev))
    }

    /// Leases past their deadline, and waiters past their waiter lease with no attempt under way, taken out of
    /// the tables; the waiters' keys are marked swept until [`Local::swept_done`].
    pub fn overdue(&mut self, now: Instant) -> (Vec<Held>, Vec<(String, Waiting)>) {
        let held: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| h.deadline <= now)
            .map(|(k, _)| k.clone())
            .collect();
        let held = held.into_iter().filter_map(|id| self.held.remove(&id)).collect();
        let waiting: Vec<String> = self
            .waiting
            .iter()
            .filter(|(_, w)| w.deadline <= now && w.attempts == 0)
            .map(|(k, _)| k.clone())
            .collect();
        let waiting: Vec<(String, Waiting)> = waiting
            .into_iter()
            .filter_map(|id| self.drop_waiter(&id).map(|w| (id, w)))
            .collect();
        if !waiting.is_empty() && self.swept.len() >= SWEPT_KEPT {
            self.swept.retain(|_, t| now.saturating_duration_since(*t) < SWEPT_FOR);
        }
        for (_, w) in &waiting {
            self.swept.insert((w.key.clone(), w.create_rev), now);
        }
        (held, waiting)
    }

    /// The sweep's delete of a waiter's key got an answer: the key at that revision is gone either way.
    pub fn swept_done(&mut self, key: &str, create_rev: i64) {
        self.swept.remove(&(key.to_string(), create_rev));
    }
}

/// The table behind a mutex.
pub(crate) type Shared = crate::backend::table::Table<Local>;

impl crate::backend::table::Waiters for Local {
    fn waiter_mut(&mut self, id: &str) -> Option<(&mut u32, &mut Instant)> {
        self.waiting.get_mut(id).map(|w| (&mut w.attempts, &mut w.deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn waiter(l: &mut Local, id: &str, behind: &str) {
        l.waiting.insert(
            id.into(),
            Waiting {
                key: format!("w/l/h/x/{id}"),
                lock_id: format!("lock-{id}"),
                create_rev: 10,
                behind: None,
                deadline: Instant::now(),
                session_epoch: 1,
                last_blocked: Instant::now(),
                attempts: 0,
            },
        );
        assert!(!l.wait_behind(id, Some(behind.into()), 10), "not deleted yet");
    }

    #[test]
    fn only_an_own_release_of_an_exclusive_lease_skips_the_next_read() {
        let mut l = Local::default();
        waiter(&mut l, "w1", "w/l/h/x/a");
        waiter(&mut l, "w2", "w/l/h/x/b");
        waiter(&mut l, "w3", "w/l/h/");
        // Deleted by someone else (a revoke may have taken w1's key too): w1 must look.
        assert_eq!(l.deleted("w/l/h/x/a", 11), ["w1", "w3"]);
        assert!(!l.free.contains("w1"));
        assert!(
            l.wait_behind("w3", Some("w/l/h/".into()), 10),
            "a deletion under it since its read"
        );
        // Deleted by this process's release of an exclusive lease: w2 is at the head; the semaphore's waiter
        // behind the whole resource is woken, and must look.
        l.releasing.insert("w/l/h/x/b".into());
        assert_eq!(l.deleted("w/l/h/x/b", 12), ["w2", "w3"]);
        assert!(l.free.contains("w2"));
        assert!(!l.free.contains("w3"));
        // Queued behind another key again: the flag goes.
        assert!(!l.wait_behind("w2", Some("w/l/h/x/c".into()), 12));
        assert!(!l.free.contains("w2"));
    }

    #[test]
    fn a_waiter_being_attempted_is_never_swept_and_a_swept_key_is_never_granted() {
        let shared = Arc::new(Shared::default());
        shared.with(|l| waiter(l, "w1", "w/l/h/x/a"));
        let later = Instant::now() + Duration::from_secs(10);
        {
            // Its waiter lease runs out while an attempt of it is under way: the sweep leaves it alone.
            let _mark = shared.attempting("w1", Duration::from_millis(1));
            let (_, swept) = shared.with(|l| l.overdue(later));
            assert!(swept.is_empty());
        }
        // Once the attempt is over (ended however) and the lease ran out, it goes, and its key at that create
        // revision may never be granted until the sweep's delete is answered.
        let (_, swept) = shared.with(|l| l.overdue(later));
        assert_eq!(swept.len(), 1);
        assert!(shared.with(|l| l.is_swept("w/l/h/x/w1", 10)));
        assert!(
            !shared.with(|l| l.is_swept("w/l/h/x/w1", 11)),
            "the same name made again is another key"
        );
        shared.with(|l| l.swept_done("w/l/h/x/w1", 10));
        assert!(!shared.with(|l| l.is_swept("w/l/h/x/w1", 10)));
    }
}
