//! Which primary serves which slot, kept current: read with `CLUSTER SLOTS` at connect, again when a call on a
//! slot fails (a failover, a moved slot) and every few seconds. A primary seen for the first time is connected
//! as a cluster node of the single-node backend, so each primary gets its own group commit.

use super::url::ClusterUrl;
use crate::backend::redis::counters::Counters;
use crate::backend::redis::housekeeping::OwnedSlots;
use crate::backend::redis::keys::SLOTS;
use crate::backend::redis::RedisBackend;
use crate::error::{Error, Result};
use crate::wake::WakeRouter;
use futures::FutureExt;
use redis::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a refresh that just ran stands for the next caller that asks for one.
const MIN_REFRESH_GAP: Duration = Duration::from_millis(50);
/// How often the map is read when nothing failed.
pub(super) const REFRESH_EVERY: Duration = Duration::from_secs(5);

/// One primary.
pub(super) struct Node {
    pub address: String,
    /// The connection to it; none when it could not be reached.
    pub backend: Option<Arc<RedisBackend>>,
    /// Why it could not be reached.
    pub error: Option<String>,
    owned: Arc<OwnedSlots>,
}

impl Node {
    /// Its connection, or why it has none (the error a call to it would have failed with).
    pub fn connected(&self) -> Result<Arc<RedisBackend>> {
        self.backend.clone().ok_or_else(|| Error::BackendUnavailable {
            address: self.address.clone(),
            reason: self.error.clone().unwrap_or_default(),
        })
    }
}

/// The slot map at one moment.
pub(super) struct Map {
    pub version: u64,
    /// Index into `nodes` per slot (`u16::MAX`: no primary serves it).
    slots: Vec<u16>,
    pub nodes: Vec<Arc<Node>>,
}

impl Map {
    /// The slots whose primary differs between `self` and `other`.
    pub fn moved_since(&self, other: &Map) -> Vec<u16> {
        (0..SLOTS)
            .filter(|&s| self.node_of(s).map(|n| &n.address) != other.node_of(s).map(|n| &n.address))
            .collect()
    }

    /// The primary of `slot`, if one serves it.
    pub fn node_of(&self, slot: u16) -> Option<&Arc<Node>> {
        self.nodes.get(*self.slots.get(slot as usize)? as usize)
    }
}

pub(super) struct Topology {
    pub url: ClusterUrl,
    router: Arc<WakeRouter>,
    counters: Arc<Counters>,
    /// The map now; receivers see each new one.
    map: tokio::sync::watch::Sender<Arc<Map>>,
    /// Held while the map is read; the time of the last reading.
    refreshing: tokio::sync::Mutex<Option<Instant>>,
}

impl Topology {
    /// Reads the slot map from the seeds and connects every primary.
    pub async fn connect(url: ClusterUrl, router: Arc<WakeRouter>, counters: Arc<Counters>) -> Result<Arc<Self>> {
        let me = Arc::new(Topology {
            url,
            router,
            counters,
            map: tokio::sync::watch::Sender::new(Arc::new(Map {
                version: 0,
                slots: vec![u16::MAX; SLOTS as usize],
                nodes: Vec::new(),
            })),
            refreshing: tokio::sync::Mutex::new(None),
        });
        me.refresh(0).await?;
        Ok(me)
    }

    /// The map now.
    pub fn current(&self) -> Arc<Map> {
        self.map.borrow().clone()
    }

