//! `redis://`: one Redis node. Every operation is one Lua script (EVALSHA; loaded once, reloaded by
//! redis-rs after a `NOSCRIPT`), so an uncontended acquire, a release and a renew are one round trip each.
//!
//! Layout (see `scripts/record.lua` and `scripts/queue.lua`): the exclusive lock key is the resource name
//! itself (plus an optional prefix) holding the token as a plain string with a PX expiry, so
//! `SET key token NX PX` clients (node-redlock, redis-py `Lock`) exclude us and are excluded. Shared holders
//! use the same key as a sorted set of tokens. Fence counter, queue and waiter leases sit in helper keys of the
//! same cluster hash slot; the lease records (by token), the expiry index and the statistics are global keys
//! (so no Redis Cluster yet).
//! Wake-ups travel on one pub/sub channel, read by one subscriber connection per backend instance.

use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, LockKind, NodeHealth,
    QueueEntry, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{PushKind, Script, Value};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const RECORD: &str = include_str!("scripts/record.lua");
const QUEUE: &str = include_str!("scripts/queue.lua");

/// One node's answer to an acquire.
#[derive(Debug)]
pub(crate) enum NodeAttempt {
    /// Granted; the flag says whether the waiter is still in this node's queue (Redlock keeps it there).
    Granted(Grant, bool),
    NotGranted {
        backend_now: Option<SystemTime>,
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

struct Scripts {
    acquire: Script,
    release: Script,
    renew: Script,
    leave: Script,
    inspect: Script,
    fence: Script,
}

impl Scripts {
    fn new() -> Self {
        let with_queue = |body: &str| Script::new(&format!("{RECORD}\n{QUEUE}\n{body}"));
        Scripts {
            acquire: with_queue(include_str!("scripts/acquire.lua")),
            release: with_queue(include_str!("scripts/release.lua")),
            renew: Script::new(&format!("{RECORD}\n{}", include_str!("scripts/renew.lua"))),
            leave: with_queue(include_str!("scripts/leave.lua")),
            inspect: with_queue(include_str!("scripts/inspect.lua")),
            fence: Script::new(include_str!("scripts/fence.lua")),
        }
    }
}

/// Options read from the `redis://` URL's query string (the rest goes to redis-rs).
#[derive(Debug, Clone)]
struct Options {
    prefix: String,
    timeout: Duration,
    /// How often the background sweeper ends expired leases (`sweep_ms`, default 5000).
    sweep_every: Duration,
}

/// Names of the global keys (lease index and statistics) and the wake-up channel.
struct Globals {
    tok: String,
    idx: String,
    stats: String,
    top: String,
    channel: String,
}

impl Globals {
    fn new(prefix: &str) -> Self {
        let g = |s: &str| format!("{prefix}warden:{s}");
        Globals {
            tok: g("tok"),
            idx: g("idx"),
            stats: g("stats"),
            top: g("top"),
            channel: g("wake"),
        }
    }
}

/// The lock key and its helper keys (fence counter, queue, waiter leases), all in the lock key's Redis
/// Cluster hash slot: helper keys take the lock key's hash tag if it has one, else the whole key as tag.
/// Mirrors `keys_for` in `scripts/queue.lua`.
pub fn resource_keys(prefix: &str, resource: &str) -> [String; 4] {
    let l = format!("{prefix}{resource}");
    let tag = l.find('{').and_then(|o| {
        let rest = &l[o + 1..];
        rest.find('}').filter(|c| *c > 0).map(|c| &rest[..c])
    });
    let base = match tag {
        Some(t) => format!("{{{t}}}warden:{l}"),
        None => format!("{{{l}}}warden"),
    };
    [l.clone(), format!("{base}:f"), format!("{base}:q"), format!("{base}:w")]
}

/// The single-node Redis backend.
pub struct RedisBackend {
    conn: ConnectionManager,
    address: String,
    opts: Options,
    globals: Globals,
    scripts: Scripts,
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

/// Splits a `redis://` URL into what redis-rs reads and warden's own options
/// (`prefix`, `timeout_ms`), and a printable address without credentials.
fn parse_url(url: &str) -> Result<(String, String, Options)> {
    let mut u =
        url::Url::parse(url).map_err(|e| Error::invalid("backend", format!("`{url}` is not a valid URL: {e}")))?;
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(Error::invalid(
            "backend",
            format!("`{url}` names no host; use redis://host:port/db"),
        ));
    }
    let mut opts = Options {
        prefix: String::new(),
        timeout: Duration::from_millis(1000),
        sweep_every: Duration::from_secs(5),
    };
    let mut passthrough = Vec::new();
    for (k, v) in u.query_pairs() {
        match &*k {
            "prefix" => opts.prefix = v.into_owned(),
            "timeout_ms" => {
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| (10..=60_000).contains(ms))
                    .ok_or_else(|| Error::invalid("timeout_ms", format!("must be 10..=60000, got `{v}`")))?;
                opts.timeout = Duration::from_millis(ms);
            }
            "sweep_ms" => {
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| (10..=3_600_000).contains(ms))
                    .ok_or_else(|| Error::invalid("sweep_ms", format!("must be 10..=3600000, got `{v}`")))?;
                opts.sweep_every = Duration::from_millis(ms);
            }
            _ => passthrough.push((k.into_owned(), v.into_owned())),
        }
    }
    if passthrough.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(passthrough);
    }
    let address = format!(
        "redis://{}:{}{}",
        u.host_str().unwrap_or_default(),
        u.port().unwrap_or(6379),
        if u.path().len() > 1 { u.path() } else { "" }
    );
    Ok((u.to_string(), address, opts))
}

