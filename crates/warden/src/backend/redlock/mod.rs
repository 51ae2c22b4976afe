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

fn parse_url(url: &str) -> Result<(Vec<(String, String)>, Duration)> {
    let rest = url
        .strip_prefix("redlock://")
        .ok_or_else(|| Error::invalid("backend", format!("`{url}` is not a redlock:// URL")))?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, db) = main.split_once('/').unwrap_or((main, ""));
    let (auth, hosts) = match hosts.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), hosts),
    };
    let mut timeout = DEFAULT_NODE_TIMEOUT;
    let mut pass_on = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "timeout_ms" => {
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| (1..=60_000).contains(ms))
                    .ok_or_else(|| Error::invalid("timeout_ms", "must be 1..=60000"))?;
                timeout = Duration::from_millis(ms);
            }
            "prefix" | "retain_ms" | "sweep_ms" | "inflight" => pass_on.push(pair.to_string()),
            other => {
                return Err(Error::invalid(
                    "backend",
                    format!(
                        "unknown option `{other}` in `{url}`; known: timeout_ms, prefix, retain_ms, sweep_ms, inflight"
                    ),
                ))
            }
        }
    }
    pass_on.push(format!("timeout_ms={}", timeout.as_millis()));
    let query = pass_on.join("&");
    let nodes: Vec<(String, String)> = hosts
        .split(',')
        .filter(|h| !h.trim().is_empty())
        .map(|h| {
            let h = h.trim();
            let db = if db.is_empty() { String::new() } else { format!("/{db}") };
            (format!("redis://{auth}{h}{db}?{query}"), h.to_string())
        })
        .collect();
    if nodes.len() < 3 || nodes.len() % 2 == 0 {
        return Err(Error::invalid(
            "backend",
            format!(
                "Redlock needs an odd number of nodes, at least 3 (redlock://h1:p1,h2:p2,h3:p3); got {}",
                nodes.len()
            ),
        ));
    }
    Ok((nodes, timeout))
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

    /// Runs `op` on every node at once; returns when `enough` says so (or all answered). Unanswered nodes are
    /// `None`: their calls are handed to a background task that runs them to completion, so a call is never
    /// dropped half-way because a quorum answered first (one task per call that had nodes left, not one per
    /// node: the common case costs no spawn at all when every node answered).
    async fn on_all<T, F, Fut>(&self, op: F, enough: impl Fn(&[Option<Result<T>>]) -> bool) -> Vec<Option<Result<T>>>
    where
        F: Fn(usize, Arc<RedisBackend>) -> Fut + Clone + Send + Sync + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        self.on_all_nodes(
            move |i, n| {
                let op = op.clone();
                async move { n.call(|b| op(i, b)).await }
            },
            enough,
        )
        .await
    }

    /// [`RedlockBackend::on_all`] with the node itself handed to `op` (which bounds its own calls).
    async fn on_all_nodes<T, F, Fut>(
        &self,
        op: F,
        enough: impl Fn(&[Option<Result<T>>]) -> bool,
    ) -> Vec<Option<Result<T>>>
    where
        F: Fn(usize, Arc<Node>) -> Fut,
        Fut: Future<Output = Result<T>> + Send + 'static,
        T: Send + 'static,
    {
        let mut results: Vec<Option<Result<T>>> = (0..self.nodes.len()).map(|_| None).collect();
        let mut pending: FuturesUnordered<_> = self
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let call = op(i, n.clone());
                async move { (i, call.await) }
            })
            .collect();
        while let Some((i, r)) = pending.next().await {
            results[i] = Some(r);
            if enough(&results) {
                break;
            }
        }
        if !pending.is_empty() {
            tokio::spawn(async move { while pending.next().await.is_some() {} });
        }
        results
    }

    fn quorum_error<T>(&self, results: &[Option<Result<T>>]) -> Error {
        let unreachable: Vec<String> = results
            .iter()
            .zip(&self.nodes)
            .filter(|(r, _)| {
                matches!(
                    r,
                    None | Some(Err(Error::BackendUnavailable { .. })) | Some(Err(Error::Protocol(_)))
                )
            })
            .map(|(_, n)| n.address.clone())
            .collect();
        Error::QuorumUnavailable {
            reachable: self.nodes.len() - unreachable.len(),
            total: self.nodes.len(),
            needed: self.quorum(),
            unreachable: unreachable.join(", "),
        }
    }

    fn score_for(&self, waiter: &str) -> u64 {
        let mut m = self.scores.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAP_CAP && !m.contains_key(waiter) {
            m.clear();
        }
        *m.entry(waiter.to_string()).or_insert_with(now_micros)
    }

    fn forget_waiter(&self, waiter: &str) {
        self.scores.lock().unwrap_or_else(|p| p.into_inner()).remove(waiter);
    }

    /// The token of the next attempt of the acquire call `lock_id`.
    fn next_token(&self, lock_id: &str) -> String {
        let mut m = self.attempts.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAP_CAP && !m.contains_key(lock_id) {
            m.clear();
        }
        let n = m.entry(lock_id.to_string()).or_insert(0);
        *n += 1;
        format!("{lock_id}-{n}")
    }

    /// One Redlock round: the grant with fence T on every node. `Round::FenceStale`: no quorum, and a node
    /// had already seen a fence at or above T (nothing is held).
    async fn round(&self, req: &AcquireRequest, waiter_id: Option<&str>, t: u64) -> Result<Round> {
        let start = Instant::now();
        let n = self.nodes.len();
        let q = self.quorum();
        // Phase 2: grant with T on every node.
        let token = self.next_token(&req.lock_id);
        let mut node_req = req.clone();
        node_req.lock_id = token.clone();
        let score = waiter_id.map(|w| self.score_for(w));
        let granted = |r: &[Option<Result<NodeAttempt>>]| {
            r.iter()
                .filter(|x| matches!(x, Some(Ok(NodeAttempt::Granted(..)))))
                .count()
        };
        let node_req = Arc::new(node_req);
        let waiter: Option<Arc<str>> = waiter_id.map(Arc::from);
        let results = self
            .on_all(
                move |_, b| {
                    let (node_req, waiter) = (node_req.clone(), waiter.clone());
                    async move { b.attempt_on_node(&node_req, waiter.as_deref(), Some(t), score).await }
                },
                |r| {
                    let answered_no = r.iter().filter(|x| x.is_some()).count() - granted(r);
                    granted(r) >= q || answered_no > n - q
                },
            )
            .await;
        let ok = granted(&results);
        let drift = crate::lock::drift(req.ttl);
        if ok >= q && start.elapsed() + drift < req.ttl {
            let grants: Vec<&Grant> = results
                .iter()
                .filter_map(|r| match r {
                    Some(Ok(NodeAttempt::Granted(g, _))) => Some(g),
                    _ => None,
                })
                .collect();
            let acquired_at = grants
                .iter()
                .map(|g| g.acquired_at)
                .max()
                .unwrap_or_else(SystemTime::now);
            let expires_at = grants
                .iter()
                .map(|g| g.expires_at)
                .min()
                .unwrap_or_else(SystemTime::now);
            self.remember_lease(&token, start + req.ttl);
            let mut grant = Grant::new(t, acquired_at, expires_at);
            grant.lock_id = Some(token);
            self.attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.lock_id);
            if let Some(w) = waiter_id {
                self.forget_waiter(w);
                // Nodes that queued us (or did not answer) still list us as a waiter, at the head of their
                // queue: leave them now, or we would block the next waiter until our waiter lease ran out.
                for (n, r) in self.nodes.iter().zip(&results) {
                    if matches!(r, Some(Ok(NodeAttempt::Granted(_, false)))) {
                        continue;
                    }
                    let (n, res, w) = (n.clone(), req.resource.clone(), w.to_string());
                    tokio::spawn(async move {
                        let _ = n.call(|b| async move { b.leave_queue(&res, &w).await }).await;
                    });
                }
            }
            self.remember_fence(&req.resource, t);
            return Ok(Round::Done(Attempt::Granted(grant)));
        }
        // No quorum in time: undo everywhere at once, without waiting for slow nodes.
        self.release_everywhere(token, req.ttl);
        if count_err(&results) > n - q {
            return Err(self.quorum_error(&results));
        }
        let retry_in = results
            .iter()
            .filter_map(|r| match r {
                Some(Ok(NodeAttempt::NotGranted { retry_in, .. })) => *retry_in,
                // A concurrent grant with a higher fence, or a split vote: retry soon, with jitter.
                Some(Ok(_)) => Some(Duration::from_millis(1 + rand::random::<u64>() % 5)),
                _ => None,
            })
            .min();
        let not_granted = Attempt::NotGranted {
            retry_in,
            backend_now: None,
        };
        if results.iter().any(|r| matches!(r, Some(Ok(NodeAttempt::FenceAhead)))) {
            return Ok(Round::FenceStale(not_granted));
        }
        Ok(Round::Done(not_granted))
    }

    /// Phase 1: the highest fence a majority of nodes answers.
    async fn read_quorum_fence(&self, resource: &str) -> Result<u64> {
        let n = self.nodes.len();
        let q = self.quorum();
        let reads = self
            .on_all(
                with_arg(resource, |b, resource| async move { b.read_fence(&resource).await }),
                |r| count_ok(r) >= q || count_err(r) > n - q,
            )
            .await;
        if count_ok(&reads) < q {
            return Err(self.quorum_error(&reads));
        }
        Ok(reads
            .iter()
            .filter_map(|r| r.as_ref()?.as_ref().ok())
            .copied()
            .max()
            .unwrap_or(0))
    }

    fn fence_hint(&self, resource: &str) -> Option<u64> {
        self.fence_hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .copied()
    }

    fn remember_fence(&self, resource: &str, fence: u64) {
        let mut m = self.fence_hints.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAX_FENCE_HINTS && !m.contains_key(resource) {
            m.clear();
        }
        let e = m.entry(resource.to_string()).or_insert(fence);
        *e = (*e).max(fence);
    }

    fn forget_fence(&self, resource: &str) {
        self.fence_hints
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(resource);
    }

    /// Releases `token` on every node in the background (a failed attempt's clean-up), retrying on nodes
    /// that cannot be reached until the attempt's lease would have ended.
    fn release_everywhere(&self, token: String, ttl: Duration) {
        let (token, deadline): (Arc<str>, Instant) = (Arc::from(token), Instant::now() + ttl);
        for n in &self.nodes {
            tokio::spawn(n.clone().release(token.clone(), None, deadline));
        }
    }

    /// Notes that the lease `token` is valid until `until` on this client's clock.
    fn remember_lease(&self, token: &str, until: Instant) {
        let mut m = self.lease_ends.lock().unwrap_or_else(|p| p.into_inner());
        if m.len() >= MAP_CAP && !m.contains_key(token) {
            m.clear();
        }
        m.insert(token.to_string(), until);
    }

    /// Until when a release of `token` is worth retrying: the lease's end if this client granted or renewed
    /// it, else [`UNKNOWN_LEASE_RETRY`] from now.
    fn lease_end(&self, token: &str) -> Instant {
        self.lease_ends
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token)
            .unwrap_or_else(|| Instant::now() + UNKNOWN_LEASE_RETRY)
    }
}

