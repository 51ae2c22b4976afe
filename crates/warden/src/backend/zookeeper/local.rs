//! What this process knows about its own nodes: the leases it holds (so release and renewal are one
//! version-checked write), its queued waiters and the node each waits behind, the nodes it watches, queue heads
//! it watches expire, creates whose answer was lost, and counters not yet added to the shared statistics.

pub(crate) use crate::backend::queue_record::Counts;
use crate::backend::queue_record::Record;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::time::Instant;

/// A lease this process granted or renewed last.
#[derive(Debug, Clone)]
pub(crate) struct Held {
    pub path: String,
    /// The node's czxid: its fencing token.
    pub fence: i64,
    /// The node's data version after this process's last write.
    pub version: i32,
    pub record: Record,
    /// When this process deletes it unless renewed.
    pub deadline: Instant,
    /// A release was sent and its outcome is unknown (no answer within the timeout): if the node is gone when
    /// the caller tries again, that release is taken to have done it.
    pub release_sent: bool,
}

/// A waiter of this process with its node in a queue.
#[derive(Debug, Clone)]
pub(crate) struct Waiting {
    pub path: String,
    pub seq: i64,
    pub fence: i64,
    pub lock_id: String,
    /// What its node holds (written once, when it was created).
    pub record: Record,
    /// The node it waits behind: its deletion wakes the waiter.
    pub behind: Option<String>,
    /// Dropped from the queue unless attempted again by then (its waiter lease).
    pub deadline: Instant,
    /// The session it was created in.
    pub epoch: u64,
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
    /// Waiter ids by the node they wait behind.
    pub behind: HashMap<String, Vec<String>>,
    /// Waiters known to be at the head of their queue: the exclusive holder just ahead of them is gone, and
    /// nothing can come ahead of a holder. Their next attempt needs no read.
    pub free: HashSet<String>,
    /// Nodes of exclusive leases this process was granted (a node that is deleted leaves it).
    pub exclusive_held: HashSet<String>,
    /// Nodes this process is deleting in a release right now.
    pub releasing: HashSet<String>,
    /// Nodes with a watch of this process on them.
    pub watched: HashSet<String>,
    /// The children versions behind the watches on semaphores' directories.
    pub dirs: super::dir_watch::DirWatches,
    /// Heads of queues seen by this process: (path, mzxid) → first seen.
    pub heads: HashMap<(String, i64), Instant>,
    /// (directory, name stem) of creates whose answer was lost: the node may exist, unknown to anyone.
    pub suspects: Vec<(String, String)>,
    pub counts: Counts,
}

/// Queue heads remembered at most (the oldest are dropped).
const HEADS_KEPT: usize = 65_536;

impl Local {
    /// Registers waiter `id` behind `path`. True if the caller must set a watch on it (none is set yet).
    pub fn wait_behind(&mut self, id: &str, path: Option<String>) -> bool {
        let Some(w) = self.waiting.get_mut(id) else {
            return false;
        };
        self.free.remove(id);
        if w.behind == path {
            return path.is_some_and(|p| self.watched.insert(p));
        }
        if let Some(old) = std::mem::replace(&mut w.behind, path.clone()) {
            self.unlink(&old, id);
        }
        let Some(path) = path else {
            return false;
        };
        self.behind.entry(path.clone()).or_default().push(id.to_string());
        self.watched.insert(path)
    }

    fn unlink(&mut self, path: &str, id: &str) {
        if let Some(v) = self.behind.get_mut(path) {
            v.retain(|x| x != id);
            if v.is_empty() {
                self.behind.remove(path);
            }
        }
    }

    /// Forgets a waiter.
    pub fn drop_waiter(&mut self, id: &str) -> Option<Waiting> {
        self.free.remove(id);
        let w = self.waiting.remove(id)?;
        if let Some(p) = &w.behind {
            self.unlink(p, id);
        }
        Some(w)
    }

