//! Routes wake-up notifications to the waiters of this process.
//!
//! A waiter registers its id *before* its first queued attempt, so a notification published after the
//! backend queued it always finds it (tokio's `Notify` keeps one permit if nobody is waiting yet).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Map from waiter id to the waiter's wake-up handle.
#[derive(Debug, Default)]
pub struct WakeRouter {
    waiters: Mutex<HashMap<String, Arc<Notify>>>,
}

/// A registered waiter; deregisters on drop.
#[derive(Debug)]
pub struct Registration {
    router: Arc<WakeRouter>,
    id: String,
    notify: Arc<Notify>,
}

impl Registration {
    /// The waiter id to hand to the backend.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Resolves when a notification for this waiter arrived (or arrived since the last call).
    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut m) = self.router.waiters.lock() {
            m.remove(&self.id);
        }
    }
}

impl WakeRouter {
    /// Registers a waiter under `id`.
    pub fn register(self: &Arc<Self>, id: String) -> Registration {
        let notify = Arc::new(Notify::new());
        if let Ok(mut m) = self.waiters.lock() {
            m.insert(id.clone(), notify.clone());
        }
        Registration {
            router: self.clone(),
            id,
            notify,
        }
    }

    /// Wakes the named waiters that live in this process; unknown ids are ignored.
    pub fn wake<'a>(&self, ids: impl IntoIterator<Item = &'a str>) {
        if let Ok(m) = self.waiters.lock() {
            for id in ids {
                if let Some(n) = m.get(id) {
                    n.notify_one();
                }
            }
        }
    }

    /// Wakes every local waiter (after a notification channel was interrupted, messages may be lost).
    pub fn wake_all(&self) {
        if let Ok(m) = self.waiters.lock() {
            for n in m.values() {
                n.notify_one();
            }
        }
    }

    /// Number of registered waiters.
    pub fn len(&self) -> usize {
        self.waiters.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// True if no waiter is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
