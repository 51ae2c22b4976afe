//! Wake-ups on a Redis Cluster: a release publishes on its slot's shard channel (`SPUBLISH`, Redis ≥ 7), which
//! reaches only the subscribers of that slot on that shard, never every node. A process subscribes to a slot's
//! channel the first time one of its waiters queues on a resource of that slot, before the waiter's attempt
//! goes out (so no release after it can be missed), and stays subscribed. redis-rs's cluster connection sends
//! each subscription to the slot's primary and subscribes again after a failover or a moved slot.

use crate::backend::redis::keys;
use crate::error::{Error, Result};
use crate::wake::WakeRouter;
use redis::cluster_async::ClusterConnection;
use redis::PushKind;
use std::sync::{Arc, Mutex};

pub(super) struct ShardSubscriber {
    conn: ClusterConnection,
    /// The channel after the slot's `{tag}`.
    channel: String,
    /// One bit per slot: subscribed.
    subscribed: Mutex<Vec<u64>>,
    /// Taken (FIFO) by callers that must subscribe: those who came first go on first, so waiters' attempts
    /// keep the order of their calls while the first of them subscribes.
    subscribing: tokio::sync::Mutex<()>,
    address: String,
}

impl ShardSubscriber {
    /// Connects (RESP3, pushes routed to `router`) and starts the task that reads the pushes.
    pub async fn connect(
        nodes: Vec<String>,
        ca: Option<Vec<u8>>,
        timeout: std::time::Duration,
        channel: String,
        address: String,
        router: Arc<WakeRouter>,
    ) -> Result<(Arc<Self>, tokio::task::JoinHandle<()>)> {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .connection_timeout(timeout)
            .response_timeout(timeout);
        if let Some(ca) = ca {
            builder = builder.certs(redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(ca),
            });
        }
        let unavailable = |e: &dyn std::fmt::Display| Error::BackendUnavailable {
            address: address.clone(),
            reason: format!("subscriber: {e}"),
        };
        let client = builder.build().map_err(|e| unavailable(&e))?;
        let conn = tokio::time::timeout(timeout, client.get_async_connection())
            .await
            .map_err(|_| unavailable(&"no answer"))?
            .map_err(|e| unavailable(&e))?;
        let me = Arc::new(ShardSubscriber {
            conn,
            channel,
            subscribed: Mutex::new(vec![0; keys::SLOTS as usize / 64]),
            subscribing: tokio::sync::Mutex::new(()),
            address: address.clone(),
        });
        let weak = Arc::downgrade(&me);
        let task = tokio::spawn(async move {
            // After a dropped connection, redis-rs subscribes again (on the slot's new primary after a
            // failover); messages may have been missed meanwhile, so waiters look again once it has.
            let mut resubscribing = false;
            while let Some(push) = rx.recv().await {
                match push.kind {
                    PushKind::SMessage | PushKind::Message => {
                        if let Some(redis::Value::BulkString(p)) = push.data.get(1) {
                            router.deliver(&String::from_utf8_lossy(p));
                        }
                    }
                    PushKind::Disconnection => resubscribing = true,
                    PushKind::SSubscribe if resubscribing => {
                        resubscribing = false;
                        router.wake_all();
                    }
                    // The server dropped a slot's channel (the slot moved): waiters look again, and subscribe
                    // again (on its new primary) with their next attempt.
                    PushKind::SUnsubscribe => {
                        if let Some(me) = weak.upgrade() {
                            me.forget_all();
                        }
                        router.wake_all();
                    }
                    _ => {}
                }
            }
        });
        Ok((me, task))
    }

    fn bits(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.subscribed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn forget_all(&self) {
        self.bits().iter_mut().for_each(|w| *w = 0);
    }

    /// After `slots` moved to another primary (a failover, a resharding): subscribes to their channels again
    /// where this process was subscribed, then wakes every waiter, since a release may have been missed.
    pub async fn follow(&self, slots: &[u16], router: &WakeRouter) {
        let mine: Vec<u16> = {
            let mut bits = self.bits();
            slots
                .iter()
                .copied()
                .filter(|&s| {
                    let (word, bit) = (s as usize / 64, 1u64 << (s % 64));
                    let was = bits[word] & bit != 0;
                    bits[word] &= !bit;
                    was
                })
                .collect()
        };
        for s in mine {
            // A failure leaves the slot for the next attempt of one of its waiters to subscribe.
            let _ = self.ensure(s).await;
        }
        router.wake_all();
    }

    /// Subscribes to `slot`'s channel unless already subscribed.
    pub async fn ensure(&self, slot: u16) -> Result<()> {
        let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
        if self.bits()[word] & bit != 0 {
            return Ok(());
        }
        let _turn = self.subscribing.lock().await;
        if self.bits()[word] & bit != 0 {
            return Ok(());
        }
        let channel = format!("{{{}}}{}", keys::tag_of_slot(slot), self.channel);
        self.conn
            .clone()
            .ssubscribe(&channel)
            .await
            .map_err(|e| Error::BackendUnavailable {
                address: self.address.clone(),
                reason: format!("subscribing to slot {slot}'s wake-ups: {e}"),
            })?;
        self.bits()[word] |= bit;
        Ok(())
    }
}
