//! The warden workload driver: `uniform` (many workers over many resources, acquire then release at once),
//! `hot` (many workers on one resource, FIFO handoff) and `handoff` (time from a release to the next
//! waiter's grant). Used by the `warden-bench` binary and by `warden bench`.

mod ceiling;
#[cfg(feature = "etcd")]
pub mod etcd;
mod handoff;
pub mod http;
pub mod sql;
pub mod zookeeper;

pub use ceiling::{redis_ceiling, redis_evalsha_usec, redis_reset_stats, Ceiling};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden::Warden;

/// Which workload to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Workload {
    /// `workers` tasks over `keys` resources (each cycle's drawn uniformly at random), acquire then release at once.
    Uniform,
    /// `workers` tasks on one resource, waiting allowed; grants must follow FIFO.
    Hot,
    /// One holder, one waiter: the time from release to the waiter's grant.
    Handoff,
}

impl std::str::FromStr for Workload {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "uniform" => Ok(Workload::Uniform),
            "hot" => Ok(Workload::Hot),
            "handoff" => Ok(Workload::Handoff),
            other => Err(format!("unknown workload `{other}`: use uniform, hot or handoff")),
        }
    }
}

/// Parameters of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Backend URL.
    pub backend: String,
    /// The workload.
    pub workload: Workload,
    /// Concurrent workers.
    pub workers: usize,
    /// Distinct resources (uniform only).
    pub keys: usize,
    /// How long to run.
    pub duration: Duration,
    /// Lease TTL.
    pub ttl: Duration,
    /// How much later a call must start than another to count as a FIFO violation when granted first (hot):
    /// the in-flight time of a first attempt, which on a loaded machine can exceed the default 1 ms.
    pub fifo_slack: Duration,
    /// Take one of this many permits of a semaphore per resource instead of a lock (uniform and hot).
    pub permits: Option<u32>,
    /// Take this many resources per cycle as one lock group (uniform: spread over the keys; hot: the same
    /// ones for every worker).
    pub group: Option<usize>,
    /// Lock a path of this many levels per cycle instead (`tree/…/{key}`: every worker shares the upper levels'
    /// intentions; uniform: the leaves spread over the keys; hot: one leaf for every worker).
    pub path: Option<usize>,
}

/// The figures of one run. Serialises to the one-line JSON of `warden bench --json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    /// Always "warden".
    pub peer: &'static str,
    /// The workload.
    pub workload: Workload,
    /// Workers.
    pub workers: usize,
    /// Resources.
    pub keys: usize,
    /// Completed acquire+release cycles per second.
    pub cycles_per_s: f64,
    /// Acquire latency p50 in microseconds (includes queueing for `hot`).
    pub acq_p50_us: u64,
    /// Acquire latency p99.
    pub acq_p99_us: u64,
    /// Acquire latency max.
    pub acq_max_us: u64,
    /// Failed operations.
    pub failed: u64,
    /// For `hot`: grants that overtook a caller that had started more than 1 ms earlier (0 = FIFO held; not
    /// counted for semaphores, whose grants overlap, nor for each worker's first call, made all at once as the
    /// run starts).
    pub fifo_violations: u64,
    /// The semaphore's permits per resource (absent: plain locks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub permits: Option<u32>,
    /// For `hot`: most holders of the resource seen at once (1 for a lock; at most `permits` for a semaphore).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_holders: Option<u64>,
    /// Resources per cycle, taken as one lock group (absent: one lock per cycle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<usize>,
    /// Levels of the path locked per cycle (absent: no path lock).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<usize>,
}

pub use warden::validate::parse_duration;

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds")
}

/// [`run`] with a progress bar on stderr when `show` (callers pass whether stderr is a terminal).
pub async fn run_with_progress(cfg: &Config, show: bool) -> anyhow::Result<Report> {
    let report = run(cfg, move |f| {
        if show {
            eprint!("\r[{:<40}] {:>3.0}%", "#".repeat((f * 40.0) as usize), f * 100.0);
        }
    })
    .await;
    if show {
        eprintln!();
    }
    report
}

