//! The chaos suite's workload: clients contending for one resource while faults are injected, every hold
//! recorded for the [`HoldLog`] checker and every protected write sent to a [`FenceStore`].
//!
//! Scale comes from the environment so the same scenarios run briefly in CI and long in the soak
//! (`scripts/soak.sh`): `WARDEN_CHAOS_SECS` (seconds of load per scenario) and `WARDEN_CHAOS_CLIENTS`.

use crate::checker::{FenceStore, Hold, HoldLog};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden::{Error, Warden};

/// How long and how wide a scenario runs.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Seconds of load.
    pub duration: Duration,
    /// Concurrent clients.
    pub clients: usize,
}

impl Scale {
    /// From `WARDEN_CHAOS_SECS` / `WARDEN_CHAOS_CLIENTS`, else the given defaults (the CI size).
    pub fn from_env(secs: u64, clients: usize) -> Self {
        let read = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        Scale {
            duration: Duration::from_secs(read("WARDEN_CHAOS_SECS").unwrap_or(secs).max(1)),
            clients: read("WARDEN_CHAOS_CLIENTS").map_or(clients, |n| n.max(1) as usize),
        }
    }
}

/// What each client does per cycle.
#[derive(Debug, Clone)]
pub struct Workload {
    /// The contended resource.
    pub resource: String,
    /// Lease length.
    pub ttl: Duration,
    /// How long an acquire waits.
    pub wait: Duration,
    /// One cycle in this many, the holder stalls (as a GC pause would) for [`Workload::pause`] before it
    /// writes, with renewal off: its lease runs out and its write comes late. `0`: never.
    pub pause_one_in: u64,
    /// The stall.
    pub pause: Duration,
    /// Longest time a holder works (renewing) before its write; each hold picks 0..=this at random.
    pub work: Duration,
}

impl Workload {
    /// A workload on `resource` with a 1 s lease, 5 s waits and no stalls.
    pub fn new(resource: &str) -> Self {
        Workload {
            resource: resource.to_string(),
            ttl: Duration::from_secs(1),
            wait: Duration::from_secs(5),
            pause_one_in: 0,
            pause: Duration::ZERO,
            work: Duration::ZERO,
        }
    }
}

/// Counts of a run, shared by its clients.
#[derive(Debug, Default)]
pub struct Tally {
    /// Grants.
    pub grants: AtomicU64,
    /// Acquires that failed (backend down, quorum lost, waited out).
    pub failed: AtomicU64,
    /// Holders that stalled past their lease.
    pub stalled: AtomicU64,
    /// Releases answered `lease_lost` / `not_found` (the lease had ended).
    pub lost: AtomicU64,
    /// Releases that could not reach the backend (the guard retries them in the background).
    pub unreached: AtomicU64,
}

impl Tally {
    fn add(n: &AtomicU64) {
        n.fetch_add(1, Ordering::Relaxed);
    }

    /// (grants, failed acquires, stalls, releases of ended leases).
    pub fn get(&self) -> (u64, u64, u64, u64) {
        (
            self.grants.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
            self.stalled.load(Ordering::Relaxed),
            self.lost.load(Ordering::Relaxed),
        )
    }
}

