//! Acquire and leave on ZooKeeper: Curator's lock recipe. A request creates its ephemeral sequential node and
//! lists the queue in one round trip (ZooKeeper answers a session's calls in order); it holds the lock when
//! nothing ahead of it blocks it, else it watches the node just ahead of it (no herd: a release wakes one
//! waiter, or the run of readers behind it). A semaphore's request holds while fewer nodes than permits are
//! ahead of it; its waiters watch the directory's children, as Curator's semaphore does.

use super::local::Held;
use super::names::{blocker, dir, sem_blocker, stem, tag, Entry};
use super::queued::gone_ok;
use super::records::Written;
use super::ZkBackend;
use crate::backend::queue_record::{resource_hash, Record};
use crate::error::Result;
use crate::types::{AcquireRequest, Attempt, Grant, LockKind};
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client::{Client, CreateMode, Error as Z, Stat};

/// A request's node as this attempt knows it.
pub(super) struct Node {
    pub(super) path: String,
    pub(super) seq: i64,
    pub(super) fence: i64,
    /// Written by this attempt (granted now if nothing blocks it), or queued before.
    pub(super) created: bool,
    pub(super) record: Record,
}

impl ZkBackend {
    pub(super) async fn attempt_now(&self, req: &AcquireRequest, waiter: Option<&str>) -> Result<Attempt> {
        let _attempting = waiter.map(|w| self.local.attempting(w, req.waiter_lease));
        // A head found expired is deleted and the attempt made again, at most twice.
        for _ in 0..3 {
            if let Some(done) = self.attempt_once(req, waiter).await? {
                return Ok(done);
            }
        }
        Ok(Attempt::NotGranted {
            retry_in: Some(Duration::from_millis(1)),
            backend_now: None,
        })
    }

    async fn attempt_once(&self, req: &AcquireRequest, waiter: Option<&str>) -> Result<Option<Attempt>> {
        let left = self.zk.session_left()?;
        let epoch = self.zk.epoch();
        let hash = resource_hash(&req.resource);
        let dir = dir(&hash);
        // A conditional request on an ensemble that records grants: judged by the record, granted only by a
        // multi that finds it as judged.
        let seen = match (&self.records, &req.condition) {
            (Some(r), Some(c)) => match r.judge(&req.resource, &hash, c).await {
                Ok(seen) => Some(seen),
                Err(e) => {
                    if let Some(w) = waiter {
                        self.leave(w).await?;
                    }
                    return Err(e);
                }
            },
            _ => None,
        };
        let known = waiter.and_then(|w| {
            self.local.with(|l| {
                l.waiting
                    .get(w)
                    .filter(|x| x.lock_id == req.lock_id && x.epoch == epoch)
                    .map(|x| Node {
                        path: x.path.clone(),
                        seq: x.seq,
                        fence: x.fence,
                        created: false,
                        record: x.record.clone(),
                    })
            })
        });
        if let (None, Some(w)) = (&known, waiter) {
            // Queued in a session that is gone: that node went with it; this attempt queues anew.
            self.local.with(|l| l.drop_waiter(w));
        }
        let sent = Instant::now();
        // Known to be at the head (see `Local::free`): no read. Its node could be gone only if someone deleted
        // it behind this process's back (a revoke); its guard then learns so at its first renewal, the claim.
        // (A conditional request reads the queue anyway: what holds ahead of it counts.)
        let free = seen.is_none() && known.is_some() && waiter.is_some_and(|w| self.local.with(|l| l.free.remove(w)));
        let (node, (children, listed)) = match known {
            Some(node) if free => return self.handed(req, waiter, node, left, seen).await,
            Some(node) => {
                let d = &dir;
                let children = self.zk.run(|c| async move { c.get_children(d).await }).await?;
                (node, children)
            }
            None => self.create(req, waiter, &dir).await?,
        };
        let queue = Entry::queue(&children);
        let mine = tag(&req.lock_id);
        if !queue.iter().any(|e| e.seq == node.seq && e.tag == mine) {
            // Our node is gone (expired, or the session was lost): queue again from the back.
            if let Some(w) = waiter {
                self.local.with(|l| l.drop_waiter(w));
            }
            return Ok(None);
        }
        self.drop_orphans(&dir, &queue, &mine, node.seq);
        // A semaphore and a lock never share a name, nor two semaphores with different permits: the head's name
        // says what the resource is in use as.
        if let Some(have) = queue.iter().find(|e| e.tag != mine).map(|e| e.permits) {
            if have != req.permits {
                let p = &node.path;
                self.zk.run(|c| async move { gone_ok(c.delete(p, None).await) }).await?;
                if let Some(w) = waiter {
                    self.local.with(|l| l.drop_waiter(w));
                }
                return Err(crate::error::Error::permits_conflict(&req.resource, have, req.permits));
            }
        }
        let sem = req.kind == LockKind::Semaphore;
        let blocking = if sem {
            sem_blocker(&queue, req.permits, node.seq, &mine)
        } else {
            blocker(&queue, req.kind, node.seq, &mine)
        };
        let Some(ahead) = blocking else {
            if let (Some(r), Some(c), Some(judged)) = (&self.records, &req.condition, seen) {
                let newest = self.newest_ahead(&dir, &queue, node.seq, &mine).await?;
                if let Err(e) = r.newer_ahead(&req.resource, c, judged, newest) {
                    let p = &node.path;
                    self.zk.run(|c| async move { gone_ok(c.delete(p, None).await) }).await?;
                    if let Some(w) = waiter {
                        self.local.with(|l| l.drop_waiter(w));
                    }
                    return Err(e);
                }
            }
            if node.created {
                if let Some(r) = &self.records {
                    let p = &node.path;
                    if !matches!(
                        r.write(&hash, node.fence, seen, !req.kind.is_exclusive(), 1, |m| m
                            .add_check_version(p, -1))
                            .await?,
                        Written::Yes(_)
                    ) {
                        // Its node is gone, or the record moved since it was judged: judged again, from the back.
                        self.zk.run(|c| async move { gone_ok(c.delete(p, None).await) }).await?;
                        if let Some(w) = waiter {
                            self.local.with(|l| l.drop_waiter(w));
                        }
                        return Ok(None);
                    }
                }
                let held = Held {
                    path: node.path,
                    fence: node.fence,
                    version: 0,
                    record: node.record,
                    deadline: Instant::now().max(sent) + req.ttl,
                    release_sent: false,
                };
                return Ok(Some(self.granted(req, waiter, held, req.ttl.min(left))));
            }
            return self.handed(req, waiter, node, left, seen).await;
        };
        // A semaphore's waiter may go when any node ahead of it goes: it watches the directory's children.
        let ahead = if sem {
            format!("{dir}/")
        } else {
            format!("{dir}/{}", ahead.name)
        };
        let head = queue.first().map(|e| format!("{dir}/{}", e.name));
        if waiter.is_none() {
            // A try leaves nothing queued.
            let p = &node.path;
            self.zk.run(|c| async move { gone_ok(c.delete(p, None).await) }).await?;
        }
        self.blocked(req, waiter, node, epoch, ahead, head, (sent, listed.cversion))
            .await
    }

