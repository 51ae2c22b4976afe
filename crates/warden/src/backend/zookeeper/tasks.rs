//! The backend's background work: following the session, the watches that wake waiters, the sweep that ends
//! this process's overdue leases, abandoned waiters and nodes whose create answer was lost, and the flush of
//! counters into the shared statistics.

use super::local::{Counts, Shared};
use super::names::{count, Entry, STATS};
use super::session::Zk;
use crate::backend::queue_record::{resource_hash, CountRecord, StatsRecord};
use crate::wake::WakeRouter;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use zookeeper_client::{CreateMode, Error as Z, EventType};

/// How often overdue leases and waiters are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(20);
/// How often counters are added to the shared statistics (a crash loses at most this much of them).
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The running tasks; dropping this stops them (the session closes with the last client).
pub(crate) struct Tasks {
    handles: Vec<JoinHandle<()>>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

impl Tasks {
    pub fn start(zk: Arc<Zk>, local: Arc<Shared>) -> Self {
        let handles = vec![
            tokio::spawn(zk.clone().follow()),
            tokio::spawn(sweep(zk.clone(), local.clone())),
            tokio::spawn(flush_every(zk, local)),
        ];
        Tasks { handles }
    }
}

/// Watches `path` until it is deleted, then wakes this process's waiters behind it. A change of its data (a
/// renewal) sets the watch again; a watch that ends otherwise (the connection or session went) wakes them too,
/// and their next attempt sees for itself.
///
/// It holds the backend's session only while it sets the watch: a backend dropped meanwhile closes its session
/// (and the watch ends with it).
pub(crate) async fn watch(zk: Weak<Zk>, local: Arc<Shared>, router: Arc<WakeRouter>, path: String) {
    if let Some(dir) = path.strip_suffix('/') {
        return watch_children(zk, local, router, dir.to_string(), path.clone()).await;
    }
    let p = &path;
    let gone = loop {
        let Some(zk) = zk.upgrade() else {
            return;
        };
        let set = zk.run(|c| async move {
            let (stat, w) = c.check_and_watch_stat(p).await?;
            Ok(stat.map(|_| w))
        });
        let set = set.await;
        drop(zk);
        match set {
            Ok(Some(w)) => match w.changed().await.event_type {
                EventType::NodeDataChanged => continue,
                EventType::NodeDeleted => break true,
                _ => break false,
            },
            Ok(None) => break true,
            Err(e) => {
                tracing::debug!(error = %e, "ZooKeeper watch not set");
                break false;
            }
        }
    };
    let ids = local.with(|l| l.deleted(&path, gone));
    router.wake(ids.iter().map(String::as_str));
}

/// A semaphore's waiters of one resource (registered behind `key`, the directory with a `/`): woken by the next
/// change to the directory's children (a node ahead of them may be gone; a new one behind wakes them too, and
/// they look again).
async fn watch_children(zk: Weak<Zk>, local: Arc<Shared>, router: Arc<WakeRouter>, dir: String, key: String) {
    let Some(zk) = zk.upgrade() else {
        return;
    };
    let d = &dir;
    let set = zk
        .run(|c| async move { c.get_and_watch_children(d).await.map(|(_, stat, w)| (stat, w)) })
        .await;
    drop(zk);
    match set {
        Ok((stat, w)) => {
            // Set after a change a waiter behind it did not see: they look again now.
            if !local.with(|l| l.dirs.set(&key, stat.cversion)) {
                w.changed().await;
            }
        }
        Err(e) => tracing::debug!(error = %e, "ZooKeeper children watch not set"),
    }
    let ids = local.with(|l| l.deleted(&key, false));
    router.wake(ids.iter().map(String::as_str));
}

/// Deletes this process's leases past their ttl and waiters past their waiter lease, each only if unchanged
/// since this process wrote it, and nodes of creates whose answer was lost.
async fn sweep(zk: Arc<Zk>, local: Arc<Shared>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let (held, waiting) = local.with(|l| l.overdue(Instant::now()));
        for h in held {
            let (p, v) = (&h.path, h.version);
            let r = zk.run(|c| async move { c.delete(p, Some(v)).await }).await;
            if r.is_ok() {
                local.with(|l| {
                    l.counts.expired += 1;
                    l.exclusive_held.remove(&h.path);
                });
            }
        }
        for w in waiting {
            let p = &w.path;
            let _ = zk.run(|c| async move { c.delete(p, None).await }).await;
        }
        let suspects = local.with(|l| std::mem::take(&mut l.suspects));
        for (dir, stem) in suspects {
            if drop_suspect(&zk, &local, &dir, &stem).await.is_err() {
                local.with(|l| l.suspects.push((dir, stem)));
            }
        }
    }
}

