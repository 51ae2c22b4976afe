//! `redis://`: one Redis node.
//!
//! Every key of a lock lies in the hash slot of its lock key (see [`keys`]): the lock key itself is the
//! resource name (plus an optional prefix) holding the token with a PX expiry, so `SET key token NX PX`
//! clients (node-redlock, redis-py `Lock`) exclude us and are excluded; shared holders use the same key as a
//! sorted set of tokens. The fence counter, queue, waiter leases and the slot's lease records are internal
//! keys in the same slot, found from the lock id's tag. A fence counter lives `retain_ms` from its seeding and
//! a released lease's record goes with it, so a resource that is neither held nor waited on leaves nothing
//! behind. Statistics are counted in each process and added to one shared hash once a second (see
//! `counters`); leases that expired unreleased are found by a sweep of the lease records (`housekeeping`).
//!
//! Operations go out as one script call each, or several together when they arrive while a call is in
//! flight (group commit, see `batch`): an uncontended acquire, a release and a renew are one round trip.
//! Wake-ups travel on one pub/sub channel, read by one subscriber connection per backend instance.

mod batch;
mod counters;
mod housekeeping;
pub mod keys;
pub(crate) mod options;
mod reply;
mod subscriber;

use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, LockKind, NodeHealth,
    QueueEntry, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use counters::Counters;
use housekeeping::{hscan_counts, Housekeeper, SWEEP_CHUNK};
use options::{parse_url, Options};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Script, Value};
use reply::{as_i64, as_string, bad, is_str, ms_to_system, parse_leases, parse_record};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const LIB: &str = include_str!("scripts/lib.lua");
const QUEUE: &str = include_str!("scripts/queue.lua");
const OPS: &str = include_str!("scripts/ops.lua");
const BATCH: &str = include_str!("scripts/batch.lua");
const INSPECT: &str = include_str!("scripts/inspect.lua");

/// One node's answer to an acquire.
#[derive(Debug)]
pub(crate) enum NodeAttempt {
    /// Granted; the flag says whether the waiter is still in this node's queue (Redlock keeps it there).
    Granted(Grant, bool),
    NotGranted {
        backend_now: Option<std::time::SystemTime>,
        retry_in: Option<Duration>,
    },
    /// Redlock: this node already saw a fence at or above the one asked for.
    FenceAhead,
}

/// What one Redis node promises (Redlock promises the same, with best-effort FIFO).
pub(crate) const CAPABILITIES: Capabilities = Capabilities {
    shared: true,
    fifo: FifoGuarantee::Strict,
    notifications: true,
    fencing: true,
    fencing_survives_data_loss: true,
    shared_across_processes: true,
    remote_wait: false,
};

/// Most waiters queued on one resource.
pub const MAX_WAITERS_PER_RESOURCE: usize = 10_000;

/// Names of the keys off the lock path (statistics) and of the wake-up channel. All start with `\x01`, which
/// no resource name can.
struct Names {
    stats: String,
    top: String,
    channel: String,
}

impl Names {
    fn new(prefix: &str) -> Self {
        Names {
            stats: format!("\x01warden:stats:{prefix}"),
            top: format!("\x01warden:top:{prefix}"),
            channel: format!("warden:v2:wake:{prefix}"),
        }
    }
}

/// The single-node Redis backend.
pub struct RedisBackend {
    conn: ConnectionManager,
    address: String,
    opts: Options,
    names: Names,
    batcher: batch::Batcher,
    keeper: Arc<Housekeeper>,
    router: Arc<WakeRouter>,
    /// A release grants the lock to the queue's head in the same script (off for Redlock's nodes, where a
    /// grant needs a quorum and a fence agreed over it).
    handoff: bool,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend").field("address", &self.address).finish()
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(crate) fn unavailable(address: &str, e: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        address: address.to_string(),
        reason: e.to_string(),
    }
}

