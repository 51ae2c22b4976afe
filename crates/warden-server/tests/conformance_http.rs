//! The conformance suite over `http://`: the library as a client of an in-process warden server, which runs
//! on the memory backend, on a real redis-server, on a real Redis Cluster, on a throwaway PostgreSQL and on a
//! throwaway MariaDB, on a throwaway etcd and on a throwaway ZooKeeper.

use std::sync::Mutex;
use tokio::sync::oneshot;
use warden::Warden;
use warden_testkit::cluster_harness::RedisClusterHarness;
use warden_testkit::etcd_harness::EtcdHarness;
use warden_testkit::harness::{Counter, Harness, MemoryHarness, RedisHarness, TEST_WAITER_LEASE};
use warden_testkit::mysql_harness::MysqlHarness;
use warden_testkit::postgres_harness::PostgresHarness;
use warden_testkit::zk_harness::ZkHarness;

type Stopper = (oneshot::Sender<()>, tokio::task::JoinHandle<std::io::Result<()>>);

struct HttpHarness {
    inner: Box<dyn Harness>,
    url: String,
    stop: Mutex<Option<Stopper>>,
    can_restart: bool,
    _reserve: tokio::net::TcpSocket,
}

impl HttpHarness {
    async fn over(inner: Box<dyn Harness>, can_restart: bool) -> Self {
        let warden = inner.client().await;
        // The port stays this harness's after the server stops: a second socket bound to it (SO_REUSEPORT,
        // never listening) keeps other tests from taking it, so connecting to a stopped server is refused at
        // once instead of reaching whatever bound the port next.
        let socket = || {
            let s = tokio::net::TcpSocket::new_v4().expect("socket");
            s.set_reuseport(true).expect("SO_REUSEPORT");
            s
        };
        let listen = socket();
        listen.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = listen.local_addr().expect("addr");
        let reserve = socket();
        reserve.bind(addr).expect("reserve the port");
        let listener = listen.listen(1024).expect("listen");
        let url = format!("http://{addr}");
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(warden_server::run(
            listener,
            warden,
            warden_server::ServerConfig::default(),
            async move {
                let _ = rx.await;
            },
        ));
        HttpHarness {
            inner,
            url,
            stop: Mutex::new(Some((tx, join))),
            can_restart,
            _reserve: reserve,
        }
    }
    async fn memory() -> Self {
        Self::over(Box::new(MemoryHarness::new()), false).await
    }
    async fn redis() -> Self {
        Self::over(Box::new(RedisHarness::new()), true).await
    }
    async fn redis_cluster() -> Self {
        Self::over(Box::new(RedisClusterHarness::new()), true).await
    }
    async fn postgres() -> Self {
        Self::over(Box::new(PostgresHarness::new()), true).await
    }
    async fn mysql() -> Self {
        Self::over(Box::new(MysqlHarness::new()), true).await
    }
    async fn etcd() -> Self {
        Self::over(Box::new(EtcdHarness::recording()), true).await
    }
    async fn zookeeper() -> Self {
        Self::over(Box::new(ZkHarness::recording()), true).await
    }
}

#[async_trait::async_trait]
impl Harness for HttpHarness {
    async fn client(&self) -> Warden {
        Warden::connect(&format!("{}?timeout_ms=1000", self.url))
            .await
            .expect("connect to the test server")
            .with_waiter_lease(TEST_WAITER_LEASE)
            .expect("waiter lease")
    }
    async fn revoke(&self, resource: &str) {
        self.inner.revoke(resource).await
    }
    async fn restart_losing_data(&self) -> bool {
        // The server keeps its connection to the backend; only a backend with an address can restart under it.
        self.can_restart && self.inner.restart_losing_data().await
    }
    async fn kill(&self) -> bool {
        let stop = self.stop.lock().expect("harness").take();
        if let Some((tx, join)) = stop {
            let _ = tx.send(());
            let _ = join.await;
        }
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = warden_testkit::refused_addr().ok()?;
        Some(format!("http://{addr}?timeout_ms=300"))
    }
    async fn counter(&self) -> std::sync::Arc<dyn Counter> {
        self.inner.counter().await
    }
}

mod over_memory {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::memory().await);
}

mod over_redis {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::redis().await);
}

mod over_redis_cluster {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::redis_cluster().await);
}

mod over_postgres {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::postgres().await);
}

mod over_mysql {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::mysql().await);
}

mod over_etcd {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::etcd().await);
}

mod over_zookeeper {
    use super::HttpHarness;
    warden_testkit::conformance_tests!(HttpHarness::zookeeper().await);
}
