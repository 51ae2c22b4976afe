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
use etcd_client::{Compare, CompareOp, PutOptions, TxnOp};
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

/// What a conditional request saw: the record's mod revision (0: none), to be found unchanged by the grant.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen(i64);

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

    fn current(&self) -> Option<(i64, Instant)> {
        self.lease.lock().map_or(None, |l| *l)
    }

    /// The lease a record written now hangs on: granted at most `retain` ago, with a ttl of twice that.
    pub async fn lease(&self) -> Result<i64> {
        let now = Instant::now();
        if let Some((id, _)) = self.current().filter(|(_, at)| now < *at + self.retain) {
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

    /// Puts the record of a grant of `fence` (0: the revision of the transaction this put is part of).
    pub fn put(&self, hash: &str, fence: i64, lease: i64) -> TxnOp {
        let v = Value {
            f: fence.max(0) as u64,
            a: now_ms(),
        };
        let bytes = serde_json::to_vec(&v).unwrap_or_default();
        TxnOp::put(self.keys.grant(hash), bytes, Some(PutOptions::new().with_lease(lease)))
    }

    /// The compare a conditional grant makes: the record as `seen`.
    pub fn unchanged(&self, hash: &str, seen: Seen) -> Compare {
        Compare::mod_revision(self.keys.grant(hash), CompareOp::Equal, seen.0)
    }

    /// Reads the resource's record and judges `condition` by it (and the retention period).
    pub async fn judge(&self, resource: &str, hash: &str, condition: &Condition) -> Result<Seen> {
        condition.within_retention(self.retain)?;
        let r = self.etcd.get(self.keys.grant(hash), None).await?;
        let Some(kv) = r.kvs().first() else {
            condition.check_record(resource, None, now_ms() * 1000)?;
            return Ok(Seen(0));
        };
        let v: Value = serde_json::from_slice(kv.value()).unwrap_or_default();
        let fence = if v.f == 0 { kv.mod_revision() as u64 } else { v.f };
        condition.check_record(resource, Some((fence, v.a * 1000)), now_ms() * 1000)?;
        Ok(Seen(kv.mod_revision()))
    }
}
