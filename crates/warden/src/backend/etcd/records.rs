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
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The record's value: `{token, 20 digits}|{granted at}` for a grant of a key made earlier, or `~|{granted at}`
/// for one granted by the very transaction that made its key (the token is then the record's own mod revision).
/// The fixed-width token lets a compare of values tell whose token is newer; `~` sorts after every digit. The
/// time is ms since the epoch on the writing process's clock (etcd has none).
fn value(fence: Option<i64>) -> String {
    match fence {
        Some(f) => format!("{:020}|{}", f.max(0), now_ms()),
        None => format!("~|{}", now_ms()),
    }
}

/// A record's token and time.
fn parse(kv: &etcd_client::KeyValue) -> (u64, u64) {
    let text = String::from_utf8_lossy(kv.value());
    let (f, a) = text.split_once('|').unwrap_or(("~", "0"));
    let fence = f.parse().unwrap_or(kv.mod_revision().max(0) as u64);
    (fence, a.parse().unwrap_or(0))
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

    /// Puts the record of a grant by the transaction this put is part of, which made the grant's key.
    pub fn put_made(&self, hash: &str, lease: i64) -> TxnOp {
        TxnOp::put(
            self.keys.grant(hash),
            value(None),
            Some(PutOptions::new().with_lease(lease)),
        )
    }

    /// Records a grant of the key made at `fence`, in the transaction that claims it. A conditional grant
    /// (`seen`) writes the newer of its token and the one it judged (its transaction finds the record as
    /// judged). Any other writes only if the record names an older token: shared and semaphore holders are not
    /// granted in token order, and the record keeps the newest (no read: a record written before the key was
    /// made is older, and a later one names its token in its value).
    pub fn put_claimed(&self, hash: &str, fence: i64, seen: Option<Seen>, lease: i64) -> TxnOp {
        let key = self.keys.grant(hash);
        let put = |f: i64| TxnOp::put(key.clone(), value(Some(f)), Some(PutOptions::new().with_lease(lease)));
        if let Some(s) = seen {
            return put(fence.max(s.last));
        }
        let older_value = Compare::value(key.clone(), CompareOp::Less, format!("{fence:020}"));
        TxnOp::txn(
            Txn::new()
                .when([Compare::mod_revision(key.clone(), CompareOp::Less, fence)])
                .and_then([put(fence)])
                .or_else([TxnOp::txn(Txn::new().when([older_value]).and_then([put(fence)]))]),
        )
    }

    /// The compare a conditional grant makes: the record as `seen`.
    pub fn unchanged(&self, hash: &str, seen: Seen) -> Compare {
        Compare::mod_revision(self.keys.grant(hash), CompareOp::Equal, seen.rev)
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
        let (fence, at) = parse(kv);
        // Older than the retention period: forgotten, though its lease may keep it a while longer.
        let last = (at + self.retain.as_millis() as u64 > now_ms()).then_some((fence, at * 1000));
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

    /// Commits this grant's own writes (`then`, under `when`) with the record of a grant of `create_rev` (see
    /// [`Records::put_claimed`]), in one transaction. `None` if the grant's own compares failed, or the record
    /// is no longer as a conditional request judged it (`seen`).
    pub(super) async fn with_record(
        &self,
        hash: &str,
        when: impl IntoIterator<Item = Compare>,
        then: impl IntoIterator<Item = TxnOp>,
        create_rev: i64,
        seen: Option<Seen>,
    ) -> Result<Option<TxnResponse>> {
        let mut when: Vec<Compare> = when.into_iter().collect();
        let mut then: Vec<TxnOp> = then.into_iter().collect();
        if let Some(r) = &self.records {
            when.extend(seen.map(|s| r.unchanged(hash, s)));
            then.push(r.put_claimed(hash, create_rev, seen, r.lease().await?));
        }
        let resp = self.etcd.txn(Txn::new().when(when).and_then(then)).await?;
        Ok(resp.succeeded().then_some(resp))
    }
}
