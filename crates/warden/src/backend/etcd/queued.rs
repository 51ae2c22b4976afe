//! The lease core on etcd, waiting: an attempt that found others ahead, a waiter the lock passed to, an
//! expired head of queue.

use super::acquire::Queue;
use super::batch::revision_of;
use super::keys::{now_ms, resource_hash, Record};
use super::local::{Held, Waiting};
use super::records::Seen;
use super::EtcdBackend;
use crate::error::Result;
use crate::types::{AcquireRequest, Attempt, LockKind};
use etcd_client::{Compare, CompareOp, KeyValue, PutOptions, Txn, TxnOp};
use std::time::Duration;
use tokio::time::Instant;

impl EtcdBackend {
    pub(super) async fn not_granted(
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
    pub(super) async fn handed(
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
    pub(super) async fn expire(&self, key: Vec<u8>, mod_rev: i64) -> Result<()> {
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
}
