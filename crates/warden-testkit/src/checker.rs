//! The history checker: every hold recorded as [grant, min(release, validity deadline)] on the monotonic
//! clock with its fencing token, and a fence-checking store. [`HoldLog::check`] finds incompatible holds that
//! overlap, fencing tokens that do not increase in grant order or repeat; [`FenceStore`] refuses writes
//! whose token is below one it already accepted, and [`FenceStore::check`] proves it never took one.

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

/// What a consistent history held (for the scenario's figure).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Holds recorded.
    pub holds: usize,
    /// The highest fencing token seen.
    pub max_fence: u64,
}

/// Collects holds from many tasks.
#[derive(Debug, Default)]
pub struct HoldLog {
    holds: Mutex<Vec<Hold>>,
}

impl HoldLog {
    /// Records a hold.
    pub fn record(&self, h: Hold) {
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).push(h);
    }

    /// All holds so far.
    pub fn holds(&self) -> Vec<Hold> {
        self.holds.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Checks the history: no two incompatible holds overlap; exclusive holds' fencing tokens strictly
    /// increase in grant order; no token is handed out twice. Says what broke, with the holds involved.
    pub fn check(&self) -> Result<Summary, String> {
        let mut h = self.holds();
        h.sort_by_key(|x| x.start);
        for (i, a) in h.iter().enumerate() {
            for b in &h[i + 1..] {
                if b.start >= a.end {
                    break;
                }
                if a.exclusive || b.exclusive {
                    return Err(format!("incompatible holds overlap: {a:?} and {b:?}"));
                }
            }
        }
        Self::fences_of(&h)
    }

    /// Only the fencing part of [`HoldLog::check`]: exclusive holds' tokens increase in grant order and
    /// none repeats, whether or not holds overlapped (after a backend lost its data, they may).
    pub fn check_fences(&self) -> Result<Summary, String> {
        let mut h = self.holds();
        h.sort_by_key(|x| x.start);
        Self::fences_of(&h)
    }

    fn fences_of(h: &[Hold]) -> Result<Summary, String> {
        let excl: Vec<&Hold> = h.iter().filter(|x| x.exclusive).collect();
        for w in excl.windows(2) {
            if w[0].fence >= w[1].fence {
                return Err(format!(
                    "fencing tokens not increasing in grant order: {:?} then {:?}",
                    w[0], w[1]
                ));
            }
        }
        let mut fences: Vec<u64> = h.iter().map(|x| x.fence).collect();
        fences.sort_unstable();
        if let Some(w) = fences.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("fencing token {} was handed out twice", w[0]));
        }
        Ok(Summary {
            holds: h.len(),
            max_fence: fences.last().copied().unwrap_or(0),
        })
    }

    /// Panics with [`HoldLog::check`]'s finding.
    pub fn assert_consistent(&self) -> Summary {
        match self.check() {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        }
    }
}

/// A store that checks fencing tokens, as a database guarded by warden should: a write carrying a token
/// below the highest it accepted is refused.
#[derive(Debug, Default)]
pub struct FenceStore {
    inner: Mutex<StoreState>,
}

#[derive(Debug, Default)]
struct StoreState {
    highest: u64,
    value: u64,
    accepted: Vec<u64>,
    refused: u64,
}

impl FenceStore {
    /// Adds one to the stored value if `fence` is not below the highest accepted token; returns whether the
    /// write was accepted.
    pub fn increment(&self, fence: u64) -> bool {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if fence < s.highest {
            s.refused += 1;
            return false;
        }
        s.highest = fence;
        s.value += 1;
        s.accepted.push(fence);
        true
    }

    /// Records a write as a store without the check would have taken it (used to check the checker).
    pub fn increment_unchecked(&self, fence: u64) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        s.highest = s.highest.max(fence);
        s.value += 1;
        s.accepted.push(fence);
    }

    /// The stored value.
    pub fn value(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).value
    }

    /// Writes refused as stale.
    pub fn refused(&self) -> u64 {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).refused
    }

    /// Checks that the accepted writes' tokens never went down: no stale write got in.
    pub fn check(&self) -> Result<usize, String> {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match s.accepted.windows(2).position(|w| w[1] < w[0]) {
            Some(i) => Err(format!(
                "a stale write was accepted: token {} after token {} (write #{})",
                s.accepted[i + 1],
                s.accepted[i],
                i + 2
            )),
            None => Ok(s.accepted.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn hold(start_ms: u64, end_ms: u64, fence: u64, exclusive: bool) -> Hold {
        let t0 = Instant::now();
        Hold {
            start: t0 + Duration::from_millis(start_ms),
            end: t0 + Duration::from_millis(end_ms),
            fence,
            exclusive,
        }
    }

    fn log(holds: &[Hold]) -> HoldLog {
        let l = HoldLog::default();
        for h in holds {
            l.record(*h);
        }
        l
    }

    #[test]
    fn a_clean_history_passes() {
        let l = log(&[
            hold(0, 10, 1, true),
            hold(10, 20, 2, true),
            hold(20, 30, 3, false),
            hold(25, 35, 4, false),
        ]);
        assert_eq!(l.check(), Ok(Summary { holds: 4, max_fence: 4 }));
    }

    #[test]
    fn a_fabricated_overlap_is_caught() {
        let l = log(&[hold(0, 10, 1, true), hold(9, 20, 2, true)]);
        assert!(l.check().is_err_and(|e| e.contains("overlap")));
        // A reader inside a writer's hold is an overlap too; two readers are not.
        let l = log(&[hold(0, 10, 1, true), hold(5, 6, 2, false)]);
        assert!(l.check().is_err_and(|e| e.contains("overlap")));
    }

    #[test]
    fn tokens_out_of_grant_order_or_repeated_are_caught() {
        let l = log(&[hold(0, 10, 5, true), hold(10, 20, 4, true)]);
        assert!(l.check().is_err_and(|e| e.contains("not increasing")));
        let l = log(&[hold(0, 10, 5, false), hold(0, 10, 5, false)]);
        assert!(l.check().is_err_and(|e| e.contains("twice")));
    }

    #[test]
    fn the_store_refuses_stale_writes_and_its_check_catches_one_let_in() {
        let s = FenceStore::default();
        assert!(s.increment(3));
        assert!(s.increment(3));
        assert!(s.increment(7));
        assert!(!s.increment(5), "a stale token was accepted");
        assert_eq!((s.value(), s.refused()), (3, 1));
        assert_eq!(s.check(), Ok(3));
        s.increment_unchecked(4);
        assert!(s.check().is_err_and(|e| e.contains("stale write")));
    }
}
