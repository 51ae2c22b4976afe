//! The backend's background work: the session keep-alive, the watch that wakes waiters, the sweep that ends
//! this process's overdue leases and abandoned waiters, and the flush of counters into shared statistics.

use super::keys::{resource_hash, Keys};
use super::local::{Counts, Shared};
use super::session::Etcd;
use crate::backend::queue_record::{CountRecord, StatsRecord};
use crate::error::Result;
use crate::wake::WakeRouter;
use etcd_client::{Compare, CompareOp, EventType, Txn, TxnOp, TxnOpResponse, WatchFilterType, WatchOptions};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// How often overdue leases and waiters are looked for.
const SWEEP_EVERY: Duration = Duration::from_millis(20);
/// How often counters are added to the shared statistics (a crash loses at most this much of them).
const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// Resources per statistics transaction (etcd allows 128 operations in one).
const COUNTS_PER_TXN: usize = 60;

/// The running tasks; dropping this stops them and revokes the session.
pub(crate) struct Tasks {
    handles: Vec<JoinHandle<()>>,
    etcd: Arc<Etcd>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let etcd = self.etcd.clone();
            rt.spawn(async move { etcd.close().await });
        }
    }
}

impl Tasks {
    pub async fn start(etcd: Arc<Etcd>, keys: Keys, local: Arc<Shared>, router: Arc<WakeRouter>) -> Result<Self> {
        let r = etcd.get(keys.stats(), None).await?;
        let from = r.header().map_or(0, |h| h.revision()) + 1;
        let handles = vec![
            tokio::spawn(etcd.clone().keep_alive()),
            tokio::spawn(watch(etcd.clone(), keys.clone(), local.clone(), router, from)),
            tokio::spawn(sweep(etcd.clone(), local.clone())),
            tokio::spawn(flush_every(etcd.clone(), keys, local)),
        ];
        Ok(Tasks { handles, etcd })
    }
}

/// Wakes the waiters behind each deleted lock key. One watch for the process, deletions only; when it
/// breaks, every waiter is woken (it may have missed a deletion) and it resumes from the next revision.
async fn watch(etcd: Arc<Etcd>, keys: Keys, local: Arc<Shared>, router: Arc<WakeRouter>, mut from: i64) {
    loop {
        let opts = WatchOptions::new()
            .with_prefix()
            .with_filters([WatchFilterType::NoPut])
            .with_start_revision(from);
        match etcd.client().watch_client().watch(keys.locks(), Some(opts)).await {
            Ok(mut stream) => {
                while let Ok(Some(resp)) = stream.message().await {
                    if resp.canceled() {
                        // Compacted past `from`: start from now; the wake below covers the gap.
                        from = 0;
                        break;
                    }
                    for ev in resp.events() {
                        let Some(kv) = ev.kv().filter(|_| ev.event_type() == EventType::Delete) else {
                            continue;
                        };
                        from = kv.mod_revision() + 1;
                        let key = String::from_utf8_lossy(kv.key());
                        let ids = local.with(|l| l.deleted(&key, kv.mod_revision()));
                        router.wake(ids.iter().map(String::as_str));
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "etcd watch failed"),
        }
        router.wake_all();
        etcd.move_on_from_current();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Deletes this process's leases past their ttl and waiters past their waiter lease, each only if unchanged
/// since this process wrote it.
async fn sweep(etcd: Arc<Etcd>, local: Arc<Shared>) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let (held, waiting) = local.with(|l| l.overdue(Instant::now()));
        for h in held {
            let txn = Txn::new()
                .when([Compare::mod_revision(h.key.clone(), CompareOp::Equal, h.mod_rev)])
                .and_then([TxnOp::delete(h.key, None)]);
            if let Ok(r) = etcd.txn(txn).await {
                if r.succeeded() {
                    local.with(|l| l.counts.expired += 1);
                }
            }
        }
        for (_, w) in waiting {
            let txn = Txn::new()
                .when([Compare::create_revision(w.key.clone(), CompareOp::Equal, w.create_rev)])
                .and_then([TxnOp::delete(w.key.clone(), None)]);
            if etcd.txn(txn).await.is_ok() {
                // Answered: the key at that create revision is gone, whoever deleted it.
                local.with(|l| l.swept_done(&w.key, w.create_rev));
            }
        }
    }
}

async fn flush_every(etcd: Arc<Etcd>, keys: Keys, local: Arc<Shared>) {
    loop {
        tokio::time::sleep(FLUSH_EVERY).await;
        let counts = local.with(|l| std::mem::take(&mut l.counts));
        if counts.grants + counts.expired + counts.released == 0 {
            continue;
        }
        if let Err(e) = flush(&etcd, &keys, &counts).await {
            tracing::debug!(error = %e, "statistics not flushed; kept for the next try");
            local.with(|l| l.counts.add(counts));
        }
    }
}

/// Adds `counts` to the shared statistics, each key by compare-and-swap on its revision.
async fn flush(etcd: &Etcd, keys: &Keys, counts: &Counts) -> Result<()> {
    let total = keys.stats();
    cas(etcd, vec![total], |_, old| {
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
    let per: Vec<(&String, &u64)> = counts.per_resource.iter().collect();
    for chunk in per.chunks(COUNTS_PER_TXN) {
        let names: std::collections::HashMap<String, (&String, u64)> = chunk
            .iter()
            .map(|(r, n)| (format!("{}{}", keys.counts(), resource_hash(r)), (*r, **n)))
            .collect();
        cas(etcd, names.keys().cloned().collect(), |key, old| {
            let (resource, n) = names.get(key).map_or((String::new(), 0), |(r, n)| ((*r).clone(), *n));
            let before = old
                .and_then(|v| serde_json::from_slice::<CountRecord>(v).ok())
                .map_or(0, |c| c.n);
            serde_json::to_vec(&CountRecord {
                r: resource,
                n: before + n,
            })
            .unwrap_or_default()
        })
        .await?;
    }
    Ok(())
}

/// Rewrites `keys` with `f(key, old value)` in one transaction that holds only if none changed since read;
/// tries a few times.
async fn cas(etcd: &Etcd, keys: Vec<String>, f: impl Fn(&str, Option<&[u8]>) -> Vec<u8>) -> Result<()> {
    for _ in 0..5 {
        let read = Txn::new().and_then(keys.iter().map(|k| TxnOp::get(k.clone(), None)).collect::<Vec<_>>());
        let r = etcd.txn(read).await?;
        let found: Vec<Option<etcd_client::KeyValue>> = r
            .op_responses()
            .into_iter()
            .map(|o| match o {
                TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
                _ => None,
            })
            .collect();
        let mut when = Vec::new();
        let mut then = Vec::new();
        for (k, kv) in keys.iter().zip(found.iter()) {
            when.push(Compare::mod_revision(
                k.clone(),
                CompareOp::Equal,
                kv.as_ref().map_or(0, |kv| kv.mod_revision()),
            ));
            then.push(TxnOp::put(k.clone(), f(k, kv.as_ref().map(|kv| kv.value())), None));
        }
        let r = etcd.txn(Txn::new().when(when).and_then(then)).await?;
        if r.succeeded() {
            return Ok(());
        }
    }
    Err(super::session::unavailable(
        &etcd.opts.address,
        "statistics kept changing under the update",
    ))
}
