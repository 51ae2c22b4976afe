//! Which URL scheme opens which backend: one line per backend, behind its Cargo feature.

use super::Backend;
use crate::error::Result;
use futures::future::BoxFuture;
use std::sync::Arc;

/// Opens the backend a URL names.
pub type Connect = fn(String) -> BoxFuture<'static, Result<Arc<dyn Backend>>>;

/// A backend's entry: its scheme, how its URL looks, and how to open one.
#[derive(Clone, Copy)]
pub struct Scheme {
    /// The URL scheme, without `://`.
    pub scheme: &'static str,
    /// A URL of this scheme, for error messages.
    pub example: &'static str,
    /// Opens the backend a URL of this scheme names.
    pub connect: Connect,
}

impl std::fmt::Debug for Scheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.example)
    }
}

/// An entry for a backend type with `async fn connect(url: &str) -> Result<Self>`.
macro_rules! scheme {
    ($scheme:literal, $example:literal, $backend:ty) => {
        Scheme {
            scheme: $scheme,
            example: $example,
            connect: |url| Box::pin(async move { Ok(Arc::new(<$backend>::connect(&url).await?) as Arc<dyn Backend>) }),
        }
    };
}

/// Every backend this build has.
#[rustfmt::skip]
pub const SCHEMES: &[Scheme] = &[
    scheme!("memory", "memory://", super::memory::MemoryBackend),
    #[cfg(feature = "redis")]
    scheme!("redis", "redis://host:port", super::redis::RedisBackend),
    #[cfg(feature = "redis")]
    scheme!("rediss", "rediss://host:port", super::redis::RedisBackend),
    #[cfg(feature = "redis")]
    scheme!("redis+cluster", "redis+cluster://h1:p,h2:p", super::redis_cluster::RedisClusterBackend),
    #[cfg(feature = "redis")]
    scheme!("rediss+cluster", "rediss+cluster://h1:p,h2:p", super::redis_cluster::RedisClusterBackend),
    #[cfg(feature = "redis")]
    scheme!("redis+sentinel", "redis+sentinel://s1:26379,s2:26379/name", super::redis_sentinel::RedisSentinelBackend),
    #[cfg(feature = "redis")]
    scheme!("rediss+sentinel", "rediss+sentinel://s1:26379,s2:26379/name", super::redis_sentinel::RedisSentinelBackend),
    #[cfg(feature = "redis")]
    scheme!("redlock", "redlock://h1:p,h2:p,h3:p", super::redlock::RedlockBackend),
    #[cfg(feature = "postgres")]
    scheme!("postgres", "postgres://user@host:port/db", super::postgres::PostgresBackend),
    #[cfg(feature = "postgres")]
    scheme!("postgresql", "postgresql://user@host:port/db", super::postgres::PostgresBackend),
    #[cfg(feature = "mysql")]
    scheme!("mysql", "mysql://user@host:port/db", super::mysql::MysqlBackend),
    #[cfg(feature = "mysql")]
    scheme!("mariadb", "mariadb://user@host:port/db", super::mysql::MysqlBackend),
    #[cfg(feature = "etcd")]
    scheme!("etcd", "etcd://h1:2379,h2:2379,h3:2379", super::etcd::EtcdBackend),
    #[cfg(feature = "zookeeper")]
    scheme!("zk", "zk://h1:2181,h2:2181,h3:2181/warden", super::zookeeper::ZkBackend),
    #[cfg(feature = "zookeeper")]
    scheme!("zookeeper", "zookeeper://h1:2181,h2:2181,h3:2181/warden", super::zookeeper::ZkBackend),
    #[cfg(feature = "http")]
    scheme!("http", "http://host:port", super::http::HttpBackend),
    #[cfg(feature = "http")]
    scheme!("https", "https://host:port", super::http::HttpBackend),
];
