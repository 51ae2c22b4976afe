//! Per-resource lock analytics of one process: grants, contention (the share of acquires that waited), wait
//! and hold time percentiles, timeouts, refusals and expiries. Recorded in memory by the [`crate::Warden`]
//! handle (and its clones) for the acquires made through it; nothing is written to the backend. An
//! uncontended acquire costs one counter increment; waits are measured only when an acquire waited.
//!
//! At most [`MAX_TRACKED`] resources are tracked: when a new one would pass it, the half of the set with the
//! fewest acquires is forgotten (counted in [`AnalyticsReport::forgotten`]), so the hottest stay.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use warden::analytics::AnalyticsOrder;
//! let w = warden::Warden::connect("memory://").await.unwrap();
//! w.lock("orders").acquire().await.unwrap().release().await.unwrap();
//! let report = w.analytics().report(10, AnalyticsOrder::Grants);
//! let orders = &report.resources[0];
//! assert_eq!((orders.resource.as_str(), orders.grants, orders.waited), ("orders", 1, 0));
//! assert_eq!(orders.hold.as_ref().map(|h| h.count), Some(1));
//! # });
//! ```

mod histogram;

use histogram::Histogram;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::str::FromStr;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Most resources tracked at once per handle.
pub const MAX_TRACKED: usize = 4096;
/// Shards of the resource map: acquires of different resources rarely wait on one another's bookkeeping.
const SHARDS: usize = 16;
const PER_SHARD: usize = MAX_TRACKED / SHARDS;

#[derive(Default)]
struct Entry {
    grants: u64,
    waited: u64,
    timeouts: u64,
    refused: u64,
    expiries: u64,
    wait: Option<Histogram>,
    hold: Option<Histogram>,
}

impl Entry {
    fn acquires(&self) -> u64 {
        self.grants + self.timeouts + self.refused
    }
}

/// foldhash: a few nanoseconds per resource name where SipHash takes tens (this runs at every acquire).
type Hasher = foldhash::fast::RandomState;

#[derive(Default)]
struct Shard {
    entries: HashMap<Box<str>, Entry, Hasher>,
    forgotten: u64,
}

impl Shard {
    fn entry(&mut self, resource: &str) -> &mut Entry {
        if !self.entries.contains_key(resource) && self.entries.len() >= PER_SHARD {
            // Keep the busier half: one sort per PER_SHARD / 2 new resources.
            let mut by_use: Vec<(u64, Box<str>)> =
                self.entries.iter().map(|(k, e)| (e.acquires(), k.clone())).collect();
            by_use.sort_unstable();
            for (_, k) in by_use.into_iter().take(PER_SHARD / 2) {
                self.entries.remove(&k);
                self.forgotten += 1;
            }
        }
        self.entries.entry(resource.into()).or_default()
    }
}

/// The recorder a [`crate::Warden`] handle and its clones share.
pub struct Analytics {
    shards: Vec<Mutex<Shard>>,
    hasher: Hasher,
    since: SystemTime,
}

impl std::fmt::Debug for Analytics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Analytics").field("since", &self.since).finish()
    }
}

impl Default for Analytics {
    fn default() -> Self {
        Analytics {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            since: SystemTime::now(),
        }
    }
}

/// How an acquire ended, as [`Analytics::record_acquire`] counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Granted at the first attempt.
    Granted,
    /// Granted after waiting this long.
    GrantedAfter(Duration),
    /// The wait ran out (or a try found the resource held).
    TimedOut,
    /// Its condition did not hold.
    Refused,
}

impl Analytics {
    fn with(&self, resource: &str, f: impl FnOnce(&mut Entry)) {
        let shard = &self.shards[(self.hasher.hash_one(resource) as usize) % SHARDS];
        let mut s = shard.lock().unwrap_or_else(|p| p.into_inner());
        f(s.entry(resource))
    }

