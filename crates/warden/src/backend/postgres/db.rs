//! The connection pool, the statements, one bounded call, and how driver errors become warden errors.

#[allow(unused_imports)]
use super::*;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::Row;

/// The statements, with the table prefix filled in.
pub(super) struct Sql {
    pub batch: String,
    pub leave: String,
    pub sweep: String,
    pub prefix: String,
}

impl Sql {
    fn new(p: &str) -> Self {
        Sql {
            batch: format!("SELECT * FROM {p}batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"),
            leave: format!("SELECT {p}leave($1, $2)"),
            sweep: format!("SELECT {p}sweep($1)"),
            prefix: p.to_string(),
        }
    }
}

/// A bounded pool of connections to one database.
pub(super) struct Db {
    pub pool: Pool,
    pub sql: Sql,
    pub address: String,
    pub opts: Options,
}

impl Db {
    pub(super) fn new(config: tokio_postgres::Config, address: String, opts: Options) -> Result<Self> {
        let recycling = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &opts.tls {
            Tls::Off => Manager::from_config(config, tokio_postgres::NoTls, recycling),
            Tls::On(tls) => Manager::from_config(config, tls.clone(), recycling),
        };
        let pool = Pool::builder(manager)
            .max_size(opts.pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(opts.timeout))
            .create_timeout(Some(opts.timeout))
            .recycle_timeout(Some(opts.timeout))
            .build()
            .map_err(|e| Error::invalid("backend", format!("{address}: cannot build the connection pool: {e}")))?;
        Ok(Db {
            pool,
            sql: Sql::new(&opts.prefix),
            address,
            opts,
        })
    }

    /// Runs one statement that answers one row, within the timeout (waiting for a connection included).
    pub(super) async fn call(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row> {
        let rows = self.query(sql, params).await?;
        rows.into_iter().next().ok_or_else(|| self.unexpected(sql, "no row"))
    }

    /// Runs one statement that answers any number of rows, within the timeout.
    pub(super) async fn query(&self, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let run = async {
            let client = self.pool.get().await.map_err(|e| self.pool_error(e))?;
            let stmt = client
                .prepare_cached(sql)
                .await
                .map_err(|e| db_error(&self.address, e))?;
            // Each statement here runs by itself, so one chosen as a deadlock's victim was rolled back whole:
            // it is run again. (A release and a renewal of one shared lease from two connections at once can
            // lock its lease row and its resource row in opposite orders; PostgreSQL breaks that after
            // `deadlock_timeout`.)
            let mut tries = 0;
            loop {
                tries += 1;
                match client.query(&stmt, params).await {
                    Err(e)
                        if tries < 3 && e.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
                    {
                        continue
                    }
                    other => break other.map_err(|e| db_error(&self.address, e)),
                }
            }
        };
        self.bounded(run).await
    }

    async fn bounded<T>(&self, run: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.opts.timeout, run).await.map_err(|_| {
            unavailable(
                &self.address,
                format!("no answer within {} ms", self.opts.timeout.as_millis()),
            )
        })?
    }

    /// Column `i` of a row this backend's own functions returned.
    pub(super) fn get<'a, T: tokio_postgres::types::FromSql<'a>>(&self, row: &'a Row, i: usize) -> Result<T> {
        row.try_get(i)
            .map_err(|e| Error::Protocol(format!("PostgreSQL at {}: column {i}: {e}", self.address)))
    }

    pub(super) fn unexpected(&self, op: &str, status: &str) -> Error {
        Error::Protocol(format!("PostgreSQL at {}: {op} answered `{status}`", self.address))
    }

    /// The housekeeping task: forgets long-expired leases, dead waiters and idle resources.
    pub(super) fn spawn_sweeper(&self) -> AbortOnDrop {
        let pool = self.pool.clone();
        let sql = self.sql.sweep.clone();
        let every = self.opts.sweep_every;
        let retain_us = self.opts.retain.as_micros().min(i64::MAX as u128) as i64;
        let timeout = self.opts.timeout.max(Duration::from_secs(10));
        AbortOnDrop(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let run = async {
                    let client = pool.get().await.ok()?;
                    client.query_one(sql.as_str(), &[&retain_us]).await.ok()
                };
                if tokio::time::timeout(timeout, run).await.ok().flatten().is_none() {
                    tracing::debug!("postgres sweep did not run; trying again at the next one");
                }
            }
        }))
    }

    fn pool_error(&self, e: PoolError) -> Error {
        match e {
            PoolError::Backend(e) => db_error(&self.address, e),
            PoolError::Timeout(_) => unavailable(
                &self.address,
                format!("no connection within {} ms", self.opts.timeout.as_millis()),
            ),
            other => unavailable(&self.address, other),
        }
    }
}

/// A driver error as a warden error: a lost or refused connection, a server shutting down or out of
/// connections is [`Error::BackendUnavailable`] (retryable); any other SQL error is [`Error::Protocol`]. Only
/// the SQLSTATE and the primary message are shown: a detail may quote row values.
pub(super) fn db_error(address: &str, e: tokio_postgres::Error) -> Error {
    let Some(db) = e.as_db_error() else {
        return unavailable(address, e);
    };
    let code = db.code().code();
    let reason = format!("{} (SQLSTATE {code})", db.message());
    if ["08", "53", "57", "58"].iter().any(|class| code.starts_with(class)) {
        unavailable(address, reason)
    } else {
        Error::Protocol(format!("PostgreSQL at {address}: {reason}"))
    }
}