/// An `on_all` operation taking one string argument, shared by every node's call (the calls outlive the
/// caller's borrow: see `on_all`).
fn with_arg<T, Fut>(
    arg: &str,
    op: impl Fn(Arc<RedisBackend>, Arc<str>) -> Fut + Clone + Send + Sync + 'static,
) -> impl Fn(usize, Arc<RedisBackend>) -> Fut + Clone + Send + Sync + 'static
where
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    let arg: Arc<str> = Arc::from(arg);
    move |_, b| op(b, arg.clone())
}

fn count_ok<T>(r: &[Option<Result<T>>]) -> usize {
    r.iter().filter(|x| matches!(x, Some(Ok(_)))).count()
}

fn count_err<T>(r: &[Option<Result<T>>]) -> usize {
    r.iter().filter(|x| matches!(x, Some(Err(_)))).count()
}

#[async_trait::async_trait]
impl Backend for RedlockBackend {
    fn kind(&self) -> &'static str {
        "redlock"
    }

    fn capabilities(&self) -> Capabilities {
        // Every node orders waiters by the same score, but that order holds only while clocks behave.
        Capabilities {
            fifo: FifoGuarantee::BestEffort,
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
        let r = self
            .on_all(
                with_arg(lock_id, |b, lock_id| async move { b.lease(&lock_id).await }),
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < self.quorum() {
            return Err(self.quorum_error(&r));
        }
        let found: Vec<&LeaseInfo> = r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()?.as_ref()).collect();
        let live = found.iter().filter(|l| !l.expired).count();
        if found.is_empty() {
            return Ok(None);
        }
        let mut info = found[0].clone();
        info.expires_at = found.iter().map(|l| l.expires_at).min().unwrap_or(info.expires_at);
        info.expired = live < self.quorum();
        Ok(Some(info))
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let q = self.quorum();
        let r = self
            .on_all(
                with_arg(resource, |b, resource| async move { b.inspect(&resource).await }),
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < q {
            return Err(self.quorum_error(&r));
        }
        let infos: Vec<&ResourceInfo> = r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()).collect();
        let mut out = ResourceInfo::default();
        let mut holder_votes: HashMap<&str, (usize, &LeaseInfo)> = HashMap::new();
        let mut waiter_votes: HashMap<&str, usize> = HashMap::new();
        let mut foreign = 0;
        for i in &infos {
            for h in i.holders.iter().filter(|h| !h.expired) {
                holder_votes.entry(h.lock_id.as_str()).or_insert((0, h)).0 += 1;
            }
            for w in &i.queue {
                *waiter_votes.entry(w.waiter_id.as_str()).or_insert(0) += 1;
            }
            foreign += usize::from(i.foreign_holder);
        }
        let mut holders: Vec<LeaseInfo> = holder_votes
            .into_values()
            .filter(|(v, _)| *v >= q)
            .map(|(_, h)| h.clone())
            .collect();
        holders.sort_by_key(|h| h.fencing_token);
        out.holders = holders;
        out.foreign_holder = foreign >= q;
        if let Some(first) = infos.iter().max_by_key(|i| i.queue.len()) {
            out.queue = first
                .queue
                .iter()
                .filter(|w| waiter_votes.get(w.waiter_id.as_str()).copied().unwrap_or(0) >= q)
                .cloned()
                .collect();
        }
        Ok(out)
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        crate::validate::client_id(client_id)?;
        let q = self.quorum();
        let r = self
            .on_all(
                with_arg(client_id, |b, client| async move { b.held(&client).await }),
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < q {
            return Err(self.quorum_error(&r));
        }
        let mut votes: HashMap<String, (usize, LeaseInfo)> = HashMap::new();
        for list in r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()) {
            for l in list {
                votes.entry(l.lock_id.clone()).or_insert((0, l.clone())).0 += 1;
            }
        }
        let mut out: Vec<LeaseInfo> = votes.into_values().filter(|(v, _)| *v >= q).map(|(_, l)| l).collect();
        out.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(out)
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        let r = self
            .on_all(
                move |_, b| async move { b.stats(top).await },
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < self.quorum() {
            return Err(self.quorum_error(&r));
        }
        // Every grant, release and expiry is recorded on at least a quorum of nodes (a call returns once a
        // quorum confirmed; the rest may still be on their way): each figure is the one a majority of nodes
        // has reached, the value that stays once every node answered.
        let all: Vec<&Stats> = r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()).collect();
        let q = self.quorum();
        let majority = |f: fn(&Stats) -> u64| {
            let mut v: Vec<u64> = all.iter().map(|s| f(s)).collect();
            v.sort_unstable();
            v.get(v.len().saturating_sub(q)).copied().unwrap_or(0)
        };
        let top = all
            .iter()
            .max_by_key(|s| s.total_locks)
            .map(|s| s.top_resources.clone())
            .unwrap_or_default();
        let mut s = Stats {
            total_locks: majority(|s| s.total_locks),
            active_locks: majority(|s| s.active_locks),
            expired_locks: majority(|s| s.expired_locks),
            average_hold_time_ms: majority(|s| s.average_hold_time_ms),
            active_exclusive: majority(|s| s.active_exclusive),
            active_shared: majority(|s| s.active_shared),
            active_read_write: majority(|s| s.active_read_write),
            ..Stats::default()
        };
        s.top_resources = top;
        Ok(s)
    }

    async fn health(&self) -> Health {
        let r = self
            .on_all(
                |_, b| async move { Ok(b.health().await) },
                |r| r.iter().all(Option::is_some),
            )
            .await;
        let mut nodes = Vec::new();
        for (res, node) in r.into_iter().zip(&self.nodes) {
            match res {
                Some(Ok(h)) => nodes.extend(h.nodes),
                Some(Err(e)) => nodes.push(NodeHealth::new(node.address.clone(), false, None, Some(e.to_string()))),
                None => nodes.push(NodeHealth::new(
                    node.address.clone(),
                    false,
                    None,
                    Some("no answer".into()),
                )),
            }
        }
        let up = nodes.iter().filter(|n| n.reachable).count();
        let quorum = up >= self.quorum();
        let status = if up == self.nodes.len() {
            HealthStatus::Healthy
        } else if quorum {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("redlock", status, nodes, Some(quorum))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_lists_odd_nodes() {
        let (nodes, t) = parse_url("redlock://a:1,b:2,c:3/2?timeout_ms=50&prefix=x:").unwrap();
        assert_eq!(t, Duration::from_millis(50));
        assert_eq!(nodes[1].0, "redis://b:2/2?prefix=x:&timeout_ms=50");
        assert_eq!(nodes[2].1, "c:3");
        for bad in [
            "redlock://a:1,b:2",
            "redlock://a:1",
            "redlock://a:1,b:2,c:3?x=1",
            "redis://a:1",
        ] {
            assert!(matches!(parse_url(bad), Err(Error::InvalidArgument { .. })), "{bad}");
        }
    }
}
