//! `redlock://h1:p1,h2:p2,h3:p3[/db][?timeout_ms=200&prefix=app:]`: the Redlock algorithm over N independent
//! Redis nodes (N odd, at least 3). Each node runs the single-node scripts; this module adds the quorum.
//!
//! - Every request goes to all nodes at once, each with its own timeout (default 200 ms, well below any TTL);
//!   a call returns as soon as a quorum (floor(N/2)+1) is certain or impossible, never after the slowest node.
//! - Acquire: read the fence from a majority, T = max + 1; then per node grant only if the lock is free and
//!   the stored fence is below T, storing T. Any two majorities share a node whose fence only grows, so fencing
//!   tokens strictly increase; a node that lost its data answers its clock in µs instead of nothing.
//!   The grant needs a quorum within the validity `ttl - elapsed - drift` (elapsed from before the first
//!   request); the lock guard's validity deadline is exactly that. On failure every node releases at once.
//! - Each attempt uses its own token (lock id + attempt number), so a failed attempt's clean-up can never
//!   release the next attempt's grant.
//! - Renew must reach a majority, within the remaining validity (the guard checks), or the lease is lost.
//! - Waiting: a waiter joins every node's queue with the same score (its first attempt's wall-clock time), so
//!   the nodes agree on the order while clocks and nodes behave; FIFO is therefore best effort, and declared so.
//!   Every node publishes releases; wake-ups from all of them reach the same local waiters.

mod node;
mod parse;
mod quorum;
mod round;
mod tokens;
mod views;

use parse::parse_url;
use quorum::*;

use futures::stream::{FuturesUnordered, StreamExt};

use super::redis::{NodeAttempt, RedisBackend};
use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, NodeHealth, Released,
    Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use node::Node;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Default per-node timeout.
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_millis(200);
/// Most remembered waiter scores / attempt counters before the maps are reset.
const MAP_CAP: usize = 100_000;

/// Redlock over N independent Redis nodes.
pub struct RedlockBackend {
    nodes: Vec<Arc<Node>>,
    router: Arc<WakeRouter>,
    /// Waiter id -> queue score (µs since the epoch at its first attempt).
    scores: Mutex<HashMap<String, u64>>,
    /// Lock id of an acquire call -> number of attempts so far (each attempt has its own token).
    attempts: Mutex<HashMap<String, u32>>,
    /// Resource -> the fence of this process's last grant of it. When known, an attempt offers T = hint + 1
    /// and skips the fence read; a node that saw a higher fence since (another process's grant) refuses, and
    /// the attempt falls back to reading the fence. Safety never depends on how T is chosen: a node grants
    /// only above its stored fence, and any two majorities share a node.
    fence_hints: Mutex<HashMap<String, u64>>,
    /// Prepended to every key (the nodes' `prefix`): lock ids carry the slot tag of `prefix + resource`.
    prefix: String,
    /// Lease token -> end of its validity on this client's clock: how long a release is retried on a node
    /// that cannot be reached (after that the node's key expires by itself).
    lease_ends: Mutex<HashMap<String, Instant>>,
}

/// How long a release of a lease this client did not grant or renew is retried on an unreachable node.
const UNKNOWN_LEASE_RETRY: Duration = Duration::from_secs(30);

/// How one Redlock round ended.
enum Round {
    Done(Attempt),
    /// No quorum, and a node had already seen a fence at or above the one offered (the answer, should the
    /// fence have been read for this round).
    FenceStale(Attempt),
}

/// Most resources whose last fence a Redlock client remembers (the map is cleared when full).
const MAX_FENCE_HINTS: usize = 100_000;

impl std::fmt::Debug for RedlockBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedlockBackend")
            .field(
                "nodes",
                &self.nodes.iter().map(|n| n.address.as_str()).collect::<Vec<_>>(),
            )
            .finish()
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

