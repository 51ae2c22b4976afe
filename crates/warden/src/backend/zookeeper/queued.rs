//! The ZooKeeper lock recipe's waiting side: a waiter the lock passed to, one still blocked (watching the node
//! ahead of it), an expired head of queue, leaving the queue.

use super::acquire::Node;
use super::local::{Held, Waiting};
use super::names::{dir, lock_hash};
use super::records::{Judged, Written};
use super::session::ZkResult;
use super::ZkBackend;
use crate::backend::queue_record::{ms, now_ms, resource_hash, Record};
use crate::error::Result;
use crate::types::{AcquireRequest, Attempt};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client::{Error as Z, MultiWriteResult};

impl ZkBackend {
    /// A waiter found nothing ahead of its node any more: whatever blocked it went after its last attempt was
    /// sent, and anyone who sees its node at the head starts counting its ttl from then at the earliest. So the
    /// lease runs from that send, with no write; the guard claims the full ttl with its first renewal. Only
    /// when little of the ttl is left that way is the grant claimed with a write now.
    pub(super) async fn handed(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        node: Node,
        session_left: Duration,
        seen: Option<Judged>,
    ) -> Result<Option<Attempt>> {
        let now = Instant::now();
        let since = waiter.and_then(|w| self.local.with(|l| l.waiting.get(w).map(|w| w.last_blocked)));
        let left = since.map_or(Duration::ZERO, |t| (t + req.ttl).saturating_duration_since(now));
        let mut record = node.record;
        record.w = None;
        // An ensemble that records grants takes every handed lock with the claim's write, which carries the record.
        if left >= req.ttl / 2 && self.records.is_none() {
            record.a = now_ms().saturating_sub(ms(req.ttl - left));
            record.h = true;
            let held = Held {
                path: node.path,
                fence: node.fence,
                version: 0,
                record,
                deadline: now + left,
                release_sent: false,
            };
            return Ok(Some(self.granted(req, waiter, held, left.min(session_left))));
        }
        record.a = now_ms();
        let (data, p) = (&record.encode(), &node.path);
        let sent = Instant::now();
        let set = match &self.records {
            Some(r) => {
                let hash = resource_hash(&req.resource);
                match r
                    .write(&hash, node.fence, seen, !req.kind.is_exclusive(), 1, |m| {
                        m.add_set_data(p, data, Some(0))
                    })
                    .await?
                {
                    Written::Yes(done) => done.into_iter().find_map(|w| match w {
                        MultiWriteResult::SetData { stat } => Some(stat),
                        _ => None,
                    }),
                    Written::Lost => None,
                    Written::Moved => {
                        // The record moved since it was judged: this waiter leaves, and is judged again.
                        self.zk.run(|c| async move { gone_ok(c.delete(p, None).await) }).await?;
                        None
                    }
                }
            }
            None => {
                self.zk
                    .run(|c| async move {
                        match c.set_data(p, data, Some(0)).await {
                            Ok(stat) => Ok(Some(stat)),
                            Err(Z::NoNode | Z::BadVersion) => Ok(None),
                            Err(e) => Err(e),
                        }
                    })
                    .await?
            }
        };
        let Some(stat) = set else {
            if let Some(w) = waiter {
                self.local.with(|l| l.drop_waiter(w));
            }
            return Ok(None);
        };
        let held = Held {
            path: node.path,
            fence: node.fence,
            version: stat.version,
            record,
            deadline: sent + req.ttl,
            release_sent: false,
        };
        Ok(Some(self.granted(req, waiter, held, req.ttl.min(session_left))))
    }