    /// Counts an acquire of `resource` that ended with `outcome`.
    pub fn record_acquire(&self, resource: &str, outcome: Outcome) {
        self.with(resource, |e| match outcome {
            Outcome::Granted => e.grants += 1,
            Outcome::GrantedAfter(d) => {
                e.grants += 1;
                e.waited += 1;
                e.wait.get_or_insert_with(Histogram::default).record(d);
            }
            Outcome::TimedOut => {
                e.timeouts += 1;
                e.waited += 1;
            }
            Outcome::Refused => e.refused += 1,
        })
    }

    /// Counts a lease of `resource` released after `held` (for services that release by lock id, which the
    /// handle cannot attribute to a resource itself).
    pub fn record_release(&self, resource: &str, held: Duration) {
        self.with(resource, |e| e.hold.get_or_insert_with(Histogram::default).record(held))
    }

    /// Counts a lease of `resource` that ended without a release (its holder died, stalled or lost it), after
    /// being held `held` if known.
    pub fn record_expiry(&self, resource: &str, held: Option<Duration>) {
        self.with(resource, |e| {
            e.expiries += 1;
            if let Some(d) = held {
                e.hold.get_or_insert_with(Histogram::default).record(d);
            }
        })
    }

    /// The `top` resources by `order`, most first (ties by name).
    pub fn report(&self, top: usize, order: AnalyticsOrder) -> AnalyticsReport {
        let mut all = Vec::new();
        let mut forgotten = 0;
        for shard in &self.shards {
            let s = shard.lock().unwrap_or_else(|p| p.into_inner());
            forgotten += s.forgotten;
            all.extend(s.entries.iter().map(|(k, e)| ResourceAnalytics::of(k, e)));
        }
        let tracked = all.len();
        all.sort_by(|a, b| order.cmp(b, a).then_with(|| a.resource.cmp(&b.resource)));
        all.truncate(top);
        AnalyticsReport {
            since: self.since,
            order,
            tracked,
            forgotten,
            resources: all,
        }
    }
}

/// Duration percentiles of one measure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Percentiles {
    /// How many durations were measured.
    pub count: u64,
    /// Median (within a quarter: bucketed).
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// The longest, exact.
    pub max: Duration,
}

impl Percentiles {
    fn of(h: &Histogram) -> Self {
        Percentiles {
            count: h.total(),
            p50: h.quantile(0.5),
            p90: h.quantile(0.9),
            p99: h.quantile(0.99),
            max: h.max(),
        }
    }
}

/// What one process saw of one resource.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ResourceAnalytics {
    /// The resource.
    pub resource: String,
    /// Acquires that ended: granted, timed out or refused.
    pub acquires: u64,
    /// Acquires granted.
    pub grants: u64,
    /// Acquires not granted at their first attempt: granted after a wait, or timed out.
    pub waited: u64,
    /// Acquires whose wait ran out.
    pub timeouts: u64,
    /// Conditional acquires refused because the condition did not hold.
    pub refused: u64,
    /// Leases that ended without a release.
    pub expiries: u64,
    /// How long granted acquires that waited waited.
    pub wait: Option<Percentiles>,
    /// How long leases were held, grant to release (or expiry).
    pub hold: Option<Percentiles>,
}

impl ResourceAnalytics {
    fn of(resource: &str, e: &Entry) -> Self {
        ResourceAnalytics {
            resource: resource.to_string(),
            acquires: e.acquires(),
            grants: e.grants,
            waited: e.waited,
            timeouts: e.timeouts,
            refused: e.refused,
            expiries: e.expiries,
            wait: e.wait.as_ref().map(Percentiles::of),
            hold: e.hold.as_ref().map(Percentiles::of),
        }
    }

    /// The share of acquires that waited, 0.0..=1.0.
    pub fn contention(&self) -> f64 {
        if self.acquires == 0 {
            return 0.0;
        }
        self.waited as f64 / self.acquires as f64
    }
}

/// What [`Analytics::report`] ranks resources by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AnalyticsOrder {
    /// Most grants: the hottest.
    #[default]
    Grants,
    /// Most acquires that waited: the most contended (then the higher share).
    Contention,
    /// Longest 99th-percentile wait.
    Wait,
    /// Longest 99th-percentile hold.
    Hold,
    /// Most expiries.
    Expiries,
}