impl RedlockBackend {
    /// Connects to every node in parallel. Succeeds when a quorum answers (the others join when they come
    /// back); otherwise fails with [`Error::QuorumUnavailable`] naming the unreachable nodes.
    pub async fn connect(url: &str) -> Result<Self> {
        let (specs, timeout) = parse_url(url)?;
        let router = Arc::new(WakeRouter::default());
        let prefix = match specs.first() {
            Some((url, _)) => super::redis::options::parse_url(url)?.2.prefix,
            None => String::new(),
        };
        let nodes: Vec<Arc<Node>> = specs
            .into_iter()
            .map(|(url, address)| {
                Arc::new(Node {
                    url,
                    address,
                    timeout,
                    router: router.clone(),
                    backend: Mutex::new(None),
                    connecting: tokio::sync::Mutex::new(()),
                    last_failure: Mutex::new(None),
                })
            })
            .collect();
        let backend = RedlockBackend {
            nodes,
            router,
            scores: Mutex::new(HashMap::new()),
            attempts: Mutex::new(HashMap::new()),
            fence_hints: Mutex::new(HashMap::new()),
            prefix,
            lease_ends: Mutex::new(HashMap::new()),
        };
        let q = backend.quorum();
        let results = backend
            .on_all(|_, b| async move { Ok(b) }, |r| count_ok(r) >= r.len())
            .await;
        if count_ok(&results) < q {
            return Err(backend.quorum_error(&results));
        }
        Ok(backend)
    }

    /// floor(N/2) + 1.
    pub fn quorum(&self) -> usize {
        self.nodes.len() / 2 + 1
    }

    /// The nodes' addresses.
    pub fn addresses(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.address.clone()).collect()
    }
}