    /// Not granted: a waiter is registered behind the node ahead of it (and a watch set on that node if this
    /// process has none there); a queue head unchanged for its ttl is deleted and the attempt made again.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn blocked(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        node: Node,
        epoch: u64,
        ahead: String,
        head: Option<String>,
        (sent, listed): (Instant, i32),
    ) -> Result<Option<Attempt>> {
        let now = Instant::now();
        if let Some(w) = waiter {
            let (watch, missed) = self.local.with(|l| {
                let entry = l.waiting.entry(w.to_string()).or_insert_with(|| Waiting {
                    path: node.path.clone(),
                    seq: node.seq,
                    fence: node.fence,
                    lock_id: req.lock_id.clone(),
                    record: node.record.clone(),
                    behind: None,
                    deadline: now,
                    epoch,
                    last_blocked: sent,
                    attempts: 0,
                });
                entry.deadline = now + req.waiter_lease;
                entry.last_blocked = sent;
                let watch = l.wait_behind(w, Some(ahead.clone()));
                // A directory's watch may have been set after a change this read did not see.
                (watch, ahead.ends_with('/') && l.dirs.seen(&ahead, listed))
            });
            if missed {
                self.router.wake([w]);
            }
            if watch {
                tokio::spawn(super::tasks::watch(
                    Arc::downgrade(&self.zk),
                    self.local.clone(),
                    self.router.clone(),
                    ahead,
                ));
            }
        }
        // The head of the queue, if someone else's: its lease ends when it stays unchanged for its ttl.
        let mut retry_in = None;
        if let Some(h) = head.filter(|h| *h != node.path) {
            let p = &h;
            let found = self.zk.data(p).await?;
            let Some((data, stat)) = found else {
                // Gone since the list: the queue moved on, and a waiter hears of it from its watch.
                return Ok(Some(Attempt::NotGranted {
                    retry_in: None,
                    backend_now: None,
                }));
            };
            let g = Record::decode(&data).map_or(Duration::from_secs(60), |r| Duration::from_millis(r.g));
            let seen = self.local.with(|l| l.head_seen(&h, stat.mzxid, now));
            let ends = seen + g;
            if ends <= now {
                self.expire(&h, stat.version).await?;
                return Ok(None);
            }
            retry_in = Some(ends - now);
        }
        Ok(Some(Attempt::NotGranted {
            retry_in,
            backend_now: None,
        }))
    }

    /// Deletes a head of queue found unchanged for its ttl, unless it changed meanwhile; counts the expiry.
    pub(super) async fn expire(&self, path: &str, version: i32) -> Result<()> {
        let deleted = self
            .zk
            .run(|c| async move {
                match c.delete(path, Some(version)).await {
                    Ok(()) => Ok(true),
                    Err(Z::NoNode | Z::BadVersion) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if deleted {
            self.local.with(|l| l.counts.expired += 1);
            self.deleted_here(path);
        }
        Ok(())
    }

    pub(super) async fn leave(&self, waiter: &str) -> Result<bool> {
        let Some(w) = self.local.with(|l| l.drop_waiter(waiter)) else {
            return Ok(false);
        };
        let p = &w.path;
        let deleted = self
            .zk
            .run(|c| async move {
                match c.delete(p, None).await {
                    Ok(()) => Ok(true),
                    Err(Z::NoNode) => Ok(false),
                    Err(e) => Err(e),
                }
            })
            .await?;
        if deleted {
            self.deleted_here(&w.path);
        }
        Ok(deleted)
    }

    /// This process deleted `path`: its own waiters behind it need not wait for the watch to say so.
    pub(super) fn deleted_here(&self, path: &str) {
        let ids = self.local.with(|l| l.deleted(path, true));
        self.router.wake(ids.iter().map(String::as_str));
    }

    /// The lock id's resource directory, if the lock id is one of this backend's.
    pub(super) fn dir_of(lock_id: &str) -> Option<String> {
        lock_hash(lock_id).map(dir)
    }
}

/// A delete whose node was gone already is done.
pub(super) fn gone_ok(r: ZkResult<()>) -> ZkResult<()> {
    match r {
        Err(Z::NoNode) => Ok(()),
        other => other,
    }
}