/// Deletes a node named `stem…` under `dir` that this process does not know: a create whose answer was lost.
async fn drop_suspect(zk: &Zk, local: &Shared, dir: &str, stem: &str) -> crate::error::Result<()> {
    let children = zk
        .run(|c| async move {
            match c.list_children(dir).await {
                Err(Z::NoNode) => Ok(Vec::new()),
                other => other,
            }
        })
        .await?;
    let want = stem.get(1..).unwrap_or_default().trim_end_matches('-');
    for e in Entry::queue(&children).into_iter().filter(|e| e.tag == want) {
        let path = format!("{dir}/{}", e.name);
        if !local.with(|l| l.owns(&path)) {
            let p = &path;
            zk.run(|c| async move { super::queued::gone_ok(c.delete(p, None).await) })
                .await?;
        }
    }
    Ok(())
}

async fn flush_every(zk: Arc<Zk>, local: Arc<Shared>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let counts = local.with(|l| std::mem::take(&mut l.counts));
        if counts.grants + counts.expired + counts.released == 0 {
            continue;
        }
        if let Err(e) = flush(&zk, &counts).await {
            tracing::debug!(error = %e, "statistics not flushed; kept for the next try");
            local.with(|l| l.counts.add(counts));
        }
    }
}

/// Adds `counts` to the shared statistics, each node by a version-checked write.
async fn flush(zk: &Zk, counts: &Counts) -> crate::error::Result<()> {
    cas(zk, STATS, |old| {
        let mut s = old
            .and_then(|v| serde_json::from_slice::<StatsRecord>(v).ok())
            .unwrap_or_default();
        s.grants += counts.grants;
        s.expired += counts.expired;
        s.released += counts.released;
        s.held_ms += counts.held_ms;
        serde_json::to_vec(&s).unwrap_or_default()
    })
    .await?;
    let each = counts.per_resource.iter().map(|(resource, n)| async move {
        let path = count(&resource_hash(resource));
        cas(zk, &path, |old| {
            let before = old
                .and_then(|v| serde_json::from_slice::<CountRecord>(v).ok())
                .map_or(0, |c| c.n);
            let rec = CountRecord {
                r: resource.clone(),
                n: before + n,
            };
            serde_json::to_vec(&rec).unwrap_or_default()
        })
        .await
    });
    futures::future::try_join_all(each).await?;
    Ok(())
}

/// Rewrites `path` with `f(old data)`, if nobody wrote it since it was read; tries a few times.
async fn cas(zk: &Zk, path: &str, f: impl Fn(Option<&[u8]>) -> Vec<u8>) -> crate::error::Result<()> {
    let (f, acls) = (&f, zk.acls());
    let opts = &CreateMode::Persistent.with_acls(acls);
    for _ in 0..5 {
        let done = zk
            .run(|c| async move {
                let r = match c.get_data(path).await {
                    Ok((old, stat)) => c.set_data(path, &f(Some(&old)), Some(stat.version)).await.map(|_| ()),
                    Err(Z::NoNode) => c.create(path, &f(None), opts).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                match r {
                    Ok(()) => Ok(true),
                    Err(Z::BadVersion | Z::NodeExists) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if done {
            return Ok(());
        }
    }
    Err(super::session::unavailable(
        &zk.opts.address,
        "statistics kept changing under the update",
    ))
}
