//! Grant records, for conditional acquires (`?conditions=on`): each resource's last fencing token and when it was
//! granted, in the persistent node `/g/{resource hash}`, written in one multi with what grants (the grant's own
//! node checked, or claimed with a write by a waiter handed the lock). A conditional request reads the record,
//! judges its condition, and is granted only by a multi that finds the record at the version it judged.
//!
//! Recording costs what the default mode saves (a direct grant's one round trip becomes two, a handed lock's
//! read-free claim a write), so it is a setting of the whole ensemble: the first process that connects with
//! `conditions=on` creates `/settings/conditions`, and every process that connects later records too. Records
//! older than the retention period are deleted by a background pass of each recording process.

use super::names::{Entry, GRANTS};
use super::session::Zk;
use crate::backend::queue_record::now_ms;
use crate::condition::Condition;
use crate::error::Result;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use zookeeper_client::{CreateMode, Error as Z, MultiWriteError, MultiWriteResult};

/// The ensemble-wide setting.
pub(super) const SETTINGS: &str = "/settings";
pub(super) const SETTING: &str = "/settings/conditions";

/// The record's data.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Value {
    /// The last fencing token.
    f: u64,
    /// When it was granted, ms since the epoch on the writing process's clock (ZooKeeper offers none).
    a: u64,
}

/// The record as a conditional request judged it: absent, or at a version.
#[derive(Debug, Clone, Copy)]
pub(super) enum Seen {
    Absent,
    Version(i32),
}

/// What a conditional request judged: the record as it saw it, and the last token it names (0: none).
#[derive(Debug, Clone, Copy)]
pub(super) struct Judged {
    pub seen: Seen,
    pub last: i64,
}

/// How a grant's multi ended.
pub(super) enum Written {
    /// Applied: the results of the grant's own operations (the record's come after them).
    Yes(Vec<MultiWriteResult>),
    /// One of the grant's own operations failed (its node is gone or changed).
    Lost,
    /// The record is no longer as the conditional request judged it.
    Moved,
}

pub(super) struct Records {
    zk: Arc<Zk>,
    pub retain: Duration,
}

fn path(hash: &str) -> String {
    format!("{GRANTS}/{hash}")
}

impl Records {
    pub fn new(zk: Arc<Zk>, retain: Duration) -> Self {
        Records { zk, retain }
    }

    /// Reads the resource's record and judges `condition` by it (and the retention period).
    pub async fn judge(&self, resource: &str, hash: &str, condition: &Condition) -> Result<Judged> {
        condition.within_retention(self.retain)?;
        let p = &path(hash);
        let found = self.zk.data(p).await?;
        let now_us = now_ms() * 1000;
        let Some((data, stat)) = found else {
            condition.check_record(resource, None, now_us)?;
            return Ok(Judged {
                seen: Seen::Absent,
                last: 0,
            });
        };
        let v: Value = serde_json::from_slice(&data).unwrap_or_default();
        // A record older than the retention period is as good as gone (the pass that deletes it may be late).
        let last = (v.a + self.retain.as_millis() as u64 > now_ms()).then_some((v.f, v.a * 1000));
        condition.check_record(resource, last, now_us)?;
        Ok(Judged {
            seen: Seen::Version(stat.version),
            last: v.f as i64,
        })
    }

    /// At a conditional grant: a holder ahead of it newer than the record (a shared or semaphore holder that
    /// became one after the condition was judged, its claim not written yet) counts as granted just now.
    pub fn newer_ahead(&self, resource: &str, condition: &Condition, judged: Judged, newest: i64) -> Result<()> {
        if newest > judged.last {
            condition.check_record(resource, Some((newest as u64, now_ms() * 1000)), now_ms() * 1000)?;
        }
        Ok(())
    }

