//! A backend's table of what this process knows about its own leases and waiters, behind a mutex, and the
//! mark that keeps a waiter out of the sweep while one of its attempts is under way. Shared by the backends
//! whose waiters have keys of their own in the store (etcd, ZooKeeper).

use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// A table that knows its waiters' attempts under way and waiter-lease deadlines.
pub(crate) trait Waiters {
    /// The attempts under way and the deadline of waiter `id`, if it is queued.
    fn waiter_mut(&mut self, id: &str) -> Option<(&mut u32, &mut Instant)>;
}

/// The table behind a mutex, with a poison-proof accessor.
#[derive(Debug, Default)]
pub(crate) struct Table<L>(Mutex<L>);

impl<L: Waiters + Send + 'static> Table<L> {
    pub fn with<T>(&self, f: impl FnOnce(&mut L) -> T) -> T {
        match self.0.lock() {
            Ok(mut g) => f(&mut g),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Marks an attempt of waiter `id` under way until the mark is dropped: the waiter is alive (its waiter
    /// lease runs again from now) and must not be counted overdue meanwhile, so the sweep cannot delete its
    /// key while the attempt may be granting it.
    pub fn attempting(self: &Arc<Self>, id: &str, waiter_lease: Duration) -> Attempting<L> {
        self.with(|l| {
            if let Some((attempts, deadline)) = l.waiter_mut(id) {
                *attempts += 1;
                *deadline = (*deadline).max(Instant::now() + waiter_lease);
            }
        });
        Attempting {
            table: self.clone(),
            id: id.to_string(),
        }
    }
}

/// An attempt of a waiter under way (see [`Table::attempting`]); ends when dropped, however the attempt ended.
pub(crate) struct Attempting<L: Waiters + Send + 'static> {
    table: Arc<Table<L>>,
    id: String,
}

impl<L: Waiters + Send + 'static> Drop for Attempting<L> {
    fn drop(&mut self) {
        self.table.with(|l| {
            if let Some((attempts, _)) = l.waiter_mut(&self.id) {
                *attempts = attempts.saturating_sub(1);
            }
        })
    }
}
