//! # warden
//!
//! Distributed locks and leader election with leases, owner tokens, renewal, FIFO waiting and fencing tokens,
//! over several backends chosen by URL: `memory://` (in-process), `redis://host:port/db` (one Redis node),
//! `redlock://h1:p1,h2:p2,h3:p3` (Redlock over N independent Redis nodes) and `http://host:port` (a warden
//! server). Each backend declares what it guarantees in [`Capabilities`].
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! let warden = warden::Warden::connect("memory://").await?;
//! let stock = warden
//!     .lock("inventory:sku-1")
//!     .ttl(Duration::from_secs(10))
//!     .wait(Duration::from_secs(2))
//!     .run(|lease| async move {
//!         // Every write to the protected resource carries lease.fencing_token(); the resource rejects
//!         // tokens lower than the highest it has seen, so a stale holder cannot overwrite.
//!         lease.fencing_token()
//!     })
//!     .await?;
//! assert!(stock > 0);
//! # Ok::<(), warden::Error>(())
//! # }).unwrap();
//! ```
//!
//! Guarantees: mutual exclusion holds while process pauses and network delays stay below the lease's
//! remaining validity (`ttl - elapsed - drift`, measured on the client's monotonic clock from before the
//! request) and backend clocks advance at about the same rate. Outside that model the fencing token lets the
//! protected resource reject a stale holder.

pub mod analytics;
pub mod backend;
pub mod condition;
pub mod election;
pub mod error;
pub mod lock;
pub mod token;
pub mod types;
pub mod validate;
pub mod wake;
pub mod watch;
#[cfg(feature = "http")]
pub mod wire;

pub use backend::Backend;
pub use condition::Condition;
pub use election::{Election, LeaderInfo, Leadership};
pub use error::{Error, Result};
pub use lock::{GroupBuilder, GroupGuard, LeaseContext, LockBuilder, LockGuard, PathBuilder, Warden};
pub use token::lease_handle;
pub use types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Grant, Health, HealthStatus, LeaseInfo, LockKind, NodeHealth,
    QueueEntry, Released, Renewal, ResourceInfo, Stats,
};
