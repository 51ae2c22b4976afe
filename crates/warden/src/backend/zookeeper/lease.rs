//! Release and renewal on ZooKeeper: one version-checked write to the lease's node. A lease this process did
//! not grant is found by its tag among its resource's nodes, and its lock id checked against the record.

use super::local::Held;
use super::names::{tag, Entry};
use super::session::ZkResult;
use super::ZkBackend;
use crate::backend::queue_record::{now_ms, Record};
use crate::error::{Error, Result};
use crate::types::{Released, Renewal};
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client::Error as Z;

/// What a version-checked write found.
enum Write<T> {
    Done(T),
    /// The node is gone.
    Gone,
    /// The node changed since it was read.
    Changed,
}

fn written<T>(r: ZkResult<T>) -> ZkResult<Write<T>> {
    match r {
        Ok(v) => Ok(Write::Done(v)),
        Err(Z::NoNode) => Ok(Write::Gone),
        Err(Z::BadVersion) => Ok(Write::Changed),
        Err(e) => Err(e),
    }
}

impl ZkBackend {
    /// The lease with this lock id: from this process's table, else read from ZooKeeper. `Err(NotFound)` if no
    /// node has it.
    async fn current(&self, lock_id: &str) -> Result<Held> {
        if let Some(h) = self.local.with(|l| l.held.get(lock_id).cloned()) {
            return Ok(h);
        }
        let not_found = || Error::NotFound {
            lock_id: lock_id.to_string(),
        };
        let dir = Self::dir_of(lock_id).ok_or_else(not_found)?;
        let d = &dir;
        let children = self
            .zk
            .run(|c| async move {
                match c.list_children(d).await {
                    Err(Z::NoNode) => Ok(Vec::new()),
                    other => other,
                }
            })
            .await?;
        let mine = tag(lock_id);
        let entry = Entry::queue(&children)
            .into_iter()
            .find(|e| e.tag == mine)
            .ok_or_else(not_found)?;
        let path = format!("{dir}/{}", entry.name);
        let p = &path;
        let (data, stat) = self.zk.data(p).await?.ok_or_else(not_found)?;
        let record = Record::decode(&data).filter(|r| r.i == lock_id).ok_or_else(not_found)?;
        Ok(Held {
            path,
            fence: stat.czxid,
            version: stat.version,
            record,
            deadline: Instant::now(),
            release_sent: false,
        })
    }

    pub(super) async fn release_now(&self, lock_id: &str, client: Option<&str>) -> Result<Released> {
        let (had, sent) = self.local.with(|l| match l.held.get(lock_id) {
            Some(h) => (Some(h.record.clone()), h.release_sent),
            None => (None, false),
        });
        for _ in 0..3 {
            let h = match (self.current(lock_id).await, &had) {
                // An earlier release of this lease got no answer: it may have been applied.
                (Err(Error::NotFound { .. }), Some(rec)) if sent => return Ok(released(rec)),
                // This process held it and it is gone: it expired or was taken away.
                (Err(Error::NotFound { .. }), Some(rec)) => return Err(rec.lost()),
                (r, _) => r?,
            };
            h.record.check_owner(client)?;
            let (p, v) = (&h.path, h.version);
            self.local.with(|l| l.releasing.insert(h.path.clone()));
            let r = self
                .zk
                .run_counted(|c| async move { written(c.delete(p, Some(v)).await) })
                .await;
            let done = matches!(r, Ok((Write::Done(()), _)));
            if done {
                self.deleted_here(&h.path);
            }
            let answered = r.is_ok();
            self.local.with(|l| {
                l.releasing.remove(&h.path);
                if answered {
                    l.held.remove(lock_id);
                } else if let Some(h) = l.held.get_mut(lock_id) {
                    h.release_sent = true;
                }
            });
            let (r, repeated) = r?;
            match r {
                Write::Done(()) => {
                    let out = released(&h.record);
                    self.local.with(|l| {
                        l.counts.released += 1;
                        l.counts.held_ms += now_ms().saturating_sub(h.record.a);
                    });
                    return Ok(out);
                }
                // A delete repeated after a try with no answer may have been applied by that try.
                Write::Gone if repeated => return Ok(released(&h.record)),
                Write::Gone => return Err(h.record.lost()),
                Write::Changed => {}
            }
        }
        Err(super::session::unavailable(
            &self.zk.opts.address,
            "the lease kept changing under the release; try again",
        ))
    }

    pub(super) async fn renew_now(
        &self,
        lock_id: &str,
        ttl: Option<Duration>,
        client: Option<&str>,
    ) -> Result<Renewal> {
        let had = self.local.with(|l| l.held.get(lock_id).map(|h| h.record.clone()));
        for _ in 0..3 {
            let h = match (self.current(lock_id).await, &had) {
                (Err(Error::NotFound { .. }), Some(rec)) => {
                    self.local.with(|l| l.held.remove(lock_id));
                    return Err(rec.lost());
                }
                (r, _) => r?,
            };
            h.record.check_owner(client)?;
            let Some((next, granted)) = h.record.renewed(ttl) else {
                return Ok(Renewal::Capped {
                    expires_at: h.record.expires(),
                });
            };
            let left = self.zk.session_left()?;
            let (p, v, data) = (&h.path, h.version, &next.encode());
            let sent = Instant::now();
            let r = self
                .zk
                .run(|c| async move {
                    match written(c.set_data(p, data, Some(v)).await)? {
                        // A write repeated after a lost answer finds its own data there.
                        Write::Changed => match c.get_data(p).await {
                            Ok((d, stat)) if d == *data => Ok(Write::Done(stat)),
                            Ok(_) => Ok(Write::Changed),
                            Err(Z::NoNode) => Ok(Write::Gone),
                            Err(e) => Err(e),
                        },
                        other => Ok(other),
                    }
                })
                .await?;
            let stat = match r {
                Write::Done(stat) => stat,
                Write::Gone => {
                    self.local.with(|l| l.held.remove(lock_id));
                    return Err(had.as_ref().unwrap_or(&h.record).lost());
                }
                Write::Changed => {
                    self.local.with(|l| l.held.remove(lock_id));
                    continue;
                }
            };
            let info = next.lease_info(h.fence as u64);
            self.local.with(|l| {
                l.held.insert(
                    lock_id.to_string(),
                    Held {
                        path: h.path.clone(),
                        fence: h.fence,
                        version: stat.version,
                        record: next,
                        deadline: sent + granted,
                        release_sent: false,
                    },
                )
            });
            return Ok(Renewal::Renewed {
                lease: info,
                granted: granted.min(left),
            });
        }
        Err(super::session::unavailable(
            &self.zk.opts.address,
            "the lease kept changing under the renewal; try again",
        ))
    }
}

fn released(rec: &Record) -> Released {
    Released::after(Some(Duration::from_millis(now_ms().saturating_sub(rec.a))))
}