/// One contending client: cycles until `stop`, recording holds and writing once per hold.
pub async fn client(
    w: Warden,
    load: Workload,
    seed: u64,
    log: Arc<HoldLog>,
    store: Arc<FenceStore>,
    tally: Arc<Tally>,
    stop: CancellationToken,
) {
    let mut cycle = seed;
    while !stop.is_cancelled() {
        cycle += 1;
        let stall = load.pause_one_in > 0 && cycle % load.pause_one_in == 0;
        let got = tokio::select! {
            _ = stop.cancelled() => return,
            g = w.lock(load.resource.as_str()).ttl(load.ttl).wait(load.wait).auto_renew(!stall).acquire() => g,
        };
        let mut g = match got {
            Ok(g) => g,
            Err(e) => {
                Tally::add(&tally.failed);
                if e.is_retryable() {
                    // The backend is down or being restarted: a real client backs off before it retries.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                continue;
            }
        };
        let start = Instant::now();
        Tally::add(&tally.grants);
        if stall {
            Tally::add(&tally.stalled);
            tokio::time::sleep(load.pause).await;
        }
        if !load.work.is_zero() {
            let ms = load.work.as_millis() as u64;
            tokio::time::sleep(Duration::from_millis(rand_below(cycle, ms + 1))).await;
        }
        // The protected write carries the fencing token; the store refuses it if a later holder wrote first.
        store.increment(g.fencing_token());
        let end = Instant::now().min(g.valid_until());
        if end > start {
            log.record(Hold {
                start,
                end,
                fence: g.fencing_token(),
                exclusive: true,
            });
        }
        match g.release().await {
            Ok(()) => {}
            Err(Error::LeaseLost { .. } | Error::NotFound { .. }) => Tally::add(&tally.lost),
            Err(_) => Tally::add(&tally.unreached),
        }
    }
}

/// A cheap deterministic spread of `0..n` from `x` (splitmix64): work times differ per cycle and client.
fn rand_below(x: u64, n: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)) % n.max(1)
}

/// Everything a scenario checks and prints.
pub struct Run {
    /// Holds.
    pub log: Arc<HoldLog>,
    /// The fenced store.
    pub store: Arc<FenceStore>,
    /// Counts.
    pub tally: Arc<Tally>,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    started: Instant,
}

impl Run {
    /// Starts one contending client per [`Warden`] in `clients` on `load`.
    pub fn start(clients: Vec<Warden>, load: &Workload) -> Self {
        let (log, store, tally) = (
            Arc::new(HoldLog::default()),
            Arc::new(FenceStore::default()),
            Arc::new(Tally::default()),
        );
        let stop = CancellationToken::new();
        let tasks = clients
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                tokio::spawn(client(
                    w,
                    load.clone(),
                    i as u64 * 1_000_003,
                    log.clone(),
                    store.clone(),
                    tally.clone(),
                    stop.clone(),
                ))
            })
            .collect();
        Run {
            log,
            store,
            tally,
            stop,
            tasks,
            started: Instant::now(),
        }
    }

    /// Stops the clients (in-flight acquires are dropped, which leaves their queues) and waits for them.
    pub async fn stop(mut self) -> Self {
        self.stop.cancel();
        for t in self.tasks.drain(..) {
            t.await.expect("a chaos client panicked");
        }
        self
    }

    /// How long after `t` the first grant came (the recovery time after a fault ended at `t`).
    pub fn first_grant_after(&self, t: Instant) -> Option<Duration> {
        self.log
            .holds()
            .iter()
            .filter(|h| h.start >= t)
            .map(|h| h.start - t)
            .min()
    }

    /// Checks the history and the store; returns the scenario's figure line.
    pub fn verdict(&self, name: &str, check_overlap: bool) -> String {
        let written = match self.store.check() {
            Ok(n) => n,
            Err(e) => panic!("{name}: {e}"),
        };
        let checked = if check_overlap {
            self.log.check()
        } else {
            self.log.check_fences()
        };
        let holds = match checked {
            Ok(s) => s.holds,
            Err(e) => panic!("{name}: {e}"),
        };
        let (grants, failed, stalled, lost) = self.tally.get();
        assert_eq!(
            self.store.value() + self.store.refused(),
            grants,
            "{name}: every grant made exactly one write attempt"
        );
        assert_eq!(self.store.value() as usize, written);
        format!(
            "{name}: {grants} grants in {:.1} s, {holds} holds checked, {} writes accepted, {} stale writes \
             refused, {stalled} holders stalled past their lease, {lost} releases of ended leases, {} releases \
             that could not reach the backend, {failed} failed acquires",
            self.started.elapsed().as_secs_f64(),
            self.store.value(),
            self.store.refused(),
            self.tally.unreached.load(Ordering::Relaxed),
        )
    }
}
