//! Grant records, for conditional acquires (`?conditions=on`): each resource's last fencing token and when it was
//! granted, in `{prefix}g/{resource hash}`, written in the same transaction as every grant (a waiter handed
//! the lock claims it with a write that carries the record). A conditional request reads the record, judges its
//! condition, and is granted only by a transaction that finds the record unchanged since.
//!
//! Recording costs what the default mode saves: a waiter whose turn came takes the lock with a read only, and a
//! record makes that a write. So it is a setting of the whole store: the first process that connects with
//! `conditions=on` writes `{prefix}settings/conditions`, and every process that connects later records too.
//!
//! A record hangs on an etcd lease of twice the retention period, and a process takes a new such lease once its
//! current one is older than the retention period, so a record lives at least `retain` after its last write
//! and a resource leaves nothing behind for long.

use super::keys::{now_ms, Keys};
use super::session::Etcd;
use crate::condition::Condition;
use crate::error::Result;
use crate::types::AcquireRequest;
use etcd_client::{Compare, CompareOp, PutOptions, TxnOp};
use etcd_client::{Txn, TxnResponse};
use serde::{Deserialize, Serialize};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The record's value.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Value {
    /// The last fencing token; 0: the record's own mod revision (written by the very transaction that made the
    /// key, whose create revision is the token).
    #[serde(default)]
    f: u64,
    /// When it was granted, ms since the epoch on the writing process's clock (etcd has none).
    a: u64,
}

/// The record as read: its mod revision (0: none), to be found unchanged by the grant that writes it, and the
/// last token it names (0: none).
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    rev: i64,
    pub last: i64,
}

pub(super) struct Records {
    etcd: Arc<Etcd>,
    keys: Keys,
    pub retain: Duration,
    lease: Mutex<Option<(i64, Instant)>>,
}

impl Records {
    pub fn new(etcd: Arc<Etcd>, keys: Keys, retain: Duration) -> Self {
        Records {
            etcd,
            keys,
            retain,
            lease: Mutex::new(None),
        }
    }

    fn current_lease(&self) -> Option<(i64, Instant)> {
        self.lease.lock().map_or(None, |l| *l)
    }

    /// The lease a record written now hangs on: granted at most `retain` ago, with a ttl of twice that.
    pub async fn lease(&self) -> Result<i64> {
        let now = Instant::now();
        if let Some((id, _)) = self.current_lease().filter(|(_, at)| now < *at + self.retain) {
            return Ok(id);
        }
        let ttl = (2 * self.retain).as_secs() as i64 + 1;
        let r = self
            .etcd
            .call(|c| async move { c.lease_client().grant(ttl, None).await })
            .await?;
        if let Ok(mut l) = self.lease.lock() {
            *l = Some((r.id(), now));
        }
        Ok(r.id())
    }

    /// Puts the record of a grant of `fence` (0: the revision of the transaction this put is part of), or of
    /// the token the record named when read (`seen`), if newer: shared and semaphore holders are not granted
    /// in token order, and the record keeps the newest.
    pub fn put(&self, hash: &str, fence: i64, seen: Option<Seen>, lease: i64) -> TxnOp {
        let fence = match seen {
            Some(s) if fence > 0 => fence.max(s.last),
            _ => fence,
        };
        let v = Value {
            f: fence.max(0) as u64,
            a: now_ms(),
        };
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        TxnOp::put(self.keys.grant(hash), bytes, Some(PutOptions::new().with_lease(lease)))
    }

    /// The compare a conditional grant makes: the record as `seen`.
    pub fn unchanged(&self, hash: &str, seen: Seen) -> Compare {
        Compare::mod_revision(self.keys.grant(hash), CompareOp::Equal, seen.rev)
    }

    /// Reads the resource's record.
    pub async fn current(&self, hash: &str) -> Result<Seen> {
        let r = self.etcd.get(self.keys.grant(hash), None).await?;
        Ok(r.kvs().first().map_or(Seen { rev: 0, last: 0 }, |kv| {
            let v: Value = serde_json::from_slice(kv.value()).unwrap_or_default();
            let last = if v.f == 0 { kv.mod_revision() } else { v.f as i64 };
            Seen {
                rev: kv.mod_revision(),
                last,
            }
        }))
    }

    /// The compare a conditional grant that writes its key makes: no key of the resource is newer than the
    /// record's token (a shared or semaphore holder granted since, its claim not written yet).
    pub fn none_newer(&self, hash: &str, seen: Seen) -> Compare {
        let (start, end) = (self.keys.resource(hash), format!("{}l/{hash}0", self.keys.prefix));
        Compare::create_revision(start, CompareOp::Less, seen.last + 1).with_range(end)
    }

