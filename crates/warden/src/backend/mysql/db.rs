//! The connection pool, the procedure calls, one bounded call, and how driver errors become warden errors.

#[allow(unused_imports)]
use super::*;
use mysql_async::prelude::{FromValue, Queryable};
use mysql_async::{Pool, Row, Value};

/// A bounded pool of connections to one database.
pub(super) struct Db {
    pool: Pool,
    /// One permit per pooled connection, handed out in arrival order (the driver's pool wakes its waiters in
    /// no particular order): a process's calls reach the database in the order they were made, which is what
    /// keeps a queue's order the order of its waiters' first attempts.
    turns: tokio::sync::Semaphore,
    pub prefix: String,
    pub address: String,
    pub opts: Options,
    /// The connection options without a pool: for a connection of its own (the batch lane's).
    pub conn_opts: mysql_async::Opts,
}

impl Db {
    pub(super) fn new(builder: mysql_async::OptsBuilder, address: String, opts: Options) -> Self {
        let conn_opts = mysql_async::Opts::from(builder.clone());
        let pool = Pool::new(builder.pool_opts(opts.pool()));
        Db {
            conn_opts,
            pool,
            turns: tokio::sync::Semaphore::new(opts.pool_size),
            prefix: opts.prefix.clone(),
            address,
            opts,
        }
    }

    /// Calls procedure `name` of this prefix with `params` and reads its answer.
    pub(super) async fn call(&self, name: &str, params: Vec<Value>) -> Result<Reply> {
        let marks = vec!["?"; params.len()].join(", ");
        let sql = format!("CALL {}{name}({marks})", self.prefix);
        // A procedure writes in one transaction (its handler rolls it back on any error) or in one statement that
        // commits by itself: a deadlock's victim left nothing behind, and is called again.
        let row = self
            .bounded(async {
                let mut conn = self.pool.get_conn().await.map_err(|e| db_error(&self.address, e))?;
                let mut tries = 0;
                loop {
                    tries += 1;
                    match conn.exec_first(&sql, params.clone()).await {
                        Err(mysql_async::Error::Server(e)) if e.code == DEADLOCK && tries < 3 => continue,
                        other => break other.map_err(|e| db_error(&self.address, e)),
                    }
                }
            })
            .await?
            .ok_or_else(|| self.unexpected(name, "no row"))?;
        self.reply(row)
    }

    /// Runs one statement and answers its first row, within the timeout (waiting for a connection included).
    pub(super) async fn first(&self, sql: &str, params: Vec<Value>) -> Result<Option<Row>> {
        self.bounded(async {
            let mut conn = self.pool.get_conn().await.map_err(|e| db_error(&self.address, e))?;
            conn.exec_first(sql, params)
                .await
                .map_err(|e| db_error(&self.address, e))
        })
        .await
    }

    /// Runs one statement and answers all its rows, within the timeout.
    pub(super) async fn rows(&self, sql: &str, params: Vec<Value>) -> Result<Vec<Row>> {
        self.bounded(async {
            let (_turn, mut conn) = self.conn().await?;
            conn.exec(sql, params).await.map_err(|e| db_error(&self.address, e))
        })
        .await
    }

    /// A pooled connection, in turn (see `turns`), with the permit to return with it.
    pub(super) async fn conn(&self) -> Result<(tokio::sync::SemaphorePermit<'_>, mysql_async::Conn)> {
        let turn = self
            .turns
            .acquire()
            .await
            .map_err(|_| unavailable(&self.address, "the backend is shutting down"))?;
        let conn = self.pool.get_conn().await.map_err(|e| db_error(&self.address, e))?;
        Ok((turn, conn))
    }

    pub(super) async fn bounded<T>(&self, run: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        tokio::time::timeout(self.opts.timeout, run).await.map_err(|_| {
            unavailable(
                &self.address,
                format!("no answer within {} ms", self.opts.timeout.as_millis()),
            )
        })?
    }

    /// Column `i` of a row this backend's own statements returned (`Option<T>` for a nullable one).
    pub(super) fn get<T: FromValue>(&self, row: &mut Row, i: usize) -> Result<T> {
        match row.take_opt::<T, usize>(i) {
            Some(Ok(v)) => Ok(v),
            Some(Err(e)) => Err(Error::Protocol(format!("MySQL at {}: column {i}: {e}", self.address))),
            None => Err(Error::Protocol(format!("MySQL at {}: no column {i}", self.address))),
        }
    }

    fn reply(&self, mut row: Row) -> Result<Reply> {
        let r = &mut row;
        Ok(Reply {
            status: self.get(r, 0)?,
            resource: self.get(r, 1)?,
            kind: self.get(r, 2)?,
            client: self.get(r, 3)?,
            fence: self.get(r, 4)?,
            now_us: self.get(r, 5)?,
            expires_us: self.get(r, 6)?,
            remaining_us: self.get(r, 7)?,
            retry_us: self.get(r, 8)?,
            held_us: self.get(r, 9)?,
            acquired_us: self.get(r, 10)?,
            ttl_ms: self.get(r, 11)?,
            renewals: self.get(r, 12)?,
            told: self.get(r, 13)?,
            bells: self.get(r, 14)?,
        })
    }

    pub(super) fn unexpected(&self, op: &str, status: &str) -> Error {
        Error::Protocol(format!("MySQL at {}: {op} answered `{status}`", self.address))
    }
}

/// MySQL's error code for a transaction rolled back as a deadlock's victim.
pub(super) const DEADLOCK: u16 = 1213;

/// A driver error as a warden error: a lost or refused connection, a server shutting down, out of connections,
/// or a transaction it broke off (deadlock, lock wait timeout) is [`Error::BackendUnavailable`] (retryable); any
/// other SQL error is [`Error::Protocol`]. The server's message is shown without the statement's values.
pub(super) fn db_error(address: &str, e: mysql_async::Error) -> Error {
    match e {
        mysql_async::Error::Server(s) => {
            let reason = format!("{} (error {}, SQLSTATE {})", s.message, s.code, s.state);
            // Too many connections, shutting down, killed, deadlock, lock wait timeout, interrupted.
            if [1040, 1053, 1205, 1213, 1317, 1927, 4031].contains(&s.code) || s.state.starts_with("08") {
                unavailable(address, reason)
            } else {
                Error::Protocol(format!("MySQL at {address}: {reason}"))
            }
        }
        other => unavailable(address, other),
    }
}
