//! Checkers: record holds and assert that incompatible holds never overlap and fences increase.

use std::sync::Mutex;
use tokio::time::Instant;

/// One recorded hold: [start, end] on the monotonic clock, with its fencing token and mode.
#[derive(Debug, Clone, Copy)]
pub struct Hold {
    /// When the grant was observed.
    pub start: Instant,
    /// min(release, validity deadline).
    pub end: Instant,
    /// The fencing token.
    pub fence: u64,
    /// Exclusive or shared.
    pub exclusive: bool,
}

/// Collects holds from many tasks.
#[derive(Debug, Default)]
pub struct HoldLog {
    holds: Mutex<Vec<Hold>>,
}

impl HoldLog {
    /// Records a hold.
    pub fn record(&self, h: Hold) {
        self.holds.lock().expect("hold log").push(h);
    }

    /// All holds so far.
    pub fn holds(&self) -> Vec<Hold> {
        self.holds.lock().expect("hold log").clone()
    }

    /// Panics if two incompatible holds overlap, or fences are not unique and increasing in grant order.
    pub fn assert_consistent(&self) {
        let mut h = self.holds();
        h.sort_by_key(|x| x.start);
        for (i, a) in h.iter().enumerate() {
            for b in &h[i + 1..] {
                if b.start >= a.end {
                    break;
                }
                assert!(
                    !(a.exclusive || b.exclusive),
                    "incompatible holds overlap: {a:?} and {b:?}"
                );
            }
        }
        let excl: Vec<&Hold> = h.iter().filter(|x| x.exclusive).collect();
        for w in excl.windows(2) {
            assert!(
                w[0].fence < w[1].fence,
                "fencing tokens not increasing in grant order: {:?} then {:?}",
                w[0],
                w[1]
            );
        }
        let mut fences: Vec<u64> = h.iter().map(|x| x.fence).collect();
        fences.sort_unstable();
        let n = fences.len();
        fences.dedup();
        assert_eq!(n, fences.len(), "a fencing token was handed out twice");
    }
}