    /// Runs `ops` (the grant's own operations, `n` of them) and the write of the record of a grant of `fence`,
    /// in one multi: the record as `judged` by a conditional request; else, for a grant that may come after a
    /// newer token's (`newest_wins`: shared and semaphore holders are not granted in token order), read first
    /// so that the record keeps the newer token; else whatever it was.
    pub async fn write(
        &self,
        hash: &str,
        fence: i64,
        judged: Option<Judged>,
        newest_wins: bool,
        n: usize,
        ops: impl Fn(&mut zookeeper_client::MultiWriter<'_>) -> std::result::Result<(), Z>,
    ) -> Result<Written> {
        let (p, ops) = (&path(hash), &ops);
        let opts = &CreateMode::Persistent.with_acls(self.zk.acls());
        self.zk
            .run(|c| async move {
                // Without a read: set if it exists, else made (and set again if made meanwhile).
                let mut blind = Seen::Version(-1);
                for _ in 0..4 {
                    let (how, base) = match judged {
                        Some(j) => (j.seen, j.last),
                        None if newest_wins => match c.get_data(p).await {
                            Ok((d, stat)) => {
                                let v: Value = serde_json::from_slice(&d).unwrap_or_default();
                                (Seen::Version(stat.version), v.f as i64)
                            }
                            Err(Z::NoNode) => (Seen::Absent, 0),
                            Err(e) => return Err(e),
                        },
                        None => (blind, 0),
                    };
                    let data = serde_json::to_vec(&Value {
                        f: fence.max(base).max(0) as u64,
                        a: now_ms(),
                    })
                    .unwrap_or_default();
                    let mut m = c.new_multi_writer();
                    ops(&mut m)?;
                    match how {
                        Seen::Absent => m.add_create(p, &data, opts)?,
                        Seen::Version(v) => m.add_set_data(p, &data, (v >= 0).then_some(v))?,
                    }
                    match m.commit().await {
                        Ok(r) => return Ok(Written::Yes(r)),
                        Err(MultiWriteError::OperationFailed { index, .. }) if index < n => return Ok(Written::Lost),
                        Err(MultiWriteError::OperationFailed {
                            source: e @ (Z::NoNode | Z::NodeExists | Z::BadVersion),
                            ..
                        }) => {
                            if judged.is_some() {
                                return Ok(Written::Moved);
                            }
                            blind = if e == Z::NoNode {
                                Seen::Absent
                            } else {
                                Seen::Version(-1)
                            };
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(Written::Moved)
            })
            .await
    }
}

/// Deletes, every retention period, the records older than it (unless written again meanwhile).
pub(super) async fn forget(zk: std::sync::Weak<Zk>, retain: Duration) {
    loop {
        tokio::time::sleep(retain).await;
        let Some(zk) = zk.upgrade() else {
            return;
        };
        let _ = forget_once(&zk, retain).await;
    }
}

async fn forget_once(zk: &Zk, retain: Duration) -> Result<()> {
    let names = zk
        .run(|c| async move {
            match c.list_children(GRANTS).await {
                Err(Z::NoNode) => Ok(Vec::new()),
                other => other,
            }
        })
        .await?;
    let horizon = now_ms().saturating_sub(retain.as_millis() as u64);
    for name in names {
        let p = &format!("{GRANTS}/{name}");
        let _ = zk
            .run(|c| async move {
                let (data, stat) = match c.get_data(p).await {
                    Err(Z::NoNode) => return Ok(()),
                    other => other?,
                };
                let v: Value = serde_json::from_slice(&data).unwrap_or_default();
                if v.a < horizon {
                    match c.delete(p, Some(stat.version)).await {
                        Ok(()) | Err(Z::NoNode | Z::BadVersion) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(())
            })
            .await;
    }
    Ok(())
}

impl super::ZkBackend {
    /// The newest fencing token (czxid) among the entries ahead of `seq` that are not this request's (0: none).
    pub(super) async fn newest_ahead(&self, dir: &str, queue: &[Entry], seq: i64, mine: &str) -> Result<i64> {
        let paths: Vec<String> = queue
            .iter()
            .filter(|e| e.seq < seq && e.tag != mine)
            .map(|e| format!("{dir}/{}", e.name))
            .collect();
        if paths.is_empty() {
            return Ok(0);
        }
        let paths = &paths;
        self.zk
            .run(|c| async move {
                let stats = futures::future::join_all(paths.iter().map(|p| c.check_stat(p))).await;
                let mut newest = 0;
                for s in stats {
                    if let Some(stat) = s? {
                        newest = newest.max(stat.czxid);
                    }
                }
                Ok(newest)
            })
            .await
    }
}