    /// A node is gone (or its watch ended): the waiters behind it, to wake. If this process was releasing it as
    /// an exclusive lease of its own, they are at the head now.
    pub fn deleted(&mut self, path: &str, gone: bool) -> Vec<String> {
        self.watched.remove(path);
        self.dirs.ended(path);
        self.heads.retain(|(p, _), _| p != path);
        let ids = self.behind.remove(path).unwrap_or_default();
        for id in &ids {
            if let Some(w) = self.waiting.get_mut(id) {
                w.behind = None;
            }
        }
        // Only this process's own release: a node deleted by someone else (a revoke) may have taken the waiters'
        // nodes with it, and they must look.
        if gone && self.exclusive_held.remove(path) && self.releasing.contains(path) {
            self.free.extend(ids.iter().cloned());
        }
        if self.held.is_empty() {
            // Leases lost with a session leave their nodes here; none is held, so none of them is.
            self.exclusive_held.clear();
        }
        ids
    }

    /// When this process first saw `path` at `mzxid` at the head of its queue.
    pub fn head_seen(&mut self, path: &str, mzxid: i64, now: Instant) -> Instant {
        if self.heads.len() >= HEADS_KEPT {
            let cutoff = now.checked_sub(Duration::from_secs(3600)).unwrap_or(now);
            self.heads.retain(|_, t| *t > cutoff);
            if self.heads.len() >= HEADS_KEPT {
                self.heads.clear();
            }
        }
        *self.heads.entry((path.to_string(), mzxid)).or_insert(now)
    }

    /// Counts a grant.
    pub fn granted(&mut self, resource: &str) {
        self.counts.grants += 1;
        *self.counts.per_resource.entry(resource.to_string()).or_default() += 1;
    }

    /// Leases past their deadline and waiters past their waiter lease, taken out of the tables.
    pub fn overdue(&mut self, now: Instant) -> (Vec<Held>, Vec<Waiting>) {
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
        let waiting = waiting.into_iter().filter_map(|id| self.drop_waiter(&id)).collect();
        (held, waiting)
    }

    /// Whether this process knows `path` as one of its leases or waiters.
    pub fn owns(&self, path: &str) -> bool {
        self.held.values().any(|h| h.path == path) || self.waiting.values().any(|w| w.path == path)
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

    fn waiter(l: &mut Local, id: &str, behind: &str) {
        let req = crate::types::AcquireRequest::new(
            "r",
            crate::LockKind::Exclusive,
            Duration::from_secs(1),
            "c",
            "0123456789abcdef0123456789abcdef",
            Duration::from_secs(1),
        );
        l.waiting.insert(
            id.into(),
            Waiting {
                path: format!("/l/h/x{id}-1"),
                seq: 1,
                fence: 1,
                lock_id: req.lock_id.clone(),
                record: Record::new(&req, Some(id)),
                behind: None,
                deadline: Instant::now(),
                epoch: 0,
                last_blocked: Instant::now(),
                attempts: 0,
            },
        );
        assert!(
            l.wait_behind(id, Some(behind.into())),
            "the first waiter behind a node sets its watch"
        );
    }

    #[test]
    fn only_an_own_release_of_an_exclusive_lease_skips_the_next_read() {
        let mut l = Local::default();
        waiter(&mut l, "w1", "/l/h/xa-0");
        waiter(&mut l, "w2", "/l/h/xb-0");
        l.exclusive_held
            .extend(["/l/h/xa-0".to_string(), "/l/h/xb-0".to_string()]);
        let record = l.waiting["w1"].record.clone();
        let held = |path: &str| Held {
            path: path.into(),
            fence: 1,
            version: 0,
            record: record.clone(),
            deadline: Instant::now(),
            release_sent: false,
        };
        l.held.insert("a".into(), held("/l/h/xa-0"));
        l.held.insert("b".into(), held("/l/h/xb-0"));
        // Deleted by someone else (a revoke may have taken w1's node too): w1 must look.
        assert_eq!(l.deleted("/l/h/xa-0", true), ["w1"]);
        assert!(!l.free.contains("w1"));
        // Deleted by this process's release: w2 is at the head.
        l.releasing.insert("/l/h/xb-0".into());
        assert_eq!(l.deleted("/l/h/xb-0", true), ["w2"]);
        assert!(l.free.contains("w2"));
        // Queued behind another node again: the flag goes.
        assert!(l.wait_behind("w2", Some("/l/h/xc-0".into())));
        assert!(!l.free.contains("w2"));
    }
}
