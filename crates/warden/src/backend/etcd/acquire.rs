//! The lease core on etcd, acquiring: an attempt is one transaction in the common case; what a grant is made of.

use super::batch::{revision_of, Write};
use super::keys::{resource_hash, Record};
use super::local::Held;
use super::EtcdBackend;
use crate::error::{Error, Result};
use crate::types::{AcquireRequest, Attempt, Grant, LockKind};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse,
};
use std::time::Duration;
use tokio::time::Instant;

/// The key ahead that blocks a request, and the head of its queue.
pub(super) struct Queue {
    pub(super) blocker: Option<KeyValue>,
    pub(super) head: Option<KeyValue>,
    /// The store's revision the reads saw.
    pub(super) revision: i64,
    /// When the attempt that read it was sent.
    pub(super) sent: Instant,
}

impl EtcdBackend {
    pub(super) async fn attempt_now(&self, req: &AcquireRequest, waiter: Option<&str>) -> Result<Attempt> {
        let _attempting = waiter.map(|w| self.local.attempting(w, req.waiter_lease));
        // A head found expired is deleted and the attempt made again, at most twice.
        for _ in 0..3 {
            if let Some(done) = self.attempt_once(req, waiter).await? {
                if waiter.is_none() && matches!(done, Attempt::NotGranted { .. }) {
                    // A try that failed is done with, and left no key.
                    self.local.with(|l| l.free_slot(&req.lock_id));
                }
                return Ok(done);
            }
        }
        Ok(Attempt::NotGranted {
            retry_in: Some(Duration::from_millis(1)),
            backend_now: None,
        })
    }

