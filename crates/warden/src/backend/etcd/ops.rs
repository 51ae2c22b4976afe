//! The lease core on etcd: attempt, leave, release, renew. Each is one transaction in the common case.

use super::batch::{revision_of, Answer, Write};
use super::keys::{lock_hash, now_ms, resource_hash, Record};
use super::local::{Held, Waiting};
use super::records::Seen;
use super::EtcdBackend;
use crate::error::{Error, Result};
use crate::types::{AcquireRequest, Attempt, Grant, LockKind, Released, Renewal};
use etcd_client::{
    Compare, CompareOp, GetOptions, KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use std::time::Duration;
use tokio::time::Instant;

/// The key ahead that blocks a request, and the head of its queue.
struct Queue {
    blocker: Option<KeyValue>,
    head: Option<KeyValue>,
    /// The store's revision the reads saw.
    revision: i64,
    /// When the attempt that read it was sent.
    sent: Instant,
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
    async fn delete_unchanged(&self, key: &str, create_rev: i64) -> Result<()> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, create_rev)])
            .and_then([TxnOp::delete(key, None)]);
        self.etcd.txn(txn).await.map(drop)
    }

    /// A lease this process just wrote or was handed: from now on its own, trusted for `left`. None if its key
    /// is one this process's sweep dropped (see [`Local::swept`](super::local::Local::swept)).
    fn granted(&self, req: &AcquireRequest, waiter: Option<&str>, held: Held, left: Duration) -> Option<Attempt> {
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
    async fn claimed(&self, attempt: Option<Attempt>, key: &str, create_rev: i64) -> Result<Option<Attempt>> {
        if attempt.is_none() {
            self.delete_unchanged(key, create_rev).await?;
        }
        Ok(attempt)
    }

    /// The lease a write sent at `sent` made: this process deletes it a ttl after that unless renewed, and trusts
    /// it no longer than the session lease it hangs on is confirmed.
    #[allow(clippy::too_many_arguments)]
    fn written(
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

    async fn not_granted(
        &self,
        req: &AcquireRequest,
        waiter: Option<&str>,
        key: String,
        create_rev: i64,
        epoch: u64,
        q: Queue,
    ) -> Result<Option<Attempt>> {
        let now = Instant::now();
        // The head of the queue, if it is someone else's: its lease ends when it stays unchanged for its ttl.
        let mut retry_in = None;
        if let Some(h) = q.head.as_ref().filter(|h| h.key() != key.as_bytes()) {
            let g = Record::decode(h.value()).map_or(Duration::from_secs(60), |r| Duration::from_millis(r.g));
            let seen = self
                .local
                .with(|l| l.head_seen(&String::from_utf8_lossy(h.key()), h.mod_revision(), now));
            let ends = seen + g;
            if ends <= now {
                self.expire(h.key().to_vec(), h.mod_revision()).await?;
                return Ok(None);
            }
            retry_in = Some(ends - now);
        }
        if let Some(w) = waiter {
            // A semaphore's waiter may go when any key ahead of it goes: it waits on the whole resource.
            let behind = if req.kind == LockKind::Semaphore {
                Some(self.keys.resource(&resource_hash(&req.resource)))
            } else {
                q.blocker.map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
            };
            let deleted_already = self.local.with(|l| {
                let entry = l.waiting.entry(w.to_string()).or_insert_with(|| Waiting {
                    key: key.clone(),
                    lock_id: req.lock_id.clone(),
                    create_rev,
                    behind: None,
                    deadline: now,
                    session_epoch: epoch,
                    last_blocked: q.sent,
                    attempts: 0,
                });
                entry.deadline = now + req.waiter_lease;
                entry.last_blocked = q.sent;
                entry.create_rev = create_rev;
                l.wait_behind(w, behind, q.revision)
            });
            if deleted_already {
                self.router.wake([w]);
            }
        }
        Ok(Some(Attempt::NotGranted {
            retry_in,
            backend_now: None,
        }))
    }

    /// A waiter found nothing ahead of its key any more: whatever blocked it went after its last attempt was
    /// sent, and anyone who sees its key at the head starts counting its ttl from then at the earliest. So the
    /// lease runs from that send, with no write; the guard claims the full ttl with its first renewal. Only
    /// when little of the ttl is left that way (a long wait between attempts) is the grant claimed with a write
    /// now.
    #[allow(clippy::too_many_arguments)]
    async fn handed(
        &self,
        req: &AcquireRequest,
        waiter: &str,
        key: String,
        create_rev: i64,
        kv: Option<&KeyValue>,
        record: Record,
        session_left: Duration,
        seen: Option<Seen>,
    ) -> Result<Option<Attempt>> {
        let now = Instant::now();
        let since = self.local.with(|l| l.waiting.get(waiter).map(|w| w.last_blocked));
        let left = since.map_or(Duration::ZERO, |t| (t + req.ttl).saturating_duration_since(now));
        // A store that records grants takes every handed lock with the claim's write, which carries the record.
        if left >= req.ttl / 2 && self.records.is_none() {
            // Without a read (`kv` none), the key is as this process queued it: a waiter's key is written once.
            let mut stored = kv.and_then(|kv| Record::decode(kv.value())).unwrap_or(record);
            stored.a = now_ms().saturating_sub(crate::backend::queue_record::ms(req.ttl - left));
            stored.w = None;
            stored.h = true;
            let held = Held {
                key: key.clone(),
                create_rev,
                mod_rev: kv.map_or(create_rev, KeyValue::mod_revision),
                record: stored,
                deadline: now + left,
                release_sent: false,
            };
            let attempt = self.granted(req, Some(waiter), held, left.min(session_left));
            return self.claimed(attempt, &key, create_rev).await;
        }
        let (lease, _) = self.etcd.session_left()?;
        let hash = resource_hash(&req.resource);
        self.none_newer_ahead(req, Some(waiter), &hash, &key, seen, create_rev)
            .await?;
        let when = [Compare::create_revision(key.clone(), CompareOp::Equal, create_rev)];
        let then = [TxnOp::put(
            key.clone(),
            record.encode(),
            Some(PutOptions::new().with_lease(lease)),
        )];
        let sent = Instant::now();
        let Some(r) = self.with_record(&hash, when, then, create_rev, seen).await? else {
            // The key is gone; or, for a conditional request, maybe the record changed: it is judged again.
            if seen.is_none() {
                self.local.with(|l| l.drop_waiter(waiter));
            }
            return Ok(None);
        };
        let revision = revision_of(&r);
        let attempt = self.written(
            req,
            Some(waiter),
            key.clone(),
            (create_rev, revision),
            record,
            sent,
            session_left,
        );
        self.claimed(attempt, &key, create_rev).await
    }

    /// Deletes a head of queue found unchanged for its ttl, unless it changed meanwhile; counts the expiry.
    async fn expire(&self, key: Vec<u8>, mod_rev: i64) -> Result<()> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key.clone(), CompareOp::Equal, mod_rev)])
            .and_then([TxnOp::delete(key.clone(), None)]);
        let r = self.etcd.txn(txn).await?;
        if r.succeeded() {
            self.local.with(|l| l.counts.expired += 1);
            self.deleted_here(&String::from_utf8_lossy(&key), revision_of(&r));
        }
        Ok(())
    }

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
}

impl EtcdBackend {
    /// This process deleted `key`: its own waiters behind it need not wait for the watch to say so.
    fn deleted_here(&self, key: &str, rev: i64) {
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
