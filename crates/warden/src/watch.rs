//! Watching a resource: its grants, the ends of its leases and the changes of its queue, as a stream.
//!
//! The stream compares successive views of the resource ([`Warden::inspect`]): it looks again every `every`
//! and whenever it is nudged (the server nudges it with each grant, release and expiry it makes on that
//! resource, so those show at once). A view is a read, never a wait: waiters are woken by notifications
//! whatever is watching.

use crate::error::Result;
use crate::lock::Warden;
use crate::types::{LeaseInfo, QueueEntry, ResourceInfo};
use futures::Stream;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// One change of a watched resource.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// Holders and queue when the watch began.
    Snapshot(ResourceInfo),
    /// A lease was granted (or first seen).
    Granted(LeaseInfo),
    /// A lease is held no longer: released, expired or taken away.
    Ended(LeaseInfo),
    /// The waiters changed: the queue now, in grant order.
    Queue(Vec<QueueEntry>),
}

/// What changed from `old` to `new`, in the order: ends, grants, then the queue.
pub fn diff(old: &ResourceInfo, new: &ResourceInfo) -> Vec<Change> {
    let has = |v: &[LeaseInfo], l: &LeaseInfo| v.iter().any(|x| x.lease_handle == l.lease_handle);
    let mut out: Vec<Change> = old
        .holders
        .iter()
        .filter(|l| !has(&new.holders, l))
        .cloned()
        .map(Change::Ended)
        .collect();
    out.extend(
        new.holders
            .iter()
            .filter(|l| !has(&old.holders, l))
            .cloned()
            .map(Change::Granted),
    );
    if old.queue != new.queue {
        out.push(Change::Queue(new.queue.clone()));
    }
    out
}

impl Warden {
    /// Watches `resource`: first a [`Change::Snapshot`], then every change seen, looking again every `every`
    /// (at least 10 ms) and whenever `nudge` is notified. An error (the backend unreachable) is yielded and the
    /// watch goes on.
    ///
    /// ```
    /// # tokio_test_shim::run(async {
    /// use futures::StreamExt;
    /// use std::time::Duration;
    /// use warden::watch::Change;
    /// let warden = warden::Warden::connect("memory://").await.unwrap();
    /// let mut changes = Box::pin(warden.watch("jobs", Duration::from_millis(20), None));
    /// assert!(matches!(changes.next().await, Some(Ok(Change::Snapshot(_)))));
    /// let guard = warden.lock("jobs").acquire().await.unwrap();
    /// match changes.next().await {
    ///     Some(Ok(Change::Granted(l))) => assert_eq!(l.fencing_token, guard.fencing_token()),
    ///     other => panic!("{other:?}"),
    /// }
    /// # });
    /// # mod tokio_test_shim { pub fn run<F: std::future::Future>(f: F) -> F::Output {
    /// #   tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f) } }
    /// ```
    pub fn watch(
        &self,
        resource: &str,
        every: Duration,
        nudge: Option<Arc<Notify>>,
    ) -> impl Stream<Item = Result<Change>> + Send + 'static {
        let warden = self.clone();
        let resource = resource.to_string();
        let every = every.max(Duration::from_millis(10));
        let state = (None::<ResourceInfo>, VecDeque::<Change>::new());
        futures::stream::unfold(state, move |(mut last, mut pending)| {
            let (warden, resource, nudge) = (warden.clone(), resource.clone(), nudge.clone());
            async move {
                loop {
                    if let Some(c) = pending.pop_front() {
                        return Some((Ok(c), (last, pending)));
                    }
                    if last.is_some() {
                        match &nudge {
                            Some(n) => {
                                let _ = tokio::time::timeout(every, n.notified()).await;
                            }
                            None => tokio::time::sleep(every).await,
                        }
                    }
                    let now = match warden.inspect(&resource).await {
                        Ok(now) => now,
                        Err(e) => return Some((Err(e), (last, pending))),
                    };
                    match &last {
                        None => pending.push_back(Change::Snapshot(now.clone())),
                        Some(old) => pending.extend(diff(old, &now)),
                    }
                    last = Some(now);
                }
            }
        })
    }
}