pub(crate) fn map_err(address: &str, e: redis::RedisError) -> Error {
    if e.is_io_error()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_connection_dropped()
        || e.is_unrecoverable_error()
    {
        unavailable(address, e)
    } else {
        Error::Protocol(format!("redis at {address}: {e}"))
    }
}

impl RedisBackend {
    /// Connects to the Redis node at `url` (`redis://[user:pass@]host:port[/db][?prefix=app:&timeout_ms=1000]`),
    /// loads the scripts and starts the subscriber. Fails with [`Error::BackendUnavailable`] within the
    /// timeout if the node cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with_router(url, Arc::new(WakeRouter::default())).await
    }

    /// Like [`RedisBackend::connect`], routing wake-ups to `router`.
    pub async fn connect_with_router(url: &str, router: Arc<WakeRouter>) -> Result<Self> {
        Self::connect_inner(url, router, true).await
    }

    /// One node of a Redlock: wake-ups go to the Redlock's shared router, and a release only wakes the
    /// queue's head (the Redlock client takes the lock on a quorum itself).
    pub(crate) async fn connect_redlock_node(url: &str, router: Arc<WakeRouter>) -> Result<Self> {
        Self::connect_inner(url, router, false).await
    }

    async fn connect_inner(url: &str, router: Arc<WakeRouter>, handoff: bool) -> Result<Self> {
        let (redis_url, address, opts) = parse_url(url)?;
        let client = redis::Client::open(redis_url.as_str())
            .map_err(|_| Error::invalid("backend", format!("{address} is not a valid Redis URL")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = tokio::time::timeout(opts.timeout, client.get_connection_manager_with_config(cfg))
            .await
            .map_err(|_| unavailable(&address, format!("no answer within {:?}", opts.timeout)))?
            .map_err(|e| unavailable(&address, e))?;
        let batch = Script::new(&format!("{LIB}\n{QUEUE}\n{OPS}\n{BATCH}"));
        let inspect = Script::new(&format!("{LIB}\n{QUEUE}\n{INSPECT}"));
        let mut c = conn.clone();
        for s in [&batch, &inspect] {
            tokio::time::timeout(opts.timeout, s.prepare_invoke().load_async(&mut c))
                .await
                .map_err(|_| unavailable(&address, "no answer while loading the scripts"))?
                .map_err(|e| map_err(&address, e))?;
        }
        warn_on_v1_data(&mut c, &address, &opts).await;
        let names = Names::new(&opts.prefix);
        let header = vec![
            opts.prefix.clone(),
            names.channel.clone(),
            if handoff { "1" } else { "" }.to_string(),
            opts.retain.as_millis().to_string(),
            MAX_WAITERS_PER_RESOURCE.to_string(),
        ];
        let subscriber =
            subscriber::spawn_subscriber(&redis_url, &address, &opts, &names.channel, router.clone()).await?;
        let counters = Arc::new(Counters::default());
        let batcher = batch::Batcher::start(
            conn.clone(),
            counters.clone(),
            batch::Config {
                script: batch,
                header: header.clone(),
                address: address.clone(),
                timeout: opts.timeout,
                inflight: opts.inflight,
                send_abandoned: !handoff,
            },
        );
        let keeper = Arc::new(Housekeeper {
            conn: conn.clone(),
            inspect: inspect.clone(),
            header: header.clone(),
            counters: counters.clone(),
            stats: names.stats.clone(),
            top: names.top.clone(),
            address: address.clone(),
            timeout: opts.timeout,
        });
        let mut backend = RedisBackend {
            conn,
            address,
            opts,
            names,
            batcher,
            keeper,
            router,
            handoff,
            tasks: vec![subscriber],
        };
        let housekeeping = housekeeping::spawn(backend.keeper.clone(), backend.opts.sweep_every);
        backend.tasks.push(housekeeping);
        Ok(backend)
    }

    /// The node's address.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The per-request timeout.
    pub fn timeout(&self) -> Duration {
        self.opts.timeout
    }

    /// The lock key of `resource` (prefix + name), e.g. to inspect it with other tools.
    pub fn lock_key(&self, resource: &str) -> String {
        format!("{}{}", self.opts.prefix, resource)
    }

    fn tag(&self, resource: &str) -> &'static str {
        keys::tag_for(&self.lock_key(resource))
    }

    /// Runs a view script (`scripts/inspect.lua`) with `args` after the common head.
    async fn view(&self, args: &[&str]) -> Result<Value> {
        self.keeper.view(args).await
    }

    /// Also returns the server's clock (ms) at the batch.
    async fn op(&self, args: Vec<String>) -> Result<(i64, Value)> {
        let (now, v) = self.batcher.call(args).await?;
        if let Value::Array(items) = &v {
            if items.first().is_some_and(|x| is_str(x, "error")) {
                let msg = items.get(1).and_then(as_string).unwrap_or_default();
                return Err(Error::Protocol(format!("redis at {}: {msg}", self.address)));
            }
        }
        Ok((now, v))
    }

    /// Sweeps every slot; returns the number of live leases.
    async fn sweep_all(&self) -> Result<u64> {
        let mut active = 0;
        for chunk in self.slots_with_leases().await?.chunks(SWEEP_CHUNK as usize) {
            active += self.keeper.sweep(chunk).await?;
        }
        Ok(active)
    }

    /// The tags of the slots that hold lease records now, found with `SCAN … MATCH` (incremental, in C): far
    /// cheaper than a script look at all 16,384 slots when few are in use.
    async fn slots_with_leases(&self) -> Result<Vec<&'static str>> {
        let mut pattern = String::from("{???}\x01h");
        for c in self.opts.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut tags = std::collections::BTreeSet::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, found): (u64, Vec<Vec<u8>>) =
                tokio::time::timeout(self.opts.timeout, cmd.query_async(&mut conn))
                    .await
                    .map_err(|_| unavailable(&self.address, "SCAN timed out"))?
                    .map_err(|e| map_err(&self.address, e))?;
            for key in found {
                if let Some(t) = key.get(1..1 + keys::TAG_LEN) {
                    let tag = keys::tag_of_slot(keys::slot(t));
                    if tag.as_bytes() == t {
                        tags.insert(tag);
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(tags.into_iter().collect());
            }
        }
    }

    async fn flush(&self) -> bool {
        self.keeper.flush().await
    }

    /// One node's acquire, as Redlock uses it: `fence_t` (grant only if the stored fence is below it, then
    /// store it) and `queue_score` (the waiter's position, the same on every node).
    pub(crate) async fn attempt_on_node(
        &self,
        req: &AcquireRequest,
        waiter_id: Option<&str>,
        fence_t: Option<u64>,
        queue_score: Option<u64>,
    ) -> Result<NodeAttempt> {
        let tag = self.tag(&req.resource);
        if keys::tag_of_lock_id(&req.lock_id) != Some(tag) {
            return Err(Error::invalid(
                "lockId",
                "was not made for this resource: use Backend::new_lock_id(resource)",
            ));
        }
        let v = self
            .op(vec![
                "A".into(),
                req.lock_id.clone(),
                req.kind.as_str().into(),
                req.ttl.as_millis().to_string(),
                req.client_id.clone(),
                waiter_id.unwrap_or("").into(),
                req.waiter_lease.as_millis().to_string(),
                req.max_renewals.map(i64::from).unwrap_or(-1).to_string(),
                req.max_hold.map(|d| d.as_millis()).unwrap_or(0).to_string(),
                req.resource.clone(),
                fence_t.map(|t| t.to_string()).unwrap_or_default(),
                queue_score.map(|t| t.to_string()).unwrap_or_default(),
            ])
            .await?;
        let (now, v) = v;
        if let Value::Int(fence) = v {
            // Granted by this call, at the batch's clock, for the ttl asked.
            let acquired = ms_to_system(now);
            return Ok(NodeAttempt::Granted(
                Grant::new(fence as u64, acquired, acquired + req.ttl),
                false,
            ));
        }
        let Value::Array(items) = &v else {
            return Err(bad("acquire", &v));
        };
        let int = |i: usize| items.get(i).and_then(as_i64).ok_or_else(|| bad("acquire", &v));
        match items.first().and_then(as_i64) {
            Some(1) if items.len() >= 4 => {
                let mut grant = Grant::new(int(1)? as u64, ms_to_system(int(2)?), ms_to_system(int(3)?));
                let queued = items.get(4).and_then(as_i64) == Some(1);
                grant.remaining = items
                    .get(5)
                    .and_then(as_i64)
                    .filter(|ms| *ms >= 0)
                    .map(|ms| Duration::from_millis(ms as u64));
                Ok(NodeAttempt::Granted(grant, queued))
            }
            Some(0) => {
                let retry = items.get(1).and_then(as_i64).unwrap_or(-1);
                Ok(NodeAttempt::NotGranted {
                    backend_now: items.get(2).and_then(as_i64).map(ms_to_system),
                    retry_in: (retry >= 0).then(|| Duration::from_millis(retry as u64)),
                })
            }
            Some(-1) => Err(Error::LimitExceeded {
                what: format!(
                    "{MAX_WAITERS_PER_RESOURCE} waiters already queued on `{}`",
                    req.resource
                ),
            }),
            Some(-2) => Ok(NodeAttempt::FenceAhead),
            _ => Err(bad("acquire", &v)),
        }
    }

    /// Redlock's fence read: the node's stored fence, or its clock in µs if it has none.
    pub(crate) async fn read_fence(&self, resource: &str) -> Result<u64> {
        let v = self
            .op(vec!["F".into(), self.tag(resource).into(), resource.into()])
            .await?
            .1;
        as_i64(&v).map(|n| n as u64).ok_or_else(|| bad("fence", &v))
    }
}

