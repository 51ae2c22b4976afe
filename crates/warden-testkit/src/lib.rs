//! Test-only helpers for warden: real `redis-server` processes on free ports ([`RedisServer`]), throwaway
//! PostgreSQL and MariaDB servers ([`PostgresServer`], [`MariaDbServer`]), the
//! conformance suite every backend runs ([`conformance`]), harnesses per backend ([`harness`]) and checkers.

mod certs;
pub mod chaos;
pub mod checker;
pub mod cluster_harness;
pub mod conformance;
pub mod etcd_harness;
pub mod etcd_server;
pub mod harness;
pub mod mariadb_server;
pub mod mix;
pub mod monitor;
pub mod mysql_harness;
pub mod one_process;
pub mod postgres_harness;
pub mod postgres_server;
pub mod proxy;
pub mod redis_cluster;
pub mod redis_sentinel;
pub mod redis_server;
pub mod sql_faults;
pub mod tls_checks;
pub mod zk_harness;
pub mod zk_server;

pub use etcd_server::EtcdCluster;
pub use mariadb_server::MariaDbServer;
pub use postgres_server::PostgresServer;
pub use redis_cluster::RedisCluster;
pub use redis_server::{free_port, refused_addr, RedisServer};
pub use zk_server::ZkEnsemble;

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

/// Nanoseconds on CLOCK_MONOTONIC: the clock every process on the machine shares, so holds recorded by
/// different processes can be checked against each other.
pub fn mono_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}