impl AnalyticsOrder {
    /// Every order.
    pub const ALL: [AnalyticsOrder; 5] = [
        AnalyticsOrder::Grants,
        AnalyticsOrder::Contention,
        AnalyticsOrder::Wait,
        AnalyticsOrder::Hold,
        AnalyticsOrder::Expiries,
    ];

    /// The order's name, as [`FromStr`] reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalyticsOrder::Grants => "grants",
            AnalyticsOrder::Contention => "contention",
            AnalyticsOrder::Wait => "wait",
            AnalyticsOrder::Hold => "hold",
            AnalyticsOrder::Expiries => "expiries",
        }
    }

    fn cmp(self, a: &ResourceAnalytics, b: &ResourceAnalytics) -> std::cmp::Ordering {
        let p99 = |p: &Option<Percentiles>| p.as_ref().map(|p| p.p99);
        match self {
            AnalyticsOrder::Grants => a.grants.cmp(&b.grants),
            AnalyticsOrder::Contention => a
                .waited
                .cmp(&b.waited)
                .then_with(|| a.contention().total_cmp(&b.contention())),
            AnalyticsOrder::Wait => p99(&a.wait).cmp(&p99(&b.wait)),
            AnalyticsOrder::Hold => p99(&a.hold).cmp(&p99(&b.hold)),
            AnalyticsOrder::Expiries => a.expiries.cmp(&b.expiries),
        }
    }
}

impl FromStr for AnalyticsOrder {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s).ok_or_else(|| {
            crate::Error::invalid(
                "by",
                format!("`{s}` is not an order: use grants, contention, wait, hold or expiries"),
            )
        })
    }
}

/// The answer of [`Analytics::report`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AnalyticsReport {
    /// When this handle began recording.
    pub since: SystemTime,
    /// What the resources are ranked by.
    pub order: AnalyticsOrder,
    /// Resources tracked now.
    pub tracked: usize,
    /// Resources forgotten to stay within [`MAX_TRACKED`].
    pub forgotten: u64,
    /// The top resources, most first.
    pub resources: Vec<ResourceAnalytics>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rank_and_forget_the_quietest_when_full() {
        let a = Analytics::default();
        for _ in 0..3 {
            a.record_acquire("hot", Outcome::Granted);
        }
        a.record_acquire("hot", Outcome::GrantedAfter(Duration::from_millis(4)));
        a.record_acquire("busy", Outcome::TimedOut);
        a.record_acquire("busy", Outcome::GrantedAfter(Duration::from_millis(2)));
        a.record_expiry("busy", None);
        let by_grants = a.report(10, AnalyticsOrder::Grants);
        assert_eq!(
            by_grants
                .resources
                .iter()
                .map(|r| r.resource.as_str())
                .collect::<Vec<_>>(),
            ["hot", "busy"]
        );
        let busy = &a.report(1, AnalyticsOrder::Contention).resources[0];
        assert_eq!(
            (busy.resource.as_str(), busy.acquires, busy.waited, busy.timeouts),
            ("busy", 2, 2, 1)
        );
        assert_eq!((busy.contention(), busy.expiries), (1.0, 1));
        assert_eq!(a.report(1, AnalyticsOrder::Wait).resources[0].resource, "hot");

        for i in 0..MAX_TRACKED * 2 {
            a.record_acquire(&format!("cold-{i}"), Outcome::Granted);
        }
        let r = a.report(2, AnalyticsOrder::Grants);
        assert!(r.tracked <= MAX_TRACKED, "{} tracked", r.tracked);
        assert!(r.forgotten >= MAX_TRACKED as u64, "{} forgotten", r.forgotten);
        assert_eq!(r.resources[0].resource, "hot", "the hottest is never the one forgotten");
        assert!("latency".parse::<AnalyticsOrder>().is_err());
    }
}