fn unavailable(address: &str, e: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        address: address.to_string(),
        reason: e.to_string(),
    }
}

fn map_err(address: &str, e: redis::RedisError) -> Error {
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

fn ms_to_system(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64)
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        Value::SimpleString(s) => s.parse().ok(),
        Value::Double(d) => Some(*d as i64),
        _ => None,
    }
}

fn as_string(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::Okay => Some("OK".into()),
        _ => None,
    }
}

fn bad(what: &str, v: &Value) -> Error {
    Error::Protocol(format!("unexpected reply to {what}: {v:?}"))
}

/// Parses a lease record written by `record_grant()` in `scripts/queue.lua` (or `record()` in `scripts/record.lua`).
fn parse_record(token: String, rec: &str, held: bool) -> Option<LeaseInfo> {
    // kind, client, acquired_ms, expires_ms, ttl_ms, fence, renewals, max_renewals, max_hold_ms, resource
    let f: Vec<&str> = rec.splitn(10, '\n').collect();
    if f.len() < 10 {
        return None;
    }
    Some(LeaseInfo {
        lock_id: token,
        kind: LockKind::parse(f[0])?,
        client_id: f[1].to_string(),
        acquired_at: ms_to_system(f[2].parse().ok()?),
        expires_at: ms_to_system(f[3].parse().ok()?),
        ttl: Duration::from_millis(f[4].parse().ok()?),
        fencing_token: f[5].parse().ok()?,
        // -1: a provisional handoff not renewed yet.
        renewal_count: f[6].parse::<i64>().ok()?.clamp(0, u32::MAX as i64) as u32,
        resource: f[9].to_string(),
        expired: !held,
    })
}

