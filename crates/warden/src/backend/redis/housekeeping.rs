//! Background upkeep of one node: this process's counts added to the shared statistics once a second, a
//! sixteenth of the slots swept for expired leases every `sweep_ms`, and the per-resource counts kept bounded.

use super::counters::Counters;
use super::keys;
use super::reply::{as_i64, as_string, bad, bulk};
use super::{map_err, unavailable};
use crate::error::Result;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::sync::Arc;
use std::time::Duration;

/// Slots visited per sweep call (16 calls cover every slot).
pub(crate) const SWEEP_CHUNK: u16 = 1024;

/// Once a second: add this process's counts to the shared statistics; every `sweep_ms`: sweep the next
/// sixteenth of the slots (a full pass every 16 sweeps) and keep the per-resource counts bounded.
/// A Redis Cluster node's share (the cluster flushes the statistics itself): only the sweep, of the slots the
/// node owns now.
pub(crate) fn spawn(me: Arc<Housekeeper>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut flush = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
        let mut sweep = tokio::time::interval_at(start + every, every);
        let mut next_chunk = 0usize;
        loop {
            tokio::select! {
                _ = flush.tick(), if me.owned.is_none() => {
                    me.flush().await;
                }
                _ = sweep.tick() => {
                    let owned = me.owned.as_ref().map(|o| o.tags());
                    let tags = owned.as_deref().unwrap_or(all_tags());
                    // Sixteen calls cover the slots.
                    let chunk = tags.len().div_ceil(16).clamp(1, SWEEP_CHUNK as usize);
                    let chunks: Vec<&[&str]> = tags.chunks(chunk).collect();
                    if let Some(c) = chunks.get(next_chunk % chunks.len().max(1)) {
                        let _ = me.sweep(c).await;
                    }
                    next_chunk += 1;
                    if me.owned.is_none() && next_chunk % chunks.len().max(1) == 0 {
                        let _ = trim_top(&me.conn, &me.top).await;
                    }
                }
            }
        }
    })
}

/// The slots a Redis Cluster node serves now (kept by the cluster's topology).
#[derive(Debug, Default)]
pub(crate) struct OwnedSlots(std::sync::RwLock<Vec<u16>>);

impl OwnedSlots {
    /// Replaces the node's slots.
    pub(crate) fn set(&self, slots: Vec<u16>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = slots;
    }

    /// The tags of the node's slots.
    pub(crate) fn tags(&self) -> Vec<&'static str> {
        let slots = self.0.read().unwrap_or_else(|e| e.into_inner());
        slots.iter().map(|&s| keys::tag_of_slot(s)).collect()
    }
}

/// The slot tags of every slot, in slot order.
fn all_tags() -> &'static [&'static str] {
    static TAGS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| (0..keys::SLOTS).map(keys::tag_of_slot).collect())
}

/// What the background task needs of the backend.
pub(crate) struct Housekeeper {
    pub conn: ConnectionManager,
    pub inspect: Script,
    pub header: Vec<String>,
    pub counters: Arc<Counters>,
    pub stats: String,
    pub top: String,
    pub address: String,
    pub timeout: Duration,
    /// On a Redis Cluster node: the slots it owns (only those are swept; the cluster flushes the counts).
    pub owned: Option<Arc<OwnedSlots>>,
}

impl Housekeeper {
    /// Runs a view script (`scripts/inspect.lua`) with `args` after the common head.
    pub(crate) async fn view(&self, args: &[&str]) -> Result<Value> {
        let mut inv = self.inspect.prepare_invoke();
        for a in self.header.iter().map(String::as_str).chain(args.iter().copied()) {
            inv.arg(a);
        }
        let mut conn = self.conn.clone();
        tokio::time::timeout(self.timeout, inv.invoke_async::<Value>(&mut conn))
            .await
            .map_err(|_| unavailable(&self.address, format!("no answer within {:?}", self.timeout)))?
            .map_err(|e| map_err(&self.address, e))
    }

    /// Counts leases whose expiry passed in the slots `tags` (as expiries) and returns how many are live there.
    pub(crate) async fn sweep(&self, tags: &[&str]) -> Result<u64> {
        let mut args = vec!["sweep"];
        args.extend_from_slice(tags);
        let v = self.view(&args).await?;
        let Value::Array(items) = &v else {
            return Err(bad("sweep", &v));
        };
        for e in items.get(1..).unwrap_or_default().chunks(3) {
            if let [kind, held, res] = e {
                self.counters.expired(bulk(Some(kind)), as_i64(held).unwrap_or(0));
                tracing::debug!(resource = as_string(res).unwrap_or_default(), "lease expired");
            }
        }
        Ok(items.first().and_then(as_i64).unwrap_or(0).max(0) as u64)
    }

    pub(crate) async fn flush(&self) -> bool {
        self.counters
            .flush(&self.conn, &self.stats, &self.top, self.timeout)
            .await
    }
}

/// Every field of a hash of counters.
pub(crate) async fn hscan_counts(
    conn: &ConnectionManager,
    key: &str,
    timeout: Duration,
) -> redis::RedisResult<Vec<(String, u64)>> {
    let mut conn = conn.clone();
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(key).arg(cursor).arg("COUNT").arg(1000);
        let (next, items): (u64, Vec<(String, u64)>) = tokio::time::timeout(timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        out.extend(items);
        cursor = next;
        if cursor == 0 {
            return Ok(out);
        }
    }
}

/// Keeps the per-resource grant counters bounded: past 10,000 resources, forget all but the 10,000 busiest
/// (once per full sweep pass).
pub(crate) async fn trim_top(conn: &ConnectionManager, key: &str) -> redis::RedisResult<()> {
    let mut c = conn.clone();
    let len: u64 = redis::cmd("HLEN").arg(key).query_async(&mut c).await?;
    if len <= 10_000 {
        return Ok(());
    }
    let mut counts = hscan_counts(conn, key, Duration::from_secs(10)).await?;
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    for chunk in counts[10_000..].chunks(500) {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(key);
        for (k, _) in chunk {
            cmd.arg(k);
        }
        let _: i64 = cmd.query_async(&mut c).await?;
    }
    Ok(())
}
