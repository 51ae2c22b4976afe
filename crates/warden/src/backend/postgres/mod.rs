//! `postgres://`: leases in PostgreSQL tables, for teams that run PostgreSQL and no Redis.
//!
//! Each operation is one call of a PL/pgSQL function (one round trip, one transaction) that first locks the
//! resource's row; times come from the database server's clock; fencing tokens are seeded from it (they keep
//! growing after a restore of an older backup); waiters queue in a table with waiter leases, and a release hands
//! the lock to the head of the queue in its own transaction and tells it with `LISTEN/NOTIFY` (one listening
//! connection per backend). Leases outlive connections: any process can renew or release
//! a lease by its lock id. The schema is created and upgraded at connect ([`SCHEMA_VERSION`]).

mod batch;
mod db;
mod listener;
mod options;
mod schema;
mod tls;
mod views;

use db::*;
use options::*;
pub use schema::SCHEMA_VERSION;
use tls::Tls;

use super::sql_common::*;
use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Health, LeaseInfo, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use std::sync::Arc;
use std::time::Duration;

pub use super::sql_common::MAX_WAITERS_PER_RESOURCE;

/// A backend over one PostgreSQL database. Cheap to share with `Arc`; dropping it stops its tasks.
pub struct PostgresBackend {
    db: Arc<Db>,
    batcher: batch::Batcher,
    router: Arc<WakeRouter>,
    _tasks: Vec<AbortOnDrop>,
}

impl std::fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresBackend")
            .field("address", &self.db.address)
            .finish()
    }
}

impl PostgresBackend {
    /// Connects to `postgres://user:password@host:port/db?prefix=warden_&timeout_ms=2000&pool_size=16`, creates
    /// or upgrades the schema and starts listening for wake-ups. Fails with [`Error::BackendUnavailable`]
    /// naming the host within the timeout if the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let (config, address, opts) = parse_url(url)?;
        let timeout = opts.timeout;
        let migrate = async {
            let (mut client, driver) = opts
                .tls
                .connect(&config, None)
                .await
                .map_err(|e| db_error(&address, e))?;
            schema::migrate(&mut client, &opts.prefix, &address).await?;
            drop(driver);
            Ok::<_, Error>(())
        };
        tokio::time::timeout(timeout, migrate)
            .await
            .map_err(|_| unavailable(&address, format!("no answer within {} ms", timeout.as_millis())))??;
        let router = Arc::new(WakeRouter::default());
        let channel = format!("{}wake", opts.prefix);
        let listener = listener::spawn(
            config.clone(),
            opts.tls.clone(),
            channel,
            router.clone(),
            address.clone(),
            timeout,
        )
        .await?;
        let db = Arc::new(Db::new(config, address, opts)?);
        let sweeper = db.spawn_sweeper();
        let (batcher, mut tasks) = batch::Batcher::start(db.clone(), db.opts.inflight);
        tasks.extend([AbortOnDrop(listener), sweeper]);
        Ok(PostgresBackend {
            db,
            batcher,
            router,
            _tasks: tasks,
        })
    }
}

#[async_trait::async_trait]
impl Backend for PostgresBackend {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            shared: true,
            semaphores: true,
            fifo: FifoGuarantee::Strict,
            notifications: true,
            fencing: true,
            fencing_survives_data_loss: true,
            shared_across_processes: true,
            conditions: true,
            priorities: true,
            intentions: true,
            remote_wait: false,
        }
    }

    fn wake_router(&self) -> &Arc<WakeRouter> {
        &self.router
    }

    /// A random lock id that ends with a hash of its resource: a batch orders its operations by it.
    fn new_lock_id(&self, resource: &str) -> String {
        format!("{}-{:08x}", crate::token::lock_id(), resource_hash(resource))
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        if let Some(c) = &req.condition {
            c.within_retention(self.db.opts.retain)?;
        }
        let r = self
            .batcher
            .run(batch::Op::Acquire {
                req: req.clone(),
                waiter: waiter_id.map(str::to_string),
            })
            .await?;
        r.attempt(req, |what| self.db.unexpected("acquire", what))
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        let row = self.db.call(&self.db.sql.leave, &[&resource, &waiter_id]).await?;
        // False: no longer queued; a release may have handed this waiter the lock.
        self.db.get(&row, 0)
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let r = self
            .batcher
            .run(batch::Op::Release {
                lock_id: lock_id.to_string(),
                client: client_id.map(str::to_string),
            })
            .await?;
        if let Some(told) = &r.told {
            // This process's own waiters need not wait for the notification.
            self.router.deliver(told);
        }
        r.released(lock_id, client_id, |what| self.db.unexpected("release", what))
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let r = self
            .batcher
            .run(batch::Op::Renew {
                lock_id: lock_id.to_string(),
                ttl_ms: ttl.map(millis),
                client: client_id.map(str::to_string),
            })
            .await?;
        r.renewal(lock_id, client_id, |what| self.db.unexpected("renew", what))
    }

    async fn lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        self.view_lease(lock_id).await
    }

    async fn inspect(&self, resource: &str) -> Result<ResourceInfo> {
        self.view_inspect(resource).await
    }

    async fn held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        self.view_held(client_id).await
    }

    async fn stats(&self, top: usize) -> Result<Stats> {
        self.view_stats(top).await
    }

    async fn health(&self) -> Health {
        self.view_health().await
    }
}
