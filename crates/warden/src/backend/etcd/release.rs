//! The lease core on etcd, ending and extending: leave the queue, release, renew.

use super::batch::{revision_of, Answer, Write};
use super::keys::{lock_hash, now_ms, Record};
use super::local::Held;
use super::EtcdBackend;
use crate::error::{Error, Result};
use crate::types::{LockKind, Released, Renewal};
use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp, TxnOpResponse, TxnResponse};
use std::time::Duration;
use tokio::time::Instant;

impl EtcdBackend {
    pub(super) async fn leave(&self, waiter: &str) -> Result<bool> {
        let Some(w) = self.local.with(|l| l.drop_waiter(waiter)) else {
            return Ok(false);
        };
        let txn = Txn::new()
            .when([Compare::create_revision(w.key.clone(), CompareOp::Equal, w.create_rev)])
            .and_then([TxnOp::delete(w.key.clone(), None)]);
        let r = self.etcd.txn(txn).await?;
        if r.succeeded() {
            self.local.with(|l| l.free_slot(&w.lock_id));
            self.deleted_here(&w.key, revision_of(&r));
        }
        Ok(r.succeeded())
    }

    /// The lease with this lock id: from this process's table, else read from etcd. `Err(NotFound)` if no key.
    async fn current(&self, lock_id: &str) -> Result<Held> {
        if let Some(h) = self.local.with(|l| l.held.get(lock_id).cloned()) {
            return Ok(h);
        }
        let not_found = || Error::NotFound {
            lock_id: lock_id.to_string(),
        };
        let every = self.keys.every(lock_id).ok_or_else(not_found)?;
        let txn = Txn::new().and_then(every.map(|k| TxnOp::get(k, None)));
        let r = self.etcd.txn(txn).await?;
        let kv = first_kv(&r).ok_or_else(not_found)?;
        let record = Record::decode(kv.value())
            .filter(|r| r.i == lock_id)
            .ok_or_else(not_found)?;
        Ok(Held {
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            create_rev: kv.create_revision(),
            mod_rev: kv.mod_revision(),
            record,
            deadline: Instant::now(),
            release_sent: false,
        })
    }

    pub(super) async fn release_now(&self, lock_id: &str, client: Option<&str>) -> Result<Released> {
        let r = self.release_once(lock_id, client).await;
        if matches!(r, Ok(_) | Err(Error::NotFound { .. } | Error::LeaseLost { .. })) {
            // Done with: its key name may serve the next lock id of this process.
            self.local.with(|l| l.free_slot(lock_id));
        }
        r
    }

    async fn release_once(&self, lock_id: &str, client: Option<&str>) -> Result<Released> {
        if lock_hash(lock_id).is_none() {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        }
        let (had, sent) = self.local.with(|l| match l.held.get(lock_id) {
            Some(h) => (Some(h.record.clone()), h.release_sent),
            None => (None, false),
        });
        // A delete that was repeated on another member after a try with no answer, or an earlier release that
        // failed with no answer, may have been applied: then the key being gone is this release's own doing.
        let mut maybe_done: Option<Record> = if sent { had.clone() } else { None };
        for _ in 0..3 {
            let h = match (self.current(lock_id).await, &had, &maybe_done) {
                (Err(Error::NotFound { .. }), _, Some(rec)) => {
                    let held = now_ms().saturating_sub(rec.a);
                    return Ok(Released::after(Some(Duration::from_millis(held))));
                }
                // This process wrote it and it is gone: it expired or was taken away.
                (Err(Error::NotFound { .. }), Some(rec), None) => return Err(rec.lost()),
                (r, _, _) => r?,
            };
            h.record.check_owner(client)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(h.key.clone(), CompareOp::Equal, h.mod_rev)])
                .and_then([TxnOp::delete(h.key.clone(), None)]);
            // An exclusive lease this process was granted is the head of its queue: whoever waits right behind it
            // is at the head once it goes (see `Local::deleted`).
            let own_exclusive = had.is_some() && h.record.kind() == LockKind::Exclusive;
            if own_exclusive {
                self.local.with(|l| l.releasing.insert(h.key.clone()));
            }
            let write = Write {
                hash: lock_hash(lock_id).unwrap_or_default().to_string(),
                key: h.key.clone(),
                creates: false,
                txn,
            };
            let answer = self.batch.run(write).await;
            if let Ok(a) = &answer {
                if a.r.succeeded() {
                    self.deleted_here(&h.key, a.revision);
                }
            }
            self.local.with(|l| {
                l.releasing.remove(&h.key);
                match &answer {
                    Ok(_) => {
                        l.held.remove(lock_id);
                    }
                    Err(_) => {
                        if let Some(h) = l.held.get_mut(lock_id) {
                            h.release_sent = true;
                        }
                    }
                }
            });
            let Answer { r, repeated, .. } = answer?;
            if repeated && !r.succeeded() {
                maybe_done = Some(h.record.clone());
            }
            if r.succeeded() {
                let held = now_ms().saturating_sub(h.record.a);
                self.local.with(|l| {
                    l.counts.released += 1;
                    l.counts.held_ms += held;
                });
                return Ok(Released::after(Some(Duration::from_millis(held))));
            }
        }
        Err(crate::backend::etcd::session::unavailable(
            &self.etcd.opts.address,
            "the lease kept changing under the release; try again",
        ))
    }

    pub(super) async fn renew_now(
        &self,
        lock_id: &str,
        ttl: Option<Duration>,
        client: Option<&str>,
    ) -> Result<Renewal> {
        if lock_hash(lock_id).is_none() {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        }
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
            let (lease, left) = self.etcd.session_left()?;
            let txn = Txn::new()
                .when([Compare::mod_revision(h.key.clone(), CompareOp::Equal, h.mod_rev)])
                .and_then([TxnOp::put(
                    h.key.clone(),
                    next.encode(),
                    Some(PutOptions::new().with_lease(lease)),
                )]);
            let sent = Instant::now();
            let r = self.etcd.txn(txn).await?;
            if !r.succeeded() {
                self.local.with(|l| l.held.remove(lock_id));
                continue;
            }
            let mod_rev = revision_of(&r);
            let info = next.lease_info(h.create_rev as u64);
            self.local.with(|l| {
                l.held.insert(
                    lock_id.to_string(),
                    Held {
                        key: h.key.clone(),
                        create_rev: h.create_rev,
                        mod_rev,
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
        Err(crate::backend::etcd::session::unavailable(
            &self.etcd.opts.address,
            "the lease kept changing under the renewal; try again",
        ))
    }

    /// This process deleted `key`: its own waiters behind it need not wait for the watch to say so.
    pub(super) fn deleted_here(&self, key: &str, rev: i64) {
        let ids = self.local.with(|l| l.deleted(key, rev));
        self.router.wake(ids.iter().map(String::as_str));
    }
}

fn first_kv(r: &TxnResponse) -> Option<KeyValue> {
    r.op_responses().into_iter().find_map(|o| match o {
        TxnOpResponse::Get(mut g) => g.take_kvs().into_iter().next(),
        _ => None,
    })
}
