//! The conformance suite's harness over a throwaway MariaDB, and a counter kept in one of its tables.

use crate::harness::{Counter, Harness};
use crate::MariaDbServer;
use mysql_async::prelude::Queryable;
use std::sync::{Arc, Mutex};
use warden::Warden;

/// One throwaway MariaDB server for the test, with a database `warden`; clients use the default table prefix
/// `warden_`.
pub struct MysqlHarness {
    /// The server (public so tests can pause or restart it).
    pub server: Mutex<MariaDbServer>,
    url: String,
}

impl MysqlHarness {
    /// Starts a fresh MariaDB server and creates the database `warden`.
    pub fn new() -> Self {
        let server = MariaDbServer::start();
        let port = server.port();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async {
                let mut c = connect(&format!("mysql://root@127.0.0.1:{port}/mysql")).await;
                c.query_drop("CREATE DATABASE IF NOT EXISTS warden")
                    .await
                    .expect("create the database");
                let _ = c.disconnect().await;
            })
        })
        .join()
        .expect("create the database");
        MysqlHarness {
            server: Mutex::new(server),
            url: format!("mysql://root@127.0.0.1:{port}/warden?timeout_ms=500&pool_size=8"),
        }
    }
    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The server's own URL for the database `warden` (the test's superuser, no warden options).
    pub fn server_url(&self) -> String {
        let port = self.server.lock().expect("server").port();
        format!("mysql://root@127.0.0.1:{port}/warden")
    }
    /// Runs SQL statements (one per entry) on the server as the test's superuser.
    pub async fn sql(&self, statements: &[&str]) {
        let mut c = connect(&self.server_url()).await;
        for s in statements {
            c.query_drop(*s).await.expect("SQL of the harness");
        }
        let _ = c.disconnect().await;
    }
}

impl Default for MysqlHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// One connection to `url`.
pub async fn connect(url: &str) -> mysql_async::Conn {
    let opts = mysql_async::Opts::from_url(url).expect("a test URL");
    mysql_async::Conn::new(opts).await.expect("connect to the test mariadb")
}

#[async_trait::async_trait]
impl Harness for MysqlHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        // The leases stay, expired: their holders' renewals find them lost.
        let quoted = resource.replace('\\', "\\\\").replace('\'', "''");
        self.sql(&[
            &format!(
                "UPDATE warden_resources SET excl_until = LEAST(excl_until, warden_now_us() - 1), shared_until = 0 \
                 WHERE resource = '{quoted}'"
            ),
            &format!(
                "UPDATE warden_leases SET expires_us = warden_now_us() - 1 \
                 WHERE resource = '{quoted}' AND expires_us > warden_now_us()"
            ),
        ])
        .await;
    }
    async fn restart_losing_data(&self) -> bool {
        // As if an empty (or older) backup were restored: every lease, queue and fence counter is gone.
        self.sql(&[
            "TRUNCATE warden_leases",
            "TRUNCATE warden_resources",
            "TRUNCATE warden_waiters",
            "TRUNCATE warden_inbox",
        ])
        .await;
        self.server.lock().expect("server").restart();
        true
    }
    async fn kill(&self) -> bool {
        self.server.lock().expect("server").kill();
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("mysql://warden@{addr}/warden?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let mut c = connect(&self.server_url()).await;
        c.query_drop("CREATE TABLE IF NOT EXISTS conformance_counter (id INT PRIMARY KEY, v BIGINT NOT NULL)")
            .await
            .expect("counter table");
        Arc::new(MysqlCounter {
            conn: tokio::sync::Mutex::new(c),
        })
    }
}

/// A counter in a table row, read with SELECT and written with an upsert (no atomic increment).
pub struct MysqlCounter {
    conn: tokio::sync::Mutex<mysql_async::Conn>,
}

#[async_trait::async_trait]
impl Counter for MysqlCounter {
    async fn get(&self) -> u64 {
        let mut c = self.conn.lock().await;
        let v: Option<i64> = c
            .query_first("SELECT v FROM conformance_counter WHERE id = 1")
            .await
            .expect("read counter");
        v.unwrap_or(0) as u64
    }
    async fn set(&self, v: u64) {
        let mut c = self.conn.lock().await;
        c.exec_drop(
            "INSERT INTO conformance_counter (id, v) VALUES (1, ?) ON DUPLICATE KEY UPDATE v = VALUES(v)",
            (v as i64,),
        )
        .await
        .expect("write counter");
    }
}
