//! Test-only helpers for warden: real `redis-server` processes on free ports ([`RedisServer`]), the
//! conformance suite every backend runs ([`conformance`]), harnesses per backend ([`harness`]) and checkers.

pub mod chaos;
pub mod checker;
pub mod conformance;
pub mod harness;
pub mod monitor;
pub mod proxy;
pub mod redis_server;

pub use redis_server::{free_port, refused_addr, RedisServer};

use std::future::Future;
use std::time::Duration;

/// Polls `cond` (every 2 ms) until it is true or `within` has passed; returns whether it became true.
/// For conditions no notification exists for (a waiter showing up in another process's queue).
pub async fn eventually<F, Fut>(within: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