    async fn attempt_once(&self, req: &AcquireRequest, waiter: Option<&str>) -> Result<Option<Attempt>> {
        let (lease, left) = self.etcd.session_left()?;
        let epoch = self.etcd.session().epoch;
        let hash = resource_hash(&req.resource);
        let key = self.keys.member(&hash, req.kind, &req.lock_id);
        // A store that records grants: the lease its records hang on, and what a conditional request saw.
        let recording = match &self.records {
            Some(r) => Some(r.lease().await?),
            None => None,
        };
        let seen = match (&self.records, &req.condition) {
            (Some(r), Some(c)) => match r.judge(&req.resource, &hash, c).await {
                Ok(seen) => Some(seen),
                Err(e) => {
                    if let Some(w) = waiter {
                        // Not granted, and never will be: a key this waiter queued goes (its name is its own).
                        self.local.with(|l| l.drop_waiter(w));
                        self.etcd
                            .txn(Txn::new().and_then([TxnOp::delete(key.clone(), None)]))
                            .await?;
                    }
                    return Err(e);
                }
            },
            _ => None,
        };
        let record = Record::new(req, waiter);
        let put = TxnOp::put(key.clone(), record.encode(), Some(PutOptions::new().with_lease(lease)));
        let all = self.keys.resource(&hash);
        let sem = req.kind == LockKind::Semaphore;
        let permits = i64::from(req.permits);
        // What blocks this request: any key ahead (exclusive), a key ahead of a kind it is not compatible with
        // (shared, intentions), as many keys ahead as permits (a semaphore).
        let (blocking, blocking_end) = self.keys.blocking(&hash, req.kind);
        let head = TxnOp::get(
            all.clone(),
            Some(
                GetOptions::new()
                    .with_prefix()
                    .with_sort(SortTarget::Create, SortOrder::Ascend)
                    .with_limit(1),
            ),
        );
        let known = waiter.and_then(|w| {
            self.local.with(|l| {
                l.waiting
                    .get(w)
                    .filter(|x| x.key == key && x.session_epoch == epoch)
                    .map(|x| x.create_rev)
            })
        });
        // Known to be at the head (see `Local::free`): no read. Its key could be gone only if someone deleted it
        // behind this process's back (a revoke); its guard then learns so at its first renewal.
        if let (Some(c), Some(w), None) = (known, waiter, seen) {
            if self.local.with(|l| l.free.remove(w)) {
                return self.handed(req, w, key, c, None, record, left, seen).await;
            }
        }
        let behind = |max_create: Option<i64>, limit: i64| {
            let mut o = GetOptions::new()
                .with_range(blocking_end.clone())
                .with_sort(SortTarget::Create, SortOrder::Descend)
                .with_limit(limit)
                .with_keys_only();
            if let Some(c) = max_create {
                o = o.with_max_create_revision(c);
            }
            TxnOp::get(blocking.clone(), Some(o))
        };
        let txn = match known {
            // Queued before: read the queue, no write (a read costs etcd no disk sync). If nothing is ahead any
            // more, the lock is this waiter's (see `handed`).
            Some(c) => Txn::new()
                .when([Compare::create_revision(key.clone(), CompareOp::Equal, c)])
                .and_then([
                    head,
                    TxnOp::get(key.clone(), None),
                    behind(Some(c - 1), if sem { permits } else { 1 }),
                ]),
            // A semaphore's request always writes its key (whether it is granted depends on how many are ahead,
            // which no compare can say), reads the keys ahead, and a try that is not granted deletes its key.
            None if sem => {
                let absent = Compare::version(key.clone(), CompareOp::Equal, 0);
                Txn::new().and_then([
                    TxnOp::txn(Txn::new().when([absent]).and_then([put])),
                    head,
                    TxnOp::get(key.clone(), None),
                    behind(None, permits + 1),
                ])
            }
            // New: granted at once if nothing blocks it; else queued (a waiter) or nothing written (a try).
            None => {
                let free = Compare::version(blocking.clone(), CompareOp::Equal, 0).with_range(blocking_end.clone());
                let absent = Compare::version(key.clone(), CompareOp::Equal, 0);
                // Shared leases never join a semaphore's holders (an exclusive request sees every key anyway).
                let no_semaphore = Compare::version(self.keys.semaphore(&hash), CompareOp::Equal, 0).with_prefix();
                // Queued (a waiter), or nothing written (a try). Either way read this request's own key: a
                // first try that went through before its answer was lost left it there.
                let mut queued = Vec::new();
                if waiter.is_some() {
                    queued.push(TxnOp::txn(Txn::new().when([absent.clone()]).and_then([put.clone()])));
                }
                queued.extend([head, TxnOp::get(key.clone(), None), behind(None, 2)]);
                let mut when = vec![free, absent];
                if !req.kind.is_exclusive() {
                    when.push(no_semaphore);
                }
                let mut grant = vec![put];
                if let (Some(r), Some(lease)) = (&self.records, recording) {
                    grant.push(r.put_made(&hash, lease));
                    if let Some(s) = seen {
                        when.extend([r.unchanged(&hash, s), r.none_newer(&hash, s)]);
                    }
                }
                Txn::new().when(when).and_then(grant).or_else(queued)
            }
        };
        let sent = Instant::now();
        // A new key goes with the process's other writes (see `batch`), unless it compares a record.
        let (r, revision) = if known.is_none() && recording.is_none() {
            let write = Write {
                hash: hash.clone(),
                key: key.clone(),
                creates: true,
                txn,
            };
            let a = self.batch.run(write).await?;
            (a.r, a.revision)
        } else {
            let r = self.etcd.txn(txn).await?;
            let revision = revision_of(&r);
            (r, revision)
        };
        match (known, r.succeeded()) {
            (None, true) if !sem => {
                let attempt = self.written(req, waiter, key.clone(), (revision, revision), record, sent, left);
                return self.claimed(attempt, &key, revision).await;
            }
            (Some(_), false) => {
                // Our key is gone (expired, revoked, or the session was lost): queue again from the back.
                if let Some(w) = waiter {
                    self.local.with(|l| l.drop_waiter(w));
                }
                return Ok(None);
            }
            _ => {}
        }
        let mut gets = r.op_responses().into_iter().filter_map(|o| match o {
            TxnOpResponse::Get(mut g) => Some(g.take_kvs()),
            _ => None,
        });
        let head = gets.next().and_then(|v| v.into_iter().next());
        // This request's key, if it holds this request (a key name serves one lock id of a process at a time).
        let mine = gets
            .next()
            .and_then(|v| v.into_iter().next())
            .filter(|kv| Record::decode(kv.value()).is_some_and(|r| r.i == req.lock_id));
        let blockers = gets.next().unwrap_or_default();
        let create_rev = known.or(mine.as_ref().map(KeyValue::create_revision));
        // A semaphore and a lock never share a name, nor two semaphores with different permits: the head says
        // what the resource is in use as.
        if let Some(have) = head
            .as_ref()
            .filter(|h| h.key() != key.as_bytes())
            .and_then(|h| Record::decode(h.value()))
            .map(|r| crate::types::stored_permits(&r.k))
        {
            if have != req.permits {
                if let Some(kv) = &mine {
                    self.delete_unchanged(&key, kv.create_revision()).await?;
                }
                if let Some(w) = waiter {
                    self.local.with(|l| l.drop_waiter(w));
                }
                return Err(Error::permits_conflict(&req.resource, have, req.permits));
            }
        }
        let mut ahead = blockers
            .into_iter()
            .filter(|kv| Some(kv.create_revision()) < create_rev && kv.key() != key.as_bytes());
        let blocker = if sem {
            // Blocked while as many keys as permits are ahead.
            let ahead: Vec<KeyValue> = ahead.collect();
            if ahead.len() as i64 >= permits {
                ahead.into_iter().last()
            } else {
                None
            }
        } else {
            ahead.next()
        };
        if blocker.is_none() {
            if let (Some(c), Some(w), Some(kv)) = (known, waiter, &mine) {
                return self.handed(req, w, key, c, Some(kv), record, left, seen).await;
            }
            if let Some(kv) = &mine {
                // Our own key (a semaphore's, a waiter's just queued, or a first try's whose answer was lost),
                // and nothing ahead of it.
                let stored = Record::decode(kv.value()).unwrap_or(record);
                let (c, m) = (kv.create_revision(), kv.mod_revision());
                if recording.is_some() {
                    self.none_newer_ahead(req, waiter, &hash, &key, seen, c).await?;
                    let own = [Compare::create_revision(key.clone(), CompareOp::Equal, c)];
                    if self.with_record(&hash, own, [], c, seen).await?.is_none() {
                        if waiter.is_none() {
                            // A try's key goes with the try (its name may serve this process's next lock id).
                            self.delete_unchanged(&key, c).await?;
                        }
                        return Ok(None);
                    }
                }
                let attempt = self.written(req, waiter, key.clone(), (c, m), stored, sent, left);
                return self.claimed(attempt, &key, c).await;
            }
            if seen.is_some() && known.is_none() {
                // Nothing blocks it, yet it was not granted: a holder newer than the record is ahead of it (the
                // condition fails), or the record changed since it was judged (judged again).
                self.none_newer_ahead(req, waiter, &hash, &key, seen, 0).await?;
                return Ok(None);
            }
        }
        if let (None, Some(kv)) = (waiter, &mine) {
            // A try leaves nothing queued, also when an earlier try of it went through.
            self.delete_unchanged(&key, kv.create_revision()).await?;
        }
        let q = Queue {
            blocker,
            head,
            revision,
            sent,
        };
        let create_rev = create_rev.unwrap_or(0);
        self.not_granted(req, waiter, key, create_rev, epoch, q).await
    }

