//! A fixed-size log-bucket histogram of durations: four buckets per doubling from 4 µs up (each within 25% of
//! its values), exact below. 1 KiB whatever it counts, so a bounded set of resources costs bounded memory.
//! Written here rather than taken from `hdrhistogram`: its histograms size themselves by range and precision
//! (tens of KiB at three digits), and these need one coarse shape for thousands of resources.

use std::time::Duration;

/// Buckets: 4 exact (0..4 µs), then 4 per doubling up to 2^63 µs.
const BUCKETS: usize = 4 + 62 * 4;

/// Counts of durations by log bucket, with the exact maximum.
#[derive(Clone)]
pub(crate) struct Histogram {
    counts: Box<[u32; BUCKETS]>,
    total: u64,
    max_us: u64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("total", &self.total)
            .field("max_us", &self.max_us)
            .finish()
    }
}

fn index(us: u64) -> usize {
    if us < 4 {
        return us as usize;
    }
    let octave = 63 - us.leading_zeros() as usize; // >= 2
    let sub = ((us >> (octave - 2)) & 3) as usize;
    (octave - 1) * 4 + sub
}

/// The smallest value of bucket `i` and its width.
fn bounds(i: usize) -> (u64, u64) {
    if i < 4 {
        return (i as u64, 1);
    }
    let (octave, sub) = (i / 4 + 1, (i % 4) as u64);
    ((4 + sub) << (octave - 2), 1 << (octave - 2))
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: Box::new([0; BUCKETS]),
            total: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    /// Counts one duration.
    pub(crate) fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = index(us).min(BUCKETS - 1);
        // A bucket that would overflow stops counting; the total still counts (2^32 samples per resource).
        self.counts[i] = self.counts[i].saturating_add(1);
        self.total += 1;
        self.max_us = self.max_us.max(us);
    }

    /// How many durations were counted.
    pub(crate) fn total(&self) -> u64 {
        self.total
    }

    /// The exact maximum.
    pub(crate) fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }

    /// The `q`-quantile (0 < q <= 1): the middle of the bucket holding it, never above the maximum.
    pub(crate) fn quantile(&self, q: f64) -> Duration {
        let counted: u64 = self.counts.iter().map(|&c| u64::from(c)).sum();
        if counted == 0 {
            return Duration::ZERO;
        }
        let rank = ((q * counted as f64).ceil() as u64).clamp(1, counted);
        let mut seen = 0u64;
        for (i, &c) in self.counts.iter().enumerate() {
            seen += u64::from(c);
            if seen >= rank {
                let (low, width) = bounds(i);
                return Duration::from_micros((low + width / 2).min(self.max_us));
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_every_value_in_order_and_within_a_quarter() {
        let mut last = 0;
        for us in [0u64, 1, 3, 4, 5, 7, 8, 9, 15, 16, 1000, 1023, 1024, 1 << 40, u64::MAX] {
            let i = index(us);
            assert!(i >= last && i < BUCKETS, "{us} -> {i}");
            let (low, width) = bounds(i);
            assert!(low <= us && us - low < width, "{us} not in [{low}, +{width})");
            assert!(
                width == 1 || width * 4 <= low,
                "bucket {i} wider than a quarter of its values"
            );
            last = i;
        }
    }

    #[test]
    fn quantiles_land_within_a_bucket_of_the_truth() {
        let mut h = Histogram::default();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        assert_eq!(h.total(), 100);
        assert_eq!(h.max(), Duration::from_millis(100));
        for (q, truth) in [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)] {
            let got = h.quantile(q).as_secs_f64() * 1000.0;
            assert!((got - truth).abs() <= truth * 0.15, "p{q}: {got} ms, truth {truth} ms");
        }
        assert_eq!(Histogram::default().quantile(0.5), Duration::ZERO);
    }
}
