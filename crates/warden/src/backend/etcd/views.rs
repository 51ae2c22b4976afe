//! Operator views on etcd: a lease by lock id, a resource's holders and queue, a client's leases, the
//! shared statistics and each member's health. Holders are the first keys of a queue in create order: the
//! first exclusive key alone, or the shared keys before the first exclusive one.

use super::keys::{resource_hash, Record};
use super::EtcdBackend;
use crate::backend::queue_record::{split, CountRecord, StatsRecord};
use crate::error::Result;
use crate::types::{Health, HealthStatus, LeaseInfo, NodeHealth, QueueEntry, ResourceInfo, Stats};
use etcd_client::{Client, ConnectOptions, GetOptions, KeyValue, SortOrder, SortTarget};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Keys with the records they hold, fenced by create revision.
fn records(kvs: Vec<KeyValue>) -> impl Iterator<Item = (Record, u64)> {
    kvs.into_iter()
        .filter_map(|kv| Record::decode(kv.value()).map(|r| (r, kv.create_revision() as u64)))
}

fn by_create() -> GetOptions {
    GetOptions::new()
        .with_prefix()
        .with_sort(SortTarget::Create, SortOrder::Ascend)
}

impl EtcdBackend {
    /// Every lock key, grouped by resource, each group in queue order.
    async fn all_queues(&self) -> Result<BTreeMap<String, Vec<KeyValue>>> {
        let mut r = self.etcd.get(self.keys.locks(), Some(by_create())).await?;
        let mut groups: BTreeMap<String, Vec<KeyValue>> = BTreeMap::new();
        for kv in r.take_kvs() {
            let key = String::from_utf8_lossy(kv.key()).into_owned();
            if let Some(hash) = self.keys.hash_of(&key) {
                groups.entry(hash.to_string()).or_default().push(kv);
            }
        }
        Ok(groups)
    }

    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let Some(hash) = super::keys::lock_hash(lock_id) else {
            return Ok(None);
        };
        let mut r = self.etcd.get(self.keys.resource(hash), Some(by_create())).await?;
        let (holders, _) = split(records(r.take_kvs()));
        Ok(holders
            .into_iter()
            .find(|(rec, _)| rec.i == lock_id)
            .map(|(rec, fence)| rec.lease_info(fence)))
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let hash = resource_hash(resource);
        let mut r = self.etcd.get(self.keys.resource(&hash), Some(by_create())).await?;
        let (holders, queue) = split(records(r.take_kvs()));
        let holders = holders.into_iter().map(|(rec, fence)| rec.lease_info(fence)).collect();
        let queue = queue
            .into_iter()
            .map(|rec| QueueEntry {
                waiter_id: rec.w.clone().unwrap_or_else(|| crate::lease_handle(&rec.i)),
                client_id: rec.c.clone(),
                kind: rec.kind(),
                ttl: Duration::from_millis(rec.t),
            })
            .collect();
        Ok(ResourceInfo {
            holders,
            foreign_holder: false,
            queue,
        })
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        let mut out = Vec::new();
        for (_, kvs) in self.all_queues().await? {
            let (holders, _) = split(records(kvs));
            out.extend(
                holders
                    .into_iter()
                    .filter(|(rec, _)| rec.c == client_id)
                    .map(|(rec, fence)| rec.lease_info(fence)),
            );
        }
        Ok(out)
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let r = self.etcd.get(self.keys.stats(), None).await?;
        let shared: StatsRecord = r
            .kvs()
            .first()
            .and_then(|kv| serde_json::from_slice(kv.value()).ok())
            .unwrap_or_default();
        // Counts of this process not flushed yet, so a reader sees its own grants at once.
        let mine = self.local.with(|l| l.counts.clone());
        let mut holders = Vec::new();
        for (_, kvs) in self.all_queues().await? {
            holders.extend(split(records(kvs)).0.into_iter().map(|(rec, _)| rec));
        }
        let mut s = mine.stats_with(&shared, &holders);
        if top > 0 {
            let mut r = self
                .etcd
                .get(self.keys.counts(), Some(GetOptions::new().with_prefix()))
                .await?;
            let shared = r
                .take_kvs()
                .into_iter()
                .filter_map(|kv| serde_json::from_slice::<CountRecord>(kv.value()).ok());
            s.top_resources = mine.top(shared, top);
        }
        Ok(s)
    }

    /// Each member given in the URL, asked for its status on its own connection.
    pub(super) async fn view_health(&self) -> Health {
        let timeout = self.etcd.opts.timeout;
        let asks = self.etcd.opts.endpoints.iter().map(|ep| async move {
            let started = Instant::now();
            let ask = async {
                let opts = ConnectOptions::new()
                    .with_connect_timeout(timeout)
                    .with_timeout(timeout);
                let mut c = Client::connect([ep.as_str()], Some(opts)).await?;
                c.status().await
            };
            let address = ep.replace("http://", "");
            match tokio::time::timeout(timeout, ask).await {
                Ok(Ok(_)) => NodeHealth::new(address, true, Some(started.elapsed().as_secs_f64() * 1e3), None),
                Ok(Err(_)) => NodeHealth::new(address, false, None, Some("unreachable".into())),
                Err(_) => NodeHealth::new(address, false, None, Some("no answer in time".into())),
            }
        });
        let nodes = futures::future::join_all(asks).await;
        let up = nodes.iter().filter(|n| n.reachable).count();
        let status = if up == nodes.len() {
            HealthStatus::Healthy
        } else if up > 0 && self.etcd.session_left().is_ok() {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("etcd", status, nodes, None)
    }
}