/// Parses triples (token, record, held) from an inspect reply.
fn parse_leases(items: &[Value]) -> Result<Vec<LeaseInfo>> {
    items
        .chunks(3)
        .filter(|c| c.len() == 3)
        .map(|c| {
            let tok = as_string(&c[0]).ok_or_else(|| bad("inspect", &c[0]))?;
            let rec = as_string(&c[1]).ok_or_else(|| bad("inspect", &c[1]))?;
            let held = as_i64(&c[2]) == Some(1);
            parse_record(tok, &rec, held).ok_or_else(|| Error::Protocol(format!("malformed lease record `{rec}`")))
        })
        .collect()
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
        let client = redis::Client::open(redis_url.as_str()).map_err(|e| Error::invalid("backend", format!("{e}")))?;
        let cfg = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(opts.timeout))
            .set_response_timeout(Some(opts.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(100));
        let conn = tokio::time::timeout(opts.timeout, client.get_connection_manager_with_config(cfg))
            .await
            .map_err(|_| unavailable(&address, format!("no answer within {:?}", opts.timeout)))?
            .map_err(|e| unavailable(&address, e))?;
        let scripts = Scripts::new();
        let mut c = conn.clone();
        for s in [
            &scripts.acquire,
            &scripts.release,
            &scripts.renew,
            &scripts.leave,
            &scripts.inspect,
            &scripts.fence,
        ] {
            s.prepare_invoke()
                .load_async(&mut c)
                .await
                .map_err(|e| map_err(&address, e))?;
        }
        let subscriber = spawn_subscriber(&redis_url, &address, &opts, router.clone()).await?;
        let globals = Globals::new(&opts.prefix);
        let sweeper = spawn_sweeper(conn.clone(), &scripts.inspect, &globals, &opts);
        Ok(RedisBackend {
            conn,
            address,
            opts,
            globals,
            scripts,
            router,
            handoff,
            tasks: vec![subscriber, sweeper],
        })
    }

    async fn inspect_script(&self, mode: &str, arg: &str) -> Result<Value> {
        let g = &self.globals;
        self.run(
            &self.scripts.inspect,
            &[&g.tok, &g.idx, &g.stats, &g.top],
            &[A::S(&self.opts.prefix), A::S(mode), A::S(arg)],
        )
        .await
    }

    /// Grants per resource, read incrementally with HSCAN (never blocking Redis).
    async fn grant_counts(&self) -> Result<Vec<(String, u64)>> {
        hscan_counts(&self.conn, &self.globals.top, self.opts.timeout)
            .await
            .map_err(|e| map_err(&self.address, e))
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
        let ttl = req.ttl.as_millis() as i64;
        let wl = req.waiter_lease.as_millis() as i64;
        let max_ren = req.max_renewals.map(i64::from).unwrap_or(-1);
        let max_hold = opt_ms(req.max_hold);
        let [l, f, q, w] = resource_keys(&self.opts.prefix, &req.resource);
        let g = &self.globals;
        let v = self
            .run(
                &self.scripts.acquire,
                &[&l, &f, &q, &w, &g.tok, &g.idx, &g.stats, &g.top],
                &[
                    A::S(&req.lock_id),
                    A::S(req.kind.as_str()),
                    A::I(ttl),
                    A::S(&req.client_id),
                    A::S(waiter_id.unwrap_or("")),
                    A::I(wl),
                    A::I(max_ren),
                    A::I(max_hold),
                    A::I(MAX_WAITERS_PER_RESOURCE as i64),
                    A::S(&req.resource),
                    A::S(&g.channel),
                    A::S(&fence_t.map(|t| t.to_string()).unwrap_or_default()),
                    A::S(&queue_score.map(|t| t.to_string()).unwrap_or_default()),
                ],
            )
            .await?;
        let Value::Array(items) = &v else {
            return Err(bad("acquire", &v));
        };
        match items.first().and_then(as_i64) {
            Some(1) if items.len() >= 4 => {
                let fence = items.get(1).and_then(as_i64).ok_or_else(|| bad("acquire", &v))? as u64;
                let acq = items.get(2).and_then(as_i64).ok_or_else(|| bad("acquire", &v))?;
                let exp = items.get(3).and_then(as_i64).ok_or_else(|| bad("acquire", &v))?;
                let queued = items.get(4).and_then(as_i64) == Some(1);
                let mut grant = Grant::new(fence, ms_to_system(acq), ms_to_system(exp));
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
        let [_, f, _, _] = resource_keys(&self.opts.prefix, resource);
        let v = self.run(&self.scripts.fence, &[&f], &[]).await?;
        as_i64(&v).map(|n| n as u64).ok_or_else(|| bad("fence", &v))
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

    async fn run(&self, script: &Script, keys: &[&str], args: &[A<'_>]) -> Result<Value> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            match a {
                A::S(s) => inv.arg(*s),
                A::I(i) => inv.arg(*i),
            };
        }
        let mut conn = self.conn.clone();
        let deadline = tokio::time::Instant::now() + self.opts.timeout;
        let mut backoff = Duration::from_millis(2);
        loop {
            match tokio::time::timeout_at(deadline, inv.invoke_async::<Value>(&mut conn)).await {
                Err(_) => {
                    return Err(unavailable(
                        &self.address,
                        format!("no answer within {:?}", self.opts.timeout),
                    ));
                }
                Ok(Ok(v)) => return Ok(v),
                // After the node restarted, the old connection is gone and the command was never executed; the
                // connection manager reconnects in the background. Retry (scripts are idempotent per token)
                // with a short backoff, within the same deadline.
                Ok(Err(e))
                    if (e.is_connection_dropped() || e.is_connection_refusal())
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Ok(Err(e)) => return Err(map_err(&self.address, e)),
            }
        }
    }
}

/// One subscriber connection (RESP3 push) per backend: routes wake-ups to local waiters. After a
/// disconnection it reconnects with backoff and wakes every local waiter, since messages may have been lost.
async fn spawn_subscriber(
    redis_url: &str,
    address: &str,
    opts: &Options,
    router: Arc<WakeRouter>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut u = url::Url::parse(redis_url).map_err(|e| Error::invalid("backend", e.to_string()))?;
    u.query_pairs_mut().append_pair("protocol", "resp3");
    let client = redis::Client::open(u.as_str()).map_err(|e| Error::invalid("backend", e.to_string()))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = ConnectionManagerConfig::new()
        .set_push_sender(tx)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(opts.timeout))
        .set_response_timeout(Some(opts.timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100));
    let mut sub = tokio::time::timeout(opts.timeout, client.get_connection_manager_with_config(cfg))
        .await
        .map_err(|_| unavailable(address, "subscriber: no answer"))?
        .map_err(|e| unavailable(address, e))?;
    let channel = Globals::new(&opts.prefix).channel;
    sub.subscribe(&channel).await.map_err(|e| map_err(address, e))?;
    Ok(tokio::spawn(async move {
        while let Some(push) = rx.recv().await {
            match push.kind {
                PushKind::Message => {
                    if let Some(payload) = push.data.get(1).and_then(as_string) {
                        route(&router, &payload);
                    }
                }
                PushKind::Disconnection => {
                    router.wake_all();
                    let mut backoff = Duration::from_millis(20);
                    loop {
                        let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut sub).await;
                        if ping.is_ok() {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    router.wake_all();
                }
                _ => {}
            }
        }
    }))
}

/// Delivers one release notification: space-separated waiter ids to wake, each either bare or, when the
/// release handed the lock over, `waiter_id:fence:acquired_ms:expires_ms`.
fn route(router: &WakeRouter, payload: &str) {
    for item in payload.split(' ') {
        let Some((id, grant)) = item.split_once(':') else {
            router.wake([item]);
            continue;
        };
        let mut f = grant.splitn(3, ':').map(|x| x.parse::<u64>().ok());
        match (f.next().flatten(), f.next().flatten(), f.next().flatten()) {
            (Some(fence), Some(acq), Some(exp)) if exp >= acq => {
                let mut g = Grant::new(fence, ms_to_system(acq as i64), ms_to_system(exp as i64));
                g.remaining = Some(Duration::from_millis(exp - acq));
                router.grant(id, g)
            }
            _ => router.wake([id]),
        }
    }
}

/// A script argument.
enum A<'a> {
    S(&'a str),
    I(i64),
}

/// Ends expired leases in the background (every 5 s), so the records of holders that died without releasing
/// do not pile up between statistics calls. Several processes sweeping at once is harmless.
fn spawn_sweeper(
    conn: ConnectionManager,
    inspect: &Script,
    g: &Globals,
    opts: &Options,
) -> tokio::task::JoinHandle<()> {
    let script = inspect.clone();
    let keys = [g.tok.clone(), g.idx.clone(), g.stats.clone(), g.top.clone()];
    let prefix = opts.prefix.clone();
    let every = opts.sweep_every;
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(every).await;
            let _ = trim_top(&conn, &keys[3]).await;
            loop {
                let mut c = conn.clone();
                let swept: redis::RedisResult<Vec<String>> = script
                    .key(&keys[..])
                    .arg(&prefix)
                    .arg("sweep")
                    .arg(1000)
                    .invoke_async(&mut c)
                    .await;
                let Ok(ended) = swept else { break };
                for e in &ended {
                    let (lock_id, resource) = e.split_once(' ').unwrap_or((e.as_str(), ""));
                    tracing::debug!(resource, lock_id, "lease expired");
                }
                if ended.len() < 1000 {
                    break;
                }
            }
        }
    })
}