/// Runs one workload and reports its figures. `progress` is called about every 200 ms with the fraction done.
pub async fn run(cfg: &Config, progress: impl Fn(f64) + Send + Sync + 'static) -> anyhow::Result<Report> {
    let warden = Warden::connect(&cfg.backend).await?;
    if cfg.workers == 0 || cfg.keys == 0 {
        anyhow::bail!("--workers and --keys must be at least 1");
    }
    if let Some(n) = cfg.group {
        if n == 0 || n > warden::validate::MAX_GROUP_MEMBERS || (cfg.workload == Workload::Uniform && n > cfg.keys) {
            anyhow::bail!("--group must be 1..=32 and at most --keys");
        }
    }
    if let Some(n) = cfg.path {
        if n == 0 || n > warden::validate::MAX_GROUP_MEMBERS || cfg.group.is_some() || cfg.permits.is_some() {
            anyhow::bail!("--path must be 1..=32 levels, without --group or --permits");
        }
    }
    match cfg.workload {
        Workload::Uniform | Workload::Hot => closed_loop(cfg, warden, progress).await,
        Workload::Handoff => handoff::handoff(cfg, warden).await,
    }
}

async fn closed_loop(
    cfg: &Config,
    warden: Warden,
    progress: impl Fn(f64) + Send + Sync + 'static,
) -> anyhow::Result<Report> {
    let hot = cfg.workload == Workload::Hot;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let grants: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::new(Mutex::new(Vec::new()));
    // Holders inside per resource (hot: one resource), to report the most seen at once.
    let inside = Arc::new(AtomicU64::new(0));
    let max_holders = Arc::new(AtomicU64::new(0));
    let permits = cfg.permits;
    let group = cfg.group;
    let path = cfg.path;
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..cfg.workers {
        let warden = warden.clone();
        let stop = stop.clone();
        let failed = failed.clone();
        let grants = grants.clone();
        let (inside, max_holders) = (inside.clone(), max_holders.clone());
        let keys = cfg.keys;
        let ttl = cfg.ttl;
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut cycles = 0u64;
            // Each cycle's key is drawn uniformly at random (a fixed seed per worker: the same sequence on every
            // run). A shared stride instead would make a worker that once waited for another follow it to every
            // later key, for good.
            let mut keys_rng = StdRng::seed_from_u64(w as u64);
            let mut local = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = keys_rng.random_range(0..keys);
                // Uniform: member k of a group lies keys/n further on, so the members are distinct.
                let name = |k: usize| {
                    if hot {
                        format!("bench:hot:{k}")
                    } else {
                        format!("bench:{}", (i + k * keys / group.unwrap_or(1)) % keys)
                    }
                };
                let resource = if hot && group.is_none() {
                    "bench:hot".to_string()
                } else {
                    name(0)
                };
                // A backend that never makes a worker wait (memory://, a semaphore with permits to spare) would
                // otherwise keep this thread to itself: the timer that ends the run, and the tasks each guard
                // spawns, would never run.
                tokio::task::coop::consume_budget().await;
                let t0 = Instant::now();
                let r = match (group, path) {
                    (_, Some(levels)) => {
                        // tree/8/…/{key}: the levels above the leaf are shared by every worker (intentions).
                        let leaf = if hot { 0 } else { (i % keys) as u64 };
                        let mut p = String::from("tree");
                        for _ in 2..levels {
                            p.push_str(&format!("/{}", leaf % 8));
                        }
                        if levels > 1 {
                            p.push_str(&format!("/{leaf}"));
                        }
                        warden
                            .path(p)
                            .ttl(ttl)
                            .wait(Duration::from_secs(10))
                            .auto_renew(false)
                            .acquire()
                            .await
                            .map(Hold::Path)
                    }
                    (None, None) => {
                        let mut b = warden.lock(resource);
                        if let Some(n) = permits {
                            b = b.permits(n);
                        }
                        b.ttl(ttl)
                            .wait(Duration::from_secs(10))
                            .auto_renew(false)
                            .acquire()
                            .await
                            .map(Hold::Lock)
                    }
                    (Some(n), None) => {
                        let (kind, p) = match permits {
                            Some(p) => (warden::LockKind::Semaphore, p),
                            None => (warden::LockKind::Exclusive, 0),
                        };
                        (0..n)
                            .fold(warden.group(Vec::<String>::new()), |b, k| b.member(name(k), kind, p))
                            .ttl(ttl)
                            .wait(Duration::from_secs(10))
                            .auto_renew(false)
                            .acquire()
                            .await
                            .map(Hold::Group)
                    }
                };
                match r {
                    Ok(mut g) => {
                        let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                        if hot {
                            // A worker's first call is not judged: the workers make their first calls all at
                            // once as the run starts, and which of them reaches the lock first is the order the
                            // runtime first polls their tasks in, not a queue's.
                            if cycles > 0 {
                                local.push((t0, g.fence()));
                            }
                            let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            max_holders.fetch_max(now, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            inside.fetch_sub(1, Ordering::SeqCst);
                        }
                        if g.release().await.is_err() {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                        cycles += 1;
                    }
                    Err(_) => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            if hot {
                grants.lock().map(|mut g| g.extend(local)).ok();
            }
            (hist, cycles)
        }));
    }
    let ticker = {
        let stop = stop.clone();
        let total = cfg.duration;
        tokio::spawn(async move {
            while start.elapsed() < total {
                tokio::time::sleep(Duration::from_millis(200).min(total)).await;
                progress((start.elapsed().as_secs_f64() / total.as_secs_f64()).min(1.0));
            }
            stop.store(true, Ordering::Relaxed);
        })
    };
    ticker.await?;
    let mut hist = histogram();
    let mut cycles = 0;
    for t in tasks {
        let (h, c) = t.await?;
        hist.add(h)?;
        cycles += c;
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Grants of a semaphore overlap, and a later caller is rightly granted first while permits are to spare:
    // the order check counts only for locks (the conformance suite checks a semaphore's order).
    let fifo_violations = if hot && permits.is_none() {
        fifo_violations(&grants.lock().map(|g| g.clone()).unwrap_or_default(), cfg.fifo_slack)
    } else {
        0
    };
    Ok(Report {
        peer: "warden",
        workload: cfg.workload,
        workers: cfg.workers,
        keys: if hot { 1 } else { cfg.keys },
        cycles_per_s: cycles as f64 / elapsed,
        acq_p50_us: hist.value_at_quantile(0.5),
        acq_p99_us: hist.value_at_quantile(0.99),
        acq_max_us: hist.max(),
        failed: failed.load(Ordering::Relaxed),
        fifo_violations,
        permits,
        max_holders: hot.then(|| max_holders.load(Ordering::SeqCst)),
        group,
        path,
    })
}

/// What one cycle holds: a lock, a group, or a path (a group whose last member is the path itself).
enum Hold {
    Lock(warden::LockGuard),
    Group(warden::GroupGuard),
    Path(warden::GroupGuard),
}

impl Hold {
    /// The fencing token of the (first) resource, or of the path.
    fn fence(&self) -> u64 {
        match self {
            Hold::Lock(g) => g.fencing_token(),
            Hold::Group(g) => g.members().first().map(|m| m.fencing_token()).unwrap_or_default(),
            Hold::Path(g) => g.members().last().map(|m| m.fencing_token()).unwrap_or_default(),
        }
    }

    async fn release(&mut self) -> warden::Result<()> {
        match self {
            Hold::Lock(g) => g.release().await,
            Hold::Group(g) | Hold::Path(g) => g.release().await,
        }
    }
}

/// Counts FIFO violations among `(call_start, fence)` pairs: a caller that started more than `slack` after
/// another (so the other was already queued) yet was granted first (lower fence). `slack` covers the
/// in-flight time of the first attempt.
pub fn fifo_violations(grants: &[(Instant, u64)], slack: Duration) -> u64 {
    let mut g = grants.to_vec();
    g.sort_unstable_by_key(|x| x.0);
    // suffix_min[i] = the lowest fence among calls that started at or after g[i].
    let mut suffix_min = vec![u64::MAX; g.len() + 1];
    for i in (0..g.len()).rev() {
        suffix_min[i] = suffix_min[i + 1].min(g[i].1);
    }
    let mut violations = 0;
    for (start, fence) in &g {
        let later = g.partition_point(|x| x.0 <= *start + slack);
        if suffix_min[later] < *fence {
            violations += 1;
        }
    }
    violations
}