/// Says so when the node holds a warden 0.x layout (its lease records in `warden:tok`): those leases' lock keys
/// are still respected (a lock key that exists is never granted over), but their records, queues and
/// statistics are not read.
async fn warn_on_v1_data(conn: &mut ConnectionManager, address: &str, opts: &Options) {
    // A hash: a lock on a resource of that name is a string or a sorted set.
    let old = format!("{}warden:tok", opts.prefix);
    let ty = tokio::time::timeout(opts.timeout, redis::cmd("TYPE").arg(&old).query_async::<String>(conn)).await;
    if matches!(ty, Ok(Ok(t)) if t == "hash") {
        tracing::warn!(
            address,
            "this Redis holds lease records of an older warden layout; their locks are respected until they \
             expire, but stop the older processes before relying on queues and statistics (see the README)"
        );
    }
}

fn not_found(lock_id: &str) -> Error {
    Error::NotFound {
        lock_id: lock_id.into(),
    }
}

fn not_owner(lock_id: &str, client_id: Option<&str>) -> Error {
    Error::NotOwner {
        lock_id: lock_id.into(),
        client_id: client_id.unwrap_or_default().into(),
    }
}

#[async_trait::async_trait]
impl Backend for RedisBackend {
    fn kind(&self) -> &'static str {
        "redis"
    }

    fn capabilities(&self) -> Capabilities {
        CAPABILITIES
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    fn new_lock_id(&self, resource: &str) -> String {
        keys::new_lock_id(&self.lock_key(resource))
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        match self.attempt_on_node(req, waiter_id, None, None).await? {
            NodeAttempt::Granted(g, _) => Ok(Attempt::Granted(g)),
            NodeAttempt::NotGranted { retry_in, backend_now } => Ok(Attempt::NotGranted { retry_in, backend_now }),
            NodeAttempt::FenceAhead => Err(Error::Protocol("fence conflict without a Redlock fence".into())),
        }
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        self.op(vec![
            "L".into(),
            self.tag(resource).into(),
            resource.into(),
            waiter_id.into(),
        ])
        .await
        .map(|(_, v)| !self.handoff || as_i64(&v) != Some(0))
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        if keys::tag_of_lock_id(lock_id).is_none() {
            return Err(not_found(lock_id));
        }
        let v = self
            .op(vec!["R".into(), lock_id.into(), client_id.unwrap_or("").into()])
            .await?
            .1;
        let items = match &v {
            Value::Int(n) => {
                // Released, nothing handed over: held_ms * 4 + the kind's bits.
                return Ok(Released::after(Some(Duration::from_millis((n >> 2).max(0) as u64))));
            }
            Value::Array(items) => items.as_slice(),
            _ if is_str(&v, "not_found") => return Err(not_found(lock_id)),
            _ if is_str(&v, "not_owner") => return Err(not_owner(lock_id, client_id)),
            _ => return Err(bad("release", &v)),
        };
        let held = items.get(1).and_then(as_i64).unwrap_or(0);
        let resource = items.get(3).and_then(as_string).unwrap_or_default();
        let ok = items.first().is_some_and(|x| is_str(x, "ok"));
        if ok {
            return Ok(Released::after(Some(Duration::from_millis(held.max(0) as u64))));
        }
        if items.first().is_some_and(|x| is_str(x, "lost")) {
            return Err(Error::LeaseLost {
                lock_id: lock_id.into(),
                resource,
            });
        }
        Err(bad("release", &v))
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        if keys::tag_of_lock_id(lock_id).is_none() {
            return Err(not_found(lock_id));
        }
        let ms = ttl.map(|t| t.as_millis()).unwrap_or(0);
        let v = self
            .op(vec![
                "N".into(),
                lock_id.into(),
                ms.to_string(),
                client_id.unwrap_or("").into(),
            ])
            .await?
            .1;
        let Value::Array(items) = &v else {
            return Err(bad("renew", &v));
        };
        let int = |i: usize| items.get(i).and_then(as_i64).ok_or_else(|| bad("renew", &v));
        let first = items.first();
        if first.is_some_and(|x| is_str(x, "ok")) {
            let rec = items.get(1).and_then(as_string).ok_or_else(|| bad("renew", &v))?;
            return Ok(Renewal::Renewed {
                lease: parse_record(lock_id.to_string(), &rec, true).ok_or_else(|| bad("renew", &v))?,
                granted: Duration::from_millis(int(2)?.max(0) as u64),
            });
        }
        if first.is_some_and(|x| is_str(x, "capped")) {
            return Ok(Renewal::Capped {
                expires_at: ms_to_system(int(1)?),
            });
        }
        if first.is_some_and(|x| is_str(x, "not_found")) {
            return Err(not_found(lock_id));
        }
        if first.is_some_and(|x| is_str(x, "not_owner")) {
            return Err(not_owner(lock_id, client_id));
        }
        if first.is_some_and(|x| is_str(x, "lost")) {
            return Err(Error::LeaseLost {
                lock_id: lock_id.into(),
                resource: items.get(1).and_then(as_string).unwrap_or_default(),
            });
        }
        Err(bad("renew", &v))
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        if keys::tag_of_lock_id(lock_id).is_none() {
            return Ok(None);
        }
        let v = self.view(&["lease", lock_id]).await?;
        let Value::Array(items) = &v else {
            return Err(bad("inspect", &v));
        };
        Ok(parse_leases(items)?.into_iter().next())
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let v = self.view(&["resource", self.tag(resource), resource]).await?;
        let Value::Array(items) = &v else {
            return Err(bad("inspect", &v));
        };
        let foreign = items.first().and_then(as_i64) == Some(1);
        let sep = items
            .iter()
            .position(|x| is_str(x, "--"))
            .ok_or_else(|| bad("inspect", &v))?;
        let holders = parse_leases(&items[1..sep])?;
        let mut queue = Vec::new();
        for c in items[sep + 1..].chunks(2) {
            let [id, info] = c else { continue };
            let (Some(id), Some(info)) = (as_string(id), as_string(info)) else {
                return Err(bad("inspect", &v));
            };
            let f: Vec<&str> = info.split('\n').collect();
            if f.len() < 4 {
                return Err(bad("inspect", &v));
            }
            queue.push(QueueEntry {
                waiter_id: id,
                kind: LockKind::parse(f[1]).ok_or_else(|| bad("inspect", &v))?,
                client_id: f[2].to_string(),
                ttl: Duration::from_millis(f[3].parse().unwrap_or(0)),
            });
        }
        Ok(ResourceInfo {
            holders,
            foreign_holder: foreign,
            queue,
        })
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        // No per-client index on the lock path: read the lease records of the slots in use (an operator's view).
        let mut out = Vec::new();
        for chunk in self.slots_with_leases().await?.chunks(SWEEP_CHUNK as usize) {
            let mut args = vec!["held", client_id];
            args.extend_from_slice(chunk);
            let v = self.view(&args).await?;
            let Value::Array(items) = &v else {
                return Err(bad("held", &v));
            };
            out.extend(parse_leases(items)?.into_iter().filter(|l| !l.expired));
        }
        out.sort_by_key(|l| l.acquired_at);
        Ok(out)
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        // A node that cannot take the pending counts now will not answer the reads either: one timeout, not
        // one per step.
        if !self.flush().await {
            return Err(unavailable(&self.address, "statistics could not be written"));
        }
        let active = self.sweep_all().await?;
        if !self.flush().await {
            return Err(unavailable(&self.address, "statistics could not be written"));
        }
        let mut conn = self.conn.clone();
        let hash: HashMap<String, u64> = tokio::time::timeout(
            self.opts.timeout,
            redis::cmd("HGETALL").arg(&self.names.stats).query_async(&mut conn),
        )
        .await
        .map_err(|_| unavailable(&self.address, "HGETALL timed out"))?
        .map_err(|e| map_err(&self.address, e))?;
        let top_resources = if top == 0 {
            Vec::new()
        } else {
            let mut counts = hscan_counts(&self.conn, &self.names.top, self.opts.timeout)
                .await
                .map_err(|e| map_err(&self.address, e))?;
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.truncate(top);
            counts
        };
        let (grants, released, expired, hold_ms) = counters::totals(&hash);
        let active_of = |k: usize| grants[k].saturating_sub(released[k]).saturating_sub(expired[k]);
        let ended: u64 = released.iter().chain(&expired).sum();
        Ok(Stats {
            total_locks: grants.iter().sum(),
            active_locks: active,
            expired_locks: expired.iter().sum(),
            average_hold_time_ms: hold_ms.checked_div(ended).unwrap_or(0),
            active_exclusive: active_of(0),
            active_shared: active_of(1),
            active_read_write: active_of(2) + active_of(3),
            top_resources,
        })
    }

    async fn health(&self) -> Health {
        let start = std::time::Instant::now();
        let mut conn = self.conn.clone();
        let ping = tokio::time::timeout(self.opts.timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        let node = match ping {
            Ok(Ok(_)) => NodeHealth::new(
                self.address.clone(),
                true,
                Some(start.elapsed().as_secs_f64() * 1000.0),
                None,
            ),
            Ok(Err(e)) => NodeHealth::new(self.address.clone(), false, None, Some(e.to_string())),
            Err(_) => NodeHealth::new(
                self.address.clone(),
                false,
                None,
                Some(format!("no answer within {:?}", self.opts.timeout)),
            ),
        };
        let status = if node.reachable {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("redis", status, vec![node], None)
    }
}