    /// Each new map, as it is read.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<Arc<Map>> {
        self.map.subscribe()
    }

    /// Reads the map again, unless it was read since the caller saw version `seen` or less than 50 ms ago.
    pub async fn refresh(&self, seen: u64) -> Result<()> {
        let mut last = self.refreshing.lock().await;
        if self.current().version != seen || last.is_some_and(|t| t.elapsed() < MIN_REFRESH_GAP) {
            return Ok(());
        }
        let ranges = self.read_slots().await;
        *last = Some(Instant::now());
        let ranges = ranges?;
        let old = self.current();
        let mut by_addr: HashMap<&str, Arc<Node>> = old
            .nodes
            .iter()
            .filter(|n| n.backend.is_some())
            .map(|n| (n.address.as_str(), n.clone()))
            .collect();
        let mut nodes: Vec<Arc<Node>> = Vec::new();
        let mut owned: Vec<Vec<u16>> = Vec::new();
        let mut slots = vec![u16::MAX; SLOTS as usize];
        for (start, end, address) in &ranges {
            let i = match nodes.iter().position(|n| &n.address == address) {
                Some(i) => i,
                None => {
                    let node = match by_addr.remove(address.as_str()) {
                        Some(n) => n,
                        None => Arc::new(self.connect_node(address).await),
                    };
                    nodes.push(node);
                    owned.push(Vec::new());
                    nodes.len() - 1
                }
            };
            for s in *start..=*end {
                slots[s as usize] = i as u16;
                owned[i].push(s);
            }
        }
        for (n, o) in nodes.iter().zip(owned) {
            n.owned.set(o);
        }
        self.map.send_replace(Arc::new(Map {
            version: old.version + 1,
            slots,
            nodes,
        }));
        Ok(())
    }

    async fn connect_node(&self, address: &str) -> Node {
        let owned = Arc::new(OwnedSlots::default());
        let r = RedisBackend::connect_cluster_node(
            &self.url.node_url(address),
            self.router.clone(),
            self.counters.clone(),
            owned.clone(),
        )
        .await;
        match r {
            Ok(b) => Node {
                address: address.to_string(),
                backend: Some(Arc::new(b)),
                error: None,
                owned,
            },
            Err(e) => Node {
                address: address.to_string(),
                backend: None,
                error: Some(e.to_string()),
                owned,
            },
        }
    }

    /// `CLUSTER SLOTS` from the first node that answers: the connected primaries, else the seeds.
    async fn read_slots(&self) -> Result<Vec<(u16, u16, String)>> {
        let timeout = self.url.opts.timeout;
        let asked: Vec<_> = self
            .current()
            .nodes
            .iter()
            .filter_map(|n| n.backend.as_ref().map(|b| b.connection()))
            .map(|mut c| {
                async move {
                    let v = tokio::time::timeout(timeout, redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut c))
                        .await
                        .map_err(|_| "no answer".to_string())?
                        .map_err(|e| e.to_string())?;
                    parse_slots(&v)
                }
                .boxed()
            })
            .collect();
        if !asked.is_empty() {
            if let Ok((ranges, _)) = futures::future::select_ok(asked).await {
                return Ok(ranges);
            }
        }
        let seeds: Vec<_> = self
            .url
            .seeds
            .iter()
            .map(|seed| {
                async move {
                    let url = self.url.driver_url(seed).map_err(|e| e.to_string())?;
                    let client =
                        crate::backend::redis::open_client(&url, seed, &self.url.opts).map_err(|e| e.to_string())?;
                    let ask = async {
                        let mut c = client.get_multiplexed_async_connection().await?;
                        redis::cmd("CLUSTER").arg("SLOTS").query_async::<Value>(&mut c).await
                    };
                    let v = tokio::time::timeout(timeout, ask)
                        .await
                        .map_err(|_| format!("{seed}: no answer within {timeout:?}"))?
                        .map_err(|e| format!("{seed}: {e}"))?;
                    parse_slots(&v).map_err(|e| format!("{seed}: {e}"))
                }
                .boxed()
            })
            .collect();
        match futures::future::select_ok(seeds).await {
            Ok((ranges, _)) => Ok(ranges),
            Err(e) => Err(Error::BackendUnavailable {
                address: self.url.address.clone(),
                reason: format!("no node answered CLUSTER SLOTS (last: {e})"),
            }),
        }
    }
}

/// `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]` as (start, end, "host:port").
fn parse_slots(v: &Value) -> std::result::Result<Vec<(u16, u16, String)>, String> {
    let bad = || format!("unexpected CLUSTER SLOTS reply: {v:?}");
    let Value::Array(ranges) = v else { return Err(bad()) };
    let mut out = Vec::new();
    for r in ranges {
        let Value::Array(r) = r else { return Err(bad()) };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(primary))) =
            (r.first(), r.get(1), r.get(2))
        else {
            return Err(bad());
        };
        let host = match primary.first() {
            Some(Value::BulkString(h)) => String::from_utf8_lossy(h).into_owned(),
            Some(Value::SimpleString(h)) => h.clone(),
            _ => return Err(bad()),
        };
        let Some(Value::Int(port)) = primary.get(1) else {
            return Err(bad());
        };
        let range = 0..i64::from(SLOTS);
        if !range.contains(start) || !range.contains(end) || start > end {
            return Err(bad());
        }
        out.push((*start as u16, *end as u16, format!("{host}:{port}")));
    }
    if out.is_empty() {
        return Err("the cluster serves no slot yet".into());
    }
    Ok(out)
}