    /// At a conditional grant of the key made at `mine` (or of a key not made yet): whether a key of the
    /// resource newer than the record's token is ahead of it; such a holder counts as granted just now.
    pub async fn newer_ahead(
        &self,
        resource: &str,
        hash: &str,
        condition: &Condition,
        seen: Seen,
        mine: i64,
    ) -> Result<()> {
        let end = format!("{}l/{hash}0", self.keys.prefix);
        let mut o = etcd_client::GetOptions::new()
            .with_range(end)
            .with_min_create_revision(seen.last + 1)
            .with_sort(etcd_client::SortTarget::Create, etcd_client::SortOrder::Descend)
            .with_limit(1)
            .with_keys_only();
        if mine > 0 {
            o = o.with_max_create_revision(mine - 1);
        }
        let r = self.etcd.get(self.keys.resource(hash), Some(o)).await?;
        if let Some(kv) = r.kvs().first() {
            let now = now_ms() * 1000;
            condition.check_record(resource, Some((kv.create_revision() as u64, now)), now)?;
        }
        Ok(())
    }

    /// Reads the resource's record and judges `condition` by it (and the retention period).
    pub async fn judge(&self, resource: &str, hash: &str, condition: &Condition) -> Result<Seen> {
        condition.within_retention(self.retain)?;
        let r = self.etcd.get(self.keys.grant(hash), None).await?;
        let Some(kv) = r.kvs().first() else {
            condition.check_record(resource, None, now_ms() * 1000)?;
            return Ok(Seen { rev: 0, last: 0 });
        };
        let v: Value = serde_json::from_slice(kv.value()).unwrap_or_default();
        let fence = if v.f == 0 { kv.mod_revision() as u64 } else { v.f };
        // Older than the retention period: forgotten, though its lease may keep it a while longer.
        let last = (v.a + self.retain.as_millis() as u64 > now_ms()).then_some((fence, v.a * 1000));
        condition.check_record(resource, last, now_ms() * 1000)?;
        Ok(Seen {
            rev: kv.mod_revision(),
            last: fence as i64,
        })
    }
}

impl super::EtcdBackend {
    /// For a conditional request about to be granted (its key made at `mine`, or not made yet: 0): fails with
    /// the condition's error, after deleting its key, if a key newer than the record is ahead of it.
    pub(super) async fn none_newer_ahead(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        hash: &str,
        key: &str,
        seen: Option<Seen>,
        mine: i64,
    ) -> Result<()> {
        let (Some(r), Some(c), Some(s)) = (&self.records, &req.condition, seen) else {
            return Ok(());
        };
        if let Err(e) = r.newer_ahead(&req.resource, hash, c, s, mine).await {
            if let Some(w) = waiter {
                self.local.with(|l| l.drop_waiter(w));
            }
            self.etcd.txn(Txn::new().and_then([TxnOp::delete(key, None)])).await?;
            return Err(e);
        }
        Ok(())
    }

    /// Commits this grant's own writes (`then`, under `when`) with the record of a grant of `create_rev`: the
    /// record as a conditional request judged it (`seen`), or, for a kind whose holders are not granted in
    /// token order, as read just before (so that it keeps the newest token), or whatever it was. `None` if
    /// the grant's own compares failed, or the record is no longer as judged.
    pub(super) async fn with_record(
        &self,
        req: &AcquireRequest,
        hash: &str,
        when: impl IntoIterator<Item = Compare>,
        then: impl IntoIterator<Item = TxnOp>,
        create_rev: i64,
        seen: Option<Seen>,
    ) -> Result<Option<TxnResponse>> {
        let (when, then): (Vec<Compare>, Vec<TxnOp>) = (when.into_iter().collect(), then.into_iter().collect());
        let Some(r) = &self.records else {
            let r = self.etcd.txn(Txn::new().when(when).and_then(then)).await?;
            return Ok(r.succeeded().then_some(r));
        };
        let newest_wins = !req.kind.is_exclusive();
        for _ in 0..4 {
            let base = match seen {
                Some(s) => Some(s),
                None if newest_wins => Some(r.current(hash).await?),
                None => None,
            };
            let mut w = when.clone();
            w.extend(base.map(|s| r.unchanged(hash, s)));
            let mut t = then.clone();
            t.push(r.put(hash, create_rev, base, r.lease().await?));
            let resp = self.etcd.txn(Txn::new().when(w).and_then(t)).await?;
            if resp.succeeded() {
                return Ok(Some(resp));
            }
            if seen.is_some() || !newest_wins {
                return Ok(None);
            }
        }
        Ok(None)
    }
}
