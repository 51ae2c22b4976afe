//! Operator views on ZooKeeper: a lease by lock id, a resource's holders and queue, a client's leases, the
//! shared statistics and each server's health (its `srvr` answer).

use super::names::{dir, lock_hash, Entry, COUNTS, LOCKS, STATS};
use super::ZkBackend;
use crate::backend::queue_record::{resource_hash, split, CountRecord, Record, StatsRecord};
use crate::error::Result;
use crate::types::{Health, HealthStatus, LeaseInfo, NodeHealth, QueueEntry, ResourceInfo, Stats};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use zookeeper_client::Error as Z;

impl ZkBackend {
    /// The children of `path` (none if it is gone).
    async fn children(&self, path: &str) -> Result<Vec<String>> {
        self.zk
            .run(|c| async move {
                match c.list_children(path).await {
                    Err(Z::NoNode) => Ok(Vec::new()),
                    other => other,
                }
            })
            .await
    }

    /// The data of every path that still exists, with its czxid, in the order given.
    async fn read_all(&self, paths: &[String]) -> Result<Vec<(Vec<u8>, i64)>> {
        self.zk
            .run(|c| async move {
                let reads = paths.iter().map(|p| c.get_data(p));
                let mut out = Vec::new();
                for r in futures::future::join_all(reads).await {
                    match r {
                        Ok((d, stat)) => out.push((d, stat.czxid)),
                        Err(Z::NoNode) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })
            .await
    }

    /// One resource's holders (with their fence) and waiters.
    async fn queue_of(&self, hash: &str) -> Result<(Vec<(Record, u64)>, Vec<Record>)> {
        let d = dir(hash);
        let paths: Vec<String> = Entry::queue(&self.children(&d).await?)
            .into_iter()
            .map(|e| format!("{d}/{}", e.name))
            .collect();
        let records = self
            .read_all(&paths)
            .await?
            .into_iter()
            .filter_map(|(data, czxid)| Record::decode(&data).map(|r| (r, czxid as u64)));
        Ok(split(records))
    }

    /// Every resource's holders.
    async fn all_holders(&self) -> Result<Vec<(Record, u64)>> {
        let mut out = Vec::new();
        for hash in self.children(LOCKS).await? {
            out.extend(self.queue_of(&hash).await?.0);
        }
        Ok(out)
    }

    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let Some(hash) = lock_hash(lock_id) else {
            return Ok(None);
        };
        let (holders, _) = self.queue_of(hash).await?;
        Ok(holders
            .into_iter()
            .find(|(rec, _)| rec.i == lock_id)
            .map(|(rec, fence)| rec.lease_info(fence)))
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let (holders, queue) = self.queue_of(&resource_hash(resource)).await?;
        Ok(ResourceInfo {
            holders: holders.into_iter().map(|(rec, fence)| rec.lease_info(fence)).collect(),
            foreign_holder: false,
            // A try's node (no waiter id) goes again as soon as its try has read the queue: not a waiter.
            queue: queue
                .into_iter()
                .filter_map(|rec| {
                    Some(QueueEntry {
                        kind: rec.kind(),
                        ttl: Duration::from_millis(rec.t),
                        client_id: rec.c,
                        waiter_id: rec.w?,
                    })
                })
                .collect(),
        })
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        Ok(self
            .all_holders()
            .await?
            .into_iter()
            .filter(|(rec, _)| rec.c == client_id)
            .map(|(rec, fence)| rec.lease_info(fence))
            .collect())
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let shared: StatsRecord = self
            .read_all(&[STATS.to_string()])
            .await?
            .first()
            .and_then(|(d, _)| serde_json::from_slice(d).ok())
            .unwrap_or_default();
        // Counts of this process not flushed yet, so a reader sees its own grants at once.
        let mine = self.local.with(|l| l.counts.clone());
        let holders: Vec<Record> = self.all_holders().await?.into_iter().map(|(r, _)| r).collect();
        let mut s = mine.stats_with(&shared, &holders);
        if top > 0 {
            let paths: Vec<String> = self
                .children(COUNTS)
                .await?
                .iter()
                .map(|h| format!("{COUNTS}/{h}"))
                .collect();
            let counts = self
                .read_all(&paths)
                .await?
                .into_iter()
                .filter_map(|(d, _)| serde_json::from_slice::<CountRecord>(&d).ok());
            s.top_resources = mine.top(counts, top);
        }
        Ok(s)
    }

    /// Each server given in the URL, asked `srvr` on its own connection: reachable and serving, its mode.
    pub(super) async fn view_health(&self) -> Health {
        let timeout = self.zk.opts.timeout;
        let asks = self.zk.opts.hosts.iter().map(|host| async move {
            let started = Instant::now();
            let ask = async {
                let mut s = tokio::net::TcpStream::connect(host.as_str()).await?;
                s.write_all(b"srvr").await?;
                let mut out = String::new();
                s.read_to_string(&mut out).await?;
                Ok::<_, std::io::Error>(out)
            };
            match tokio::time::timeout(timeout, ask).await {
                Ok(Ok(out)) if out.contains("Mode:") || out.contains("whitelist") => {
                    NodeHealth::new(host.clone(), true, Some(started.elapsed().as_secs_f64() * 1e3), None)
                }
                Ok(Ok(_)) => NodeHealth::new(host.clone(), false, None, Some("not serving requests".into())),
                Ok(Err(_)) => NodeHealth::new(host.clone(), false, None, Some("unreachable".into())),
                Err(_) => NodeHealth::new(host.clone(), false, None, Some("no answer in time".into())),
            }
        });
        let nodes = futures::future::join_all(asks).await;
        let up = nodes.iter().filter(|n| n.reachable).count();
        let status = if up == nodes.len() && self.zk.session_left().is_ok() {
            HealthStatus::Healthy
        } else if up > 0 && self.zk.session_left().is_ok() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("zookeeper", status, nodes, None)
    }
}