#[async_trait::async_trait]
impl Backend for RedlockBackend {
    fn kind(&self) -> &'static str {
        "redlock"
    }

    fn capabilities(&self) -> Capabilities {
        // Every node orders waiters by the same score, but that order holds only while clocks behave.
        // No semaphores: with N permits counted per node, N + 1 clients can each win a majority of nodes (with 3
        // nodes and 3 permits, 4 holders take 8 of the 9 node permits), so a quorum does not bound the holders.
        Capabilities {
            fifo: FifoGuarantee::BestEffort,
            semaphores: false,
            // Each node would judge the condition by its own last fence; not offered yet.
            conditions: false,
            priorities: false,
            ..super::redis::CAPABILITIES
        }
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    fn new_lock_id(&self, resource: &str) -> String {
        super::redis::keys::new_lock_id(&format!("{}{resource}", self.prefix))
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        if let Some(hint) = self.fence_hint(&req.resource) {
            match self.round(req, waiter_id, hint + 1).await? {
                Round::Done(a) => return Ok(a),
                // Another process granted the resource since: read the fence instead.
                Round::FenceStale(_) => self.forget_fence(&req.resource),
            }
        }
        let t = self.read_quorum_fence(&req.resource).await? + 1;
        match self.round(req, waiter_id, t).await? {
            // A concurrent grant with a higher fence: the answer says retry soon, with jitter.
            Round::Done(a) | Round::FenceStale(a) => Ok(a),
        }
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        self.forget_waiter(waiter_id);
        let r = self
            .on_all(
                {
                    let (resource, waiter): (Arc<str>, Arc<str>) = (Arc::from(resource), Arc::from(waiter_id));
                    move |_, b| {
                        let (resource, waiter) = (resource.clone(), waiter.clone());
                        async move { b.leave_queue(&resource, &waiter).await }
                    }
                },
                |r| count_ok(r) >= self.quorum() || r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) >= self.quorum() {
            // The nodes only wake their heads: a grant always comes from this client's own attempt.
            Ok(true)
        } else {
            Err(self.quorum_error(&r))
        }
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        // The lock id of an acquire call that never returned (cancelled): release its latest attempt.
        let pending = self.attempts.lock().unwrap_or_else(|p| p.into_inner()).remove(lock_id);
        let token = match pending {
            Some(n) => format!("{lock_id}-{n}"),
            None => lock_id.to_string(),
        };
        let q = self.quorum();
        let deadline = self.lease_end(&token);
        let (token, client): (Arc<str>, Option<Arc<str>>) = (Arc::from(token), client_id.map(Arc::from));
        let r = self
            .on_all_nodes(
                move |_, n| n.release(token.clone(), client.clone(), deadline),
                // Done once a quorum released; every other node's release still runs to its end, retried
                // while the node is unreachable (see `Node::release`).
                |r| count_ok(r) >= q || r.iter().all(Option::is_some),
            )
            .await;
        if let Some(released) = r.iter().find_map(|x| x.as_ref()?.as_ref().ok()) {
            return Ok(*released);
        }
        if let Some(e) = r.iter().find_map(|x| match x {
            Some(Err(e @ Error::NotOwner { .. })) => Some(e.clone()),
            _ => None,
        }) {
            return Err(e);
        }
        if r.iter().any(|x| matches!(x, Some(Err(Error::LeaseLost { .. })))) {
            return Err(Error::LeaseLost {
                lock_id: lock_id.to_string(),
                resource: String::new(),
            });
        }
        let answered = r
            .iter()
            .filter(|x| matches!(x, Some(Err(Error::NotFound { .. }))))
            .count();
        if answered >= q {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        }
        Err(self.quorum_error(&r))
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        if let Some(t) = ttl {
            crate::validate::ttl(t)?;
        }
        let n = self.nodes.len();
        let q = self.quorum();
        let renew_sent = Instant::now();
        let renewed = |r: &[Option<Result<Renewal>>]| {
            r.iter()
                .filter(|x| matches!(x, Some(Ok(Renewal::Renewed { .. }))))
                .count()
        };
        let r = self
            .on_all(
                {
                    let lock_id: Arc<str> = Arc::from(lock_id);
                    let client: Option<Arc<str>> = client_id.map(Arc::from);
                    move |_, b| {
                        let (lock_id, client) = (lock_id.clone(), client.clone());
                        async move { b.renew(&lock_id, ttl, client.as_deref()).await }
                    }
                },
                |r| {
                    let no = r.iter().filter(|x| x.is_some()).count() - renewed(r);
                    renewed(r) >= q || no > n - q
                },
            )
            .await;
        if renewed(&r) >= q {
            // The lease as the most conservative node sees it: earliest expiry, shortest extension.
            let renewals: Vec<(&LeaseInfo, Duration)> = r
                .iter()
                .flatten()
                .flatten()
                .filter_map(|x| match x {
                    Renewal::Renewed { lease, granted } => Some((lease, *granted)),
                    _ => None,
                })
                .collect();
            if let Some((first, _)) = renewals.iter().min_by_key(|(l, _)| l.expires_at) {
                let mut lease = (*first).clone();
                lease.renewal_count = renewals.iter().map(|(l, _)| l.renewal_count).max().unwrap_or(0);
                let granted = renewals.iter().map(|(_, g)| *g).min().unwrap_or_default();
                self.remember_lease(lock_id, renew_sent + granted);
                return Ok(Renewal::Renewed { lease, granted });
            }
        }
        let capped: Vec<SystemTime> = r
            .iter()
            .filter_map(|x| match x {
                Some(Ok(Renewal::Capped { expires_at })) => Some(*expires_at),
                _ => None,
            })
            .collect();
        if capped.len() + renewed(&r) >= q && !capped.is_empty() {
            return Ok(Renewal::Capped {
                expires_at: capped.into_iter().min().unwrap_or_else(SystemTime::now),
            });
        }
        if let Some(e) = r.iter().find_map(|x| match x {
            Some(Err(e @ (Error::NotOwner { .. } | Error::InvalidArgument { .. }))) => Some(e.clone()),
            _ => None,
        }) {
            return Err(e);
        }
        if count_err(&r) > n - q
            && r.iter()
                .filter(|x| matches!(x, Some(Err(Error::BackendUnavailable { .. }))))
                .count()
                > n - q
        {
            return Err(self.quorum_error(&r));
        }
        let not_found = r
            .iter()
            .filter(|x| matches!(x, Some(Err(Error::NotFound { .. }))))
            .count();
        if not_found >= q {
            return Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            });
        }
        Err(Error::LeaseLost {
            lock_id: lock_id.to_string(),
            resource: String::new(),
        })
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        self.view_lease(lock_id).await
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        self.view_inspect(resource).await
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        self.view_held(client_id).await
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        self.view_stats(top).await
    }

    async fn health(&self) -> Health {
        self.view_health().await
    }
}
