//! Turns: a process's acquires of one resource reach the database one at a time, in the order they were made
//! (tokio's mutex is fair), so its waiters queue in the order they asked, whatever order the pool's connections,
//! the fast path's batches or the row lock would take them in. Acquires of different resources never wait for
//! each other. A resource's entry lives while an acquire of it holds or waits for its turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

type Line = Arc<tokio::sync::Mutex<()>>;

#[derive(Default)]
pub(super) struct Turns(Mutex<HashMap<String, Line>>);

/// An acquire's turn on its resource, until dropped (also when the acquire was dropped while waiting for it).
pub(super) struct Turn<'a> {
    turns: &'a Turns,
    resource: String,
    line: Option<Line>,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    fn map<T>(&self, f: impl FnOnce(&mut HashMap<String, Line>) -> T) -> T {
        match self.0.lock() {
            Ok(mut m) => f(&mut m),
            Err(p) => f(&mut p.into_inner()),
        }
    }

    /// Waits for `resource`'s turn: after every acquire of it that asked before.
    pub(super) async fn take(&self, resource: &str) -> Turn<'_> {
        let line = self.map(|m| m.entry(resource.to_string()).or_default().clone());
        let mut turn = Turn {
            turns: self,
            resource: resource.to_string(),
            line: Some(line.clone()),
            guard: None,
        };
        turn.guard = Some(line.lock_owned().await);
        turn
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.map(|m| m.len())
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.guard = None;
        self.line = None;
        // The last one out takes the resource's entry away.
        self.turns.map(|m| {
            if m.get(&self.resource).is_some_and(|l| Arc::strong_count(l) == 1) {
                m.remove(&self.resource);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn acquires_of_one_resource_go_in_the_order_they_asked_and_leave_nothing_behind() {
        let turns = Arc::new(Turns::default());
        let order = Arc::new(Mutex::new(Vec::new()));
        let first = turns.take("r").await;
        let mut waiting = Vec::new();
        for i in 0..5 {
            let (turns, order) = (turns.clone(), order.clone());
            waiting.push(tokio::spawn(async move {
                let _t = turns.take("r").await;
                order.lock().map(|mut o| o.push(i)).ok();
                tokio::task::yield_now().await;
            }));
            // Each asks before the next is spawned.
            tokio::task::yield_now().await;
        }
        // Another resource does not wait.
        drop(turns.take("other").await);
        drop(first);
        for t in waiting {
            t.await.ok();
        }
        assert_eq!(*order.lock().expect("order"), [0, 1, 2, 3, 4]);
        assert_eq!(turns.len(), 0);
        // One dropped while waiting leaves nothing either.
        let held = turns.take("r").await;
        let pending = tokio::time::timeout(std::time::Duration::from_millis(10), turns.take("r")).await;
        assert!(pending.is_err());
        drop(held);
        assert_eq!(turns.len(), 0);
    }
}
