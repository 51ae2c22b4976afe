//! The conformance suite's harness over a throwaway PostgreSQL, and a counter kept in one of its tables.

use crate::harness::{Counter, Harness};
use crate::PostgresServer;
use std::sync::{Arc, Mutex};
use warden::Warden;

/// One throwaway PostgreSQL server for the test; clients use the default table prefix `warden_`.
pub struct PostgresHarness {
    /// The server (public so tests can pause or restart it).
    pub server: Mutex<PostgresServer>,
    url: String,
}

impl PostgresHarness {
    /// Starts a fresh PostgreSQL cluster.
    pub fn new() -> Self {
        let server = PostgresServer::start();
        let url = format!("{}?timeout_ms=500&pool_size=8", server.url());
        PostgresHarness {
            server: Mutex::new(server),
            url,
        }
    }
    /// The backend URL clients use.
    pub fn url(&self) -> &str {
        &self.url
    }
    /// The server's own URL (the test's superuser, no warden options).
    pub fn server_url(&self) -> String {
        self.server.lock().expect("server").url()
    }
    /// Runs SQL statements on the server as the test's superuser.
    pub async fn sql(&self, statements: &str) {
        let client = connect(&self.server_url()).await;
        client.batch_execute(statements).await.expect("SQL of the harness");
    }
}

impl Default for PostgresHarness {
    fn default() -> Self {
        Self::new()
    }
}

/// A client of `url` whose connection is driven by a task of its own.
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test postgres");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

#[async_trait::async_trait]
impl Harness for PostgresHarness {
    async fn client(&self) -> Warden {
        crate::harness::test_client(&self.url).await
    }
    async fn revoke(&self, resource: &str) {
        // The leases stay, expired: their holders' renewals find them lost.
        let quoted = resource.replace('\'', "''");
        self.sql(&format!(
            "UPDATE warden_resources SET holder_until = least(holder_until, warden_now_us() - 1), shared_until = 0 \
             WHERE resource = '{quoted}'; \
             UPDATE warden_leases SET expires_us = warden_now_us() - 1 \
             WHERE resource = '{quoted}' AND expires_us > warden_now_us()"
        ))
        .await;
    }
    async fn restart_losing_data(&self) -> bool {
        // As if an empty (or older) backup were restored: every lease, queue and fence counter is gone.
        self.sql("TRUNCATE warden_leases, warden_resources, warden_waiters")
            .await;
        let mut server = self.server.lock().expect("server");
        server.restart();
        true
    }
    async fn kill(&self) -> bool {
        self.server.lock().expect("server").kill();
        true
    }
    fn unreachable_url(&self) -> Option<String> {
        let addr = crate::refused_addr().ok()?;
        Some(format!("postgres://warden@{addr}/postgres?timeout_ms=300"))
    }
    async fn counter(&self) -> Arc<dyn Counter> {
        let client = connect(&self.server_url()).await;
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS conformance_counter (id integer PRIMARY KEY, v bigint NOT NULL)")
            .await
            .expect("counter table");
        Arc::new(PgCounter { client })
    }
}

/// A counter in a table row, read with SELECT and written with UPDATE (no atomic increment).
pub struct PgCounter {
    client: tokio_postgres::Client,
}

#[async_trait::async_trait]
impl Counter for PgCounter {
    async fn get(&self) -> u64 {
        let row = self
            .client
            .query_opt("SELECT v FROM conformance_counter WHERE id = 1", &[])
            .await
            .expect("read counter");
        row.map(|r| r.get::<_, i64>(0) as u64).unwrap_or(0)
    }
    async fn set(&self, v: u64) {
        self.client
            .execute(
                "INSERT INTO conformance_counter (id, v) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET v = $1",
                &[&(v as i64)],
            )
            .await
            .expect("write counter");
    }
}