async fn hscan_counts(
    conn: &ConnectionManager,
    key: &str,
    timeout: Duration,
) -> redis::RedisResult<Vec<(String, u64)>> {
    let mut conn = conn.clone();
    let mut cursor: u64 = 0;
    let mut out = Vec::new();
    loop {
        let mut cmd = redis::cmd("HSCAN");
        cmd.arg(key).arg(cursor).arg("COUNT").arg(1000);
        let (next, items): (u64, Vec<(String, u64)>) = tokio::time::timeout(timeout, cmd.query_async(&mut conn))
            .await
            .map_err(|_| redis::RedisError::from(std::io::Error::from(std::io::ErrorKind::TimedOut)))??;
        out.extend(items);
        cursor = next;
        if cursor == 0 {
            return Ok(out);
        }
    }
}

/// Keeps the per-resource grant counters bounded: past 20,000 resources, forget all but the 10,000 busiest.
async fn trim_top(conn: &ConnectionManager, key: &str) -> redis::RedisResult<()> {
    let mut c = conn.clone();
    let len: u64 = redis::cmd("HLEN").arg(key).query_async(&mut c).await?;
    if len <= 20_000 {
        return Ok(());
    }
    let mut counts = hscan_counts(conn, key, Duration::from_secs(10)).await?;
    counts.sort_by_key(|c| std::cmp::Reverse(c.1));
    for chunk in counts[10_000..].chunks(500) {
        let mut cmd = redis::cmd("HDEL");
        cmd.arg(key);
        for (k, _) in chunk {
            cmd.arg(k);
        }
        let _: i64 = cmd.query_async(&mut c).await?;
    }
    Ok(())
}

