//! What closes the gap between a semaphore waiter's read of its queue and the watch on the queue's directory.
//!
//! A semaphore's waiters watch the directory's children (any node ahead of them may go). One watch per
//! directory serves every waiter of this process, and it is set after a waiter read the queue: a change that
//! came in between would wake nobody, and the waiter would wait for its next heartbeat. So each waiter says
//! which children version (`cversion`) its read saw, and the watch says the version it was set at; whoever
//! comes second learns that a change was missed, and the waiters look again at once.

use std::collections::HashMap;

/// The directories this process watches, by waiter key (`{dir}/`).
#[derive(Debug, Default)]
pub(crate) struct DirWatches(HashMap<String, DirWatch>);

#[derive(Debug, Clone, Copy)]
struct DirWatch {
    /// The oldest children version a waiter behind it read.
    oldest_seen: i32,
    /// The children version when the watch was set (none while it is being set).
    set_at: Option<i32>,
}

/// Whether children version `a` comes after `b` (serial arithmetic: the version wraps around).
fn after(a: i32, b: i32) -> bool {
    a.wrapping_sub(b) > 0
}

impl DirWatches {
    /// A waiter is registered behind `key` after reading the children at version `seen`. True if the watch
    /// there was set after a change this waiter did not see: it must look again now.
    pub fn seen(&mut self, key: &str, seen: i32) -> bool {
        let w = self.0.entry(key.to_string()).or_insert(DirWatch {
            oldest_seen: seen,
            set_at: None,
        });
        if after(w.oldest_seen, seen) {
            w.oldest_seen = seen;
        }
        w.set_at.is_some_and(|at| after(at, seen))
    }

    /// The watch behind `key` is set, at children version `at`. True if a waiter behind it read an older
    /// version: a change came in between, and the waiters must look again now.
    pub fn set(&mut self, key: &str, at: i32) -> bool {
        match self.0.get_mut(key) {
            Some(w) => {
                w.set_at = Some(at);
                after(at, w.oldest_seen)
            }
            None => false,
        }
    }

    /// The watch behind `key` ended (it fired, or could not be set).
    pub fn ended(&mut self, key: &str) {
        self.0.remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_between_a_read_and_the_watch_is_caught_by_whoever_comes_second() {
        let mut d = DirWatches::default();
        // Read at 5, the watch set at 5: nothing missed.
        assert!(!d.seen("/s/", 5));
        assert!(!d.set("/s/", 5));
        // A waiter that read at 4 registers after the watch was set at 5: it missed a change.
        assert!(d.seen("/s/", 4));
        assert!(!d.seen("/s/", 5));
        d.ended("/s/");
        // Two waiters read at 7 and 6 before the watch is set at 7: the one at 6 missed a change.
        assert!(!d.seen("/s/", 7));
        assert!(!d.seen("/s/", 6));
        assert!(d.set("/s/", 7));
        // The version wraps around.
        d.ended("/s/");
        assert!(!d.seen("/s/", i32::MAX));
        assert!(d.set("/s/", i32::MIN));
    }
}
