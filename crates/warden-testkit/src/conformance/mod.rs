//! The conformance suite: one set of behavioural tests that every backend must pass.
//! Instantiate it with [`crate::conformance_tests!`]. Tests that need a capability check that the backend
//! either declares it and honours it, or does not declare it.

mod condition;
mod election;
mod exclusion;
mod faults;
mod group;
mod leases;
mod paths;
mod priority;
mod queue;
mod semaphore;
mod views;

pub use condition::*;
pub use election::*;
pub use exclusion::*;
pub use faults::*;
pub use group::*;
pub use leases::*;
pub use paths::*;
pub use priority::*;
pub use queue::*;
pub use semaphore::*;
pub use views::*;

use crate::checker::{Hold, HoldLog};
use crate::eventually;
use crate::harness::Harness;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warden::analytics::AnalyticsOrder;
use warden::{Error, FifoGuarantee, LockKind, Warden};

pub(crate) const SEC: Duration = Duration::from_secs(1);

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Instantiates the whole suite for one harness constructor: `conformance_tests!(MemoryHarness::new());`
#[macro_export]
macro_rules! conformance_tests {
    ($make:expr) => {
        $crate::conformance_tests!(@each $make;
            mutual_exclusion, compatibility_matrix, expiry_frees_the_lock, wrong_token_refused,
            lost_signal_on_revoke, renewal_and_caps, fifo_order, prompt_handoff, dead_waiter_does_not_block,
            wait_timeout_honoured, fencing_increases, bad_inputs_rejected, backend_down, inspection_and_stats,
            run_helper_releases, election_handover, semaphore_permits, semaphore_fifo, semaphore_bound,
            group_all_or_nothing, group_no_deadlock, group_renew_and_lost, conditional_acquire);
    };
    (@each $make:expr; $($name:ident),*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let h = $make;
                $crate::conformance::$name(&h).await;
            }
        )*
    };
}
