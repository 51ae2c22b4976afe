//! Caps on parked waiters, overall and per resource, so a flood of waiting clients cannot grow memory
//! without bound. Counted per instance; the backend's queue itself is capped per resource as well.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Counts waiters; a [`WaiterSlot`] gives its place back on drop.
#[derive(Debug)]
pub struct WaiterLimits {
    max_total: usize,
    max_per_resource: usize,
    inner: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_resource: HashMap<String, usize>,
}

/// One parked waiter; dropping it frees the slot.
#[derive(Debug)]
pub struct WaiterSlot {
    limits: Arc<WaiterLimits>,
    resource: String,
}

impl WaiterLimits {
    /// New caps.
    pub fn new(max_total: usize, max_per_resource: usize) -> Arc<Self> {
        Arc::new(WaiterLimits {
            max_total,
            max_per_resource,
            inner: Mutex::new(Counts::default()),
        })
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a slot, or says which cap is reached.
    pub fn enter(self: &Arc<Self>, resource: &str) -> Result<WaiterSlot, String> {
        let mut c = self.counts();
        if c.total >= self.max_total {
            return Err(format!(
                "this server already parks {} waiters (its limit); retry later or use waitTimeout 0",
                self.max_total
            ));
        }
        let n = c.per_resource.get(resource).copied().unwrap_or(0);
        if n >= self.max_per_resource {
            return Err(format!(
                "resource already has {} waiters on this server (the per-resource limit); retry later",
                self.max_per_resource
            ));
        }
        c.total += 1;
        c.per_resource.insert(resource.to_string(), n + 1);
        metrics::gauge!("warden_waiters").set(c.total as f64);
        Ok(WaiterSlot {
            limits: self.clone(),
            resource: resource.to_string(),
        })
    }

    /// Waiters parked now.
    pub fn total(&self) -> usize {
        self.counts().total
    }
}

impl Drop for WaiterSlot {
    fn drop(&mut self) {
        let mut c = self.limits.counts();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_resource.get_mut(&self.resource) {
            *n -= 1;
            if *n == 0 {
                c.per_resource.remove(&self.resource);
            }
        }
        metrics::gauge!("warden_waiters").set(c.total as f64);
    }
}