    /// Creates this request's node and lists the queue behind it, in one round trip.
    async fn create(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        dir: &str,
    ) -> Result<(Node, (Vec<String>, Stat))> {
        let record = Record::new(req, waiter);
        let data = record.encode();
        let prefix = format!("{dir}/{}", stem(req.kind, req.permits, &req.lock_id));
        let acls = self.zk.acls();
        let (data, prefix, opts) = (&data, &prefix, &CreateMode::EphemeralSequential.with_acls(acls));
        let dir_opts = &CreateMode::Container.with_acls(acls);
        let made = self
            .zk
            .run(|c: Client| async move {
                for _ in 0..3 {
                    let create = c.create(prefix, data, opts);
                    let list = c.get_children(dir);
                    match futures::join!(create, list) {
                        (Ok((stat, seq)), Ok(children)) => return Ok((stat, seq, children)),
                        (Err(Z::NoNode), _) => match c.create(dir, b"", dir_opts).await {
                            Ok(_) | Err(Z::NodeExists) => continue,
                            Err(e) => return Err(e),
                        },
                        (Err(e), _) | (_, Err(e)) => return Err(e),
                    }
                }
                Err(Z::NoNode)
            })
            .await;
        let (stat, seq, children) = match made {
            Ok(m) => m,
            Err(e) => {
                // The create may have gone through with its answer lost: its node is found and deleted later.
                let name = prefix.rsplit('/').next().unwrap_or_default().to_string();
                self.local.with(|l| l.suspects.push((dir.to_string(), name)));
                return Err(e);
            }
        };
        let node = Node {
            path: format!("{prefix}{seq}"),
            seq: seq.into_i64(),
            fence: stat.czxid,
            created: true,
            record,
        };
        Ok((node, children))
    }

    /// Nodes of this very request from creates whose answer was lost: deleted in the background.
    fn drop_orphans(&self, dir: &str, queue: &[Entry], tag: &str, seq: i64) {
        let orphans: Vec<String> = queue
            .iter()
            .filter(|e| e.tag == tag && e.seq != seq)
            .map(|e| format!("{dir}/{}", e.name))
            .collect();
        if orphans.is_empty() {
            return;
        }
        let zk = self.zk.clone();
        tokio::spawn(async move {
            for p in &orphans {
                let _ = zk.run(|c| async move { gone_ok(c.delete(p, None).await) }).await;
            }
        });
    }

    /// A lease this process just created or was handed: from now on its own, trusted for `trust`.
    pub(super) fn granted(&self, req: &AcquireRequest, waiter: Option<&str>, held: Held, trust: Duration) -> Attempt {
        let acquired = held.record.acquired();
        let grant = Grant::new(held.fence as u64, acquired, acquired + req.ttl);
        self.local.with(|l| {
            if let Some(w) = waiter {
                l.drop_waiter(w);
            }
            l.granted(&req.resource);
            if req.kind.is_exclusive() {
                l.exclusive_held.insert(held.path.clone());
            }
            l.held.insert(req.lock_id.clone(), held);
        });
        Attempt::Granted(grant.found_with(trust))
    }
}