    /// Deletes this request's own key, unless it was made again since (another create revision).
    pub(super) async fn delete_unchanged(&self, key: &str, create_rev: i64) -> Result<()> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, create_rev)])
            .and_then([TxnOp::delete(key, None)]);
        self.etcd.txn(txn).await.map(drop)
    }

    /// A lease this process just wrote or was handed: from now on its own, trusted for `left`. None if its key
    /// is one this process's sweep dropped (see [`Local::swept`](super::local::Local::swept)).
    pub(super) fn granted(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        held: Held,
        left: Duration,
    ) -> Option<Attempt> {
        let acquired = held.record.acquired();
        let grant = Grant::new(held.create_rev as u64, acquired, acquired + req.ttl);
        let ok = self.local.with(|l| {
            if let Some(w) = waiter {
                l.drop_waiter(w);
            }
            if l.is_swept(&held.key, held.create_rev) {
                return false;
            }
            l.granted(&req.resource);
            l.held.insert(req.lock_id.clone(), held);
            true
        });
        ok.then(|| Attempt::Granted(grant.found_with(left)))
    }

    /// What a grant came to: refused ([`EtcdBackend::granted`]), its key goes (in case the sweep's own delete
    /// never got through) and the attempt is made again from the back.
    pub(super) async fn claimed(
        &self,
        attempt: Option<Attempt>,
        key: &str,
        create_rev: i64,
    ) -> Result<Option<Attempt>> {
        if attempt.is_none() {
            self.delete_unchanged(key, create_rev).await?;
        }
        Ok(attempt)
    }

    /// The lease a write sent at `sent` made: this process deletes it a ttl after that unless renewed, and trusts
    /// it no longer than the session lease it hangs on is confirmed.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn written(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        key: String,
        (create_rev, mod_rev): (i64, i64),
        record: Record,
        sent: Instant,
        session_left: Duration,
    ) -> Option<Attempt> {
        let held = Held {
            key,
            create_rev,
            mod_rev,
            record,
            deadline: Instant::now().max(sent) + req.ttl,
            release_sent: false,
        };
        self.granted(req, waiter, held, req.ttl.min(session_left))
    }
}