fn opt_ms(d: Option<Duration>) -> i64 {
    d.map(|d| d.as_millis() as i64).unwrap_or(0)
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

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        match self.attempt_on_node(req, waiter_id, None, None).await? {
            NodeAttempt::Granted(g, _) => Ok(Attempt::Granted(g)),
            NodeAttempt::NotGranted { retry_in, backend_now } => Ok(Attempt::NotGranted { retry_in, backend_now }),
            NodeAttempt::FenceAhead => Err(Error::Protocol("fence conflict without a Redlock fence".into())),
        }
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        let [l, f, q, w] = resource_keys(&self.opts.prefix, resource);
        self.run(
            &self.scripts.leave,
            &[&l, &f, &q, &w],
            &[A::S(waiter_id), A::S(&self.globals.channel)],
        )
        .await
        .map(|v| !self.handoff || as_i64(&v) != Some(0))
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let v = self
            .run(
                &self.scripts.release,
                &[
                    &self.globals.tok,
                    &self.globals.idx,
                    &self.globals.stats,
                    &self.globals.top,
                ],
                &[
                    A::S(lock_id),
                    A::S(client_id.unwrap_or("")),
                    A::S(&self.opts.prefix),
                    A::S(&self.globals.channel),
                    A::S(if self.handoff { "1" } else { "" }),
                ],
            )
            .await?;
        if let Value::Array(items) = &v {
            if items.first().and_then(as_string).as_deref() == Some("ok") {
                let held = items
                    .get(1)
                    .and_then(as_i64)
                    .map(|ms| Duration::from_millis(ms.max(0) as u64));
                return Ok(Released::after(held));
            }
        }
        match as_string(&v).as_deref() {
            Some("not_found") => Err(Error::NotFound {
                lock_id: lock_id.into(),
            }),
            Some("not_owner") => Err(Error::NotOwner {
                lock_id: lock_id.into(),
                client_id: client_id.unwrap_or_default().into(),
            }),
            Some("lost") => Err(Error::LeaseLost {
                lock_id: lock_id.into(),
                resource: String::new(),
            }),
            _ => Err(bad("release", &v)),
        }
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let ms = ttl.map(|t| t.as_millis() as i64).unwrap_or(0);
        let v = self
            .run(
                &self.scripts.renew,
                &[&self.globals.tok, &self.globals.idx],
                &[
                    A::S(lock_id),
                    A::I(ms),
                    A::S(client_id.unwrap_or("")),
                    A::S(&self.opts.prefix),
                ],
            )
            .await?;
        let Value::Array(items) = &v else {
            return Err(bad("renew", &v));
        };
        let int = |i: usize| items.get(i).and_then(as_i64).ok_or_else(|| bad("renew", &v));
        match items.first().and_then(as_string).as_deref() {
            Some("ok") => {
                let rec = items.get(1).and_then(as_string).ok_or_else(|| bad("renew", &v))?;
                Ok(Renewal::Renewed {
                    lease: parse_record(lock_id.to_string(), &rec, true).ok_or_else(|| bad("renew", &v))?,
                    granted: Duration::from_millis(int(2)?.max(0) as u64),
                })
            }
            Some("capped") => Ok(Renewal::Capped {
                expires_at: ms_to_system(int(1)?),
            }),
            Some("not_found") => Err(Error::NotFound {
                lock_id: lock_id.into(),
            }),
            Some("not_owner") => Err(Error::NotOwner {
                lock_id: lock_id.into(),
                client_id: client_id.unwrap_or_default().into(),
            }),
            Some("lost") => Err(Error::LeaseLost {
                lock_id: lock_id.into(),
                resource: items.get(1).and_then(as_string).unwrap_or_default(),
            }),
            _ => Err(bad("renew", &v)),
        }
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let v = self.inspect_script("lease", lock_id).await?;
        let Value::Array(items) = &v else {
            return Err(bad("inspect", &v));
        };
        Ok(parse_leases(items)?.into_iter().next())
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let v = self.inspect_script("resource", resource).await?;
        let Value::Array(items) = &v else {
            return Err(bad("inspect", &v));
        };
        let foreign = items.first().and_then(as_i64) == Some(1);
        let sep = items
            .iter()
            .position(|x| as_string(x).as_deref() == Some("--"))
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
        // No per-client index on the hot path: scan the lease records (incrementally, never blocking Redis)
        // and confirm each candidate with one `lease` look-up.
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut candidates = Vec::new();
        loop {
            let mut cmd = redis::cmd("HSCAN");
            cmd.arg(&self.globals.tok).arg(cursor).arg("COUNT").arg(1000);
            let scan = cmd.query_async::<(u64, Vec<String>)>(&mut conn);
            let (next, items) = tokio::time::timeout(self.opts.timeout, scan)
                .await
                .map_err(|_| unavailable(&self.address, "HSCAN timed out"))?
                .map_err(|e| map_err(&self.address, e))?;
            for pair in items.chunks(2) {
                if let [tok, rec] = pair {
                    if rec.split('\n').nth(1) == Some(client_id) {
                        candidates.push(tok.clone());
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        let mut out = Vec::new();
        for tok in candidates {
            if let Some(l) = self.lease(&tok).await? {
                if !l.expired {
                    out.push(l);
                }
            }
        }
        out.sort_by_key(|l| l.acquired_at);
        Ok(out)
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        let v = self.inspect_script("stats", "").await?;
        let Value::Array(items) = &v else {
            return Err(bad("stats", &v));
        };
        let mut parts = items.split(|x| as_string(x).as_deref() == Some("--"));
        let (Some(hash), Some(active)) = (parts.next(), parts.next()) else {
            return Err(bad("stats", &v));
        };
        let top_resources = if top == 0 {
            Vec::new()
        } else {
            let mut counts = self.grant_counts().await?;
            counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            counts.truncate(top);
            counts
        };
        let mut counters = std::collections::HashMap::new();
        for c in hash.chunks(2) {
            if let [k, val] = c {
                if let (Some(k), Some(val)) = (as_string(k), as_i64(val)) {
                    counters.insert(k, val.max(0) as u64);
                }
            }
        }
        let get = |k: &str| counters.get(k).copied().unwrap_or(0);
        let kinds = ["exclusive", "shared", "read", "write"];
        let active_of = |k: &str| {
            get(&format!("grants:{k}"))
                .saturating_sub(get(&format!("released:{k}")))
                .saturating_sub(get(&format!("expired:{k}")))
        };
        let total: u64 = kinds.iter().map(|k| get(&format!("grants:{k}"))).sum();
        let expired: u64 = kinds.iter().map(|k| get(&format!("expired:{k}"))).sum();
        let released: u64 = kinds.iter().map(|k| get(&format!("released:{k}"))).sum();
        Ok(Stats {
            total_locks: total,
            active_locks: active.first().and_then(as_i64).unwrap_or(0).max(0) as u64,
            expired_locks: expired,
            average_hold_time_ms: get("hold_ms").checked_div(expired + released).unwrap_or(0),
            active_exclusive: active_of("exclusive"),
            active_shared: active_of("shared"),
            active_read_write: active_of("read") + active_of("write"),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_keys_share_the_hash_tag() {
        let [l, f, q, w] = resource_keys("", "orders:1");
        assert_eq!(l, "orders:1");
        assert_eq!(f, "{orders:1}warden:f");
        assert_eq!(q, "{orders:1}warden:q");
        assert_eq!(w, "{orders:1}warden:w");
        let [l, f, ..] = resource_keys("app:", "{user7}:cart");
        assert_eq!(l, "app:{user7}:cart");
        assert_eq!(f, "{user7}warden:app:{user7}:cart:f");
        // An empty tag does not count: the whole key is the tag.
        let [_, f, ..] = resource_keys("", "{}x");
        assert_eq!(f, "{{}x}warden:f");
    }

    #[test]
    fn url_options_are_split_off() {
        let (u, addr, o) = parse_url("redis://127.0.0.1:7000/2?prefix=app:&timeout_ms=250").unwrap();
        assert_eq!(u, "redis://127.0.0.1:7000/2");
        assert_eq!(addr, "redis://127.0.0.1:7000/2");
        assert_eq!(o.prefix, "app:");
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert!(matches!(
            parse_url("redis://h:1?timeout_ms=5"),
            Err(Error::InvalidArgument {
                field: "timeout_ms",
                ..
            })
        ));
        assert!(matches!(
            parse_url("redis://"),
            Err(Error::InvalidArgument { field: "backend", .. })
        ));
        let (_, addr, _) = parse_url("redis://user:secret@10.0.0.1:6380").unwrap();
        assert!(!addr.contains("secret"));
    }
}
