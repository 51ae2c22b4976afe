//! `mysql://` (also `mariadb://`): leases in MySQL or MariaDB tables, for teams that run one and no Redis.
//!
//! Each operation is one call of a stored procedure (one round trip, one transaction) that first locks the
//! resource's row, except the common case: a process's uncontended exclusive grants and releases share one
//! transaction of plain statements ([`batch`]). A process's acquires of one resource take turns ([`turns`]), and
//! a queue's releases go before the process's joins of it ([`handover`]). Times come from the database server's
//! clock; fencing tokens are seeded from it (they keep growing after a restore of an older backup); waiters queue
//! in a table with waiter leases, and a release hands the lock to the head of the queue in its own transaction.
//! MySQL has no notifications: each process parks one listening connection that a release interrupts with
//! `KILL QUERY` ([`bell`]). Leases outlive connections: any process can renew or release a lease by its lock id.
//! The schema is created and upgraded at connect ([`SCHEMA_VERSION`]).

mod batch;
mod batch_plan;
mod bell;
mod contention;
mod db;
mod handover;
mod options;
mod schema;
mod sweep;
mod turns;
mod views;

use db::*;
use options::*;
pub use schema::SCHEMA_VERSION;

use super::sql_common::*;
use super::Backend;
use crate::error::{Error, Result};
use crate::types::{
    AcquireRequest, Attempt, Capabilities, FifoGuarantee, Health, LeaseInfo, Released, Renewal, ResourceInfo, Stats,
};
use crate::wake::WakeRouter;
use mysql_async::Value;
use std::sync::Arc;
use std::time::Duration;

pub use super::sql_common::MAX_WAITERS_PER_RESOURCE;

/// A backend over one MySQL or MariaDB database. Cheap to share with `Arc`; dropping it stops its tasks.
pub struct MysqlBackend {
    db: Arc<Db>,
    router: Arc<WakeRouter>,
    bell: Arc<bell::Bell>,
    fast: batch::Batcher,
    /// A process's acquires of one resource go one at a time, in the order they were made.
    turns: turns::Turns,
    handovers: handover::Handovers,
    _tasks: Vec<AbortOnDrop>,
}

impl std::fmt::Debug for MysqlBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlBackend")
            .field("address", &self.db.address)
            .finish()
    }
}

impl MysqlBackend {
    /// Connects to `mysql://user:password@host:port/db?prefix=warden_&timeout_ms=2000&pool_size=16`, creates
    /// or upgrades the schema and parks its listener. Fails with [`Error::BackendUnavailable`] naming the host
    /// within the timeout if the database cannot be reached.
    pub async fn connect(url: &str) -> Result<Self> {
        let (builder, address, opts) = parse_url(url)?;
        let timeout = opts.timeout;
        let migrate = async {
            let mut conn = mysql_async::Conn::new(builder.clone())
                .await
                .map_err(|e| db_error(&address, e))?;
            schema::migrate(&mut conn, &opts.prefix, &address).await?;
            let _ = conn.disconnect().await;
            Ok::<_, Error>(())
        };
        // Migrating waits up to a minute for another process's migration; reaching the database does not.
        tokio::time::timeout(timeout + Duration::from_secs(60), migrate)
            .await
            .map_err(|_| unavailable(&address, format!("no answer within {} ms", timeout.as_millis())))??;
        let router = Arc::new(WakeRouter::default());
        let bell = Arc::new(bell::Bell::default());
        let listener = bell::spawn(
            builder.clone(),
            opts.prefix.clone(),
            router.clone(),
            bell.clone(),
            address.clone(),
            timeout,
        )
        .await?;
        let db = Arc::new(Db::new(builder, address, opts));
        let sweeper = db.spawn_sweeper();
        let (fast, lane) = batch::Batcher::start(db.clone());
        Ok(MysqlBackend {
            db,
            router,
            bell,
            fast,
            turns: turns::Turns::default(),
            handovers: handover::Handovers::default(),
            _tasks: vec![AbortOnDrop(listener), sweeper, lane],
        })
    }

    /// Delivers what a call told this process's waiters, and rings the other processes told something. Answers
    /// how many of this process's waiters were handed the lock.
    fn tell(&self, r: &Reply) -> usize {
        let here = r.told.as_deref().map_or(0, |told| self.router.deliver(told));
        if let Some(bells) = &r.bells {
            bell::ring(&self.db, bells, self.bell.id());
        }
        here
    }
}

fn opt(s: Option<&str>) -> Value {
    s.map(Value::from).unwrap_or(Value::NULL)
}

#[async_trait::async_trait]
impl Backend for MysqlBackend {
    fn kind(&self) -> &'static str {
        "mysql"
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

    /// A random lock id that ends with a hash of its resource: how a release or renewal finds the resource's row.
    fn new_lock_id(&self, resource: &str) -> String {
        format!("{}-{:08x}", crate::token::lock_id(), resource_hash(resource))
    }

    async fn attempt(&self, req: &AcquireRequest, waiter_id: Option<&str>) -> Result<Attempt> {
        let unexpected = |what: &str| self.db.unexpected("acquire", what);
        let _turn = self.turns.take(&req.resource).await;
        let (fast, _busy) = self.fast.acquire(req).await?;
        if let Some(r) = fast {
            return r.attempt(req, unexpected);
        }
        // A join of the queue goes after the release it would race (see `handover`).
        if waiter_id.is_some() {
            self.handovers.wait(resource_hash(&req.resource)).await;
        }
        let condition = match &req.condition {
            Some(c) => {
                c.within_retention(self.db.opts.retain)?;
                Value::from(c.encode())
            }
            None => Value::NULL,
        };
        let params = vec![
            condition,
            req.resource.as_str().into(),
            resource_hash(&req.resource).into(),
            req.lock_id.as_str().into(),
            crate::types::stored_kind(req).into(),
            millis(req.ttl).into(),
            req.client_id.as_str().into(),
            opt(waiter_id),
            millis(req.waiter_lease).into(),
            req.max_renewals.map(Value::from).unwrap_or(Value::NULL),
            req.max_hold.map(|d| Value::from(millis(d))).unwrap_or(Value::NULL),
            MAX_WAITERS_PER_RESOURCE.into(),
            self.bell.id().map(Value::from).unwrap_or(Value::NULL),
            req.priority.into(),
        ];
        let r = self.db.call("acquire_with", params).await?;
        self.tell(&r);
        let granted = r.status == "granted";
        if r.status == "queued" && waiter_id.is_some() && req.kind.is_exclusive() && req.condition.is_none() {
            self.handovers.queued(&req.lock_id, &req.resource);
        }
        self.fast
            .noted(&req.resource, granted.then_some(req.lock_id.as_str()), !granted);
        r.attempt(req, unexpected)
    }

    async fn leave_queue(&self, resource: &str, waiter_id: &str) -> Result<bool> {
        let own = self.bell.id().map(Value::from).unwrap_or(Value::NULL);
        let r = self
            .db
            .call("leave", vec![resource.into(), waiter_id.into(), own])
            .await?;
        self.tell(&r);
        // 'absent': no longer queued; a release may have handed this waiter the lock.
        Ok(r.status == "left")
    }

    async fn release(&self, lock_id: &str, client_id: Option<&str>) -> Result<Released> {
        let (fast, _busy) = self.fast.release(lock_id, client_id).await?;
        if let Some(r) = fast {
            return r.released(lock_id, client_id, |what| self.db.unexpected("release", what));
        }
        let own = self.bell.id().map(Value::from).unwrap_or(Value::NULL);
        let hash = lock_hash(lock_id);
        self.handovers.returned(hash);
        let r = match self.handovers.take(lock_id) {
            Some(resource) => {
                let params = vec![resource.into(), lock_id.into(), hash.into(), opt(client_id), own];
                self.db.call("release_held", params).await?
            }
            None => {
                let params = vec![lock_id.into(), hash.into(), opt(client_id), own];
                self.db.call("release", params).await?
            }
        };
        let here = self.tell(&r);
        if let Some(resource) = &r.resource {
            // Set after the new holder was woken: when it released at once, the next join waits for the release
            // after it (1 ms at most). Set before waking it, measured slower: 1,233–1,290 hot cycles/s against
            // 1,529–1,650 (joins a cycle later find the row locked more often).
            if here > 0 {
                self.handovers.passed(resource_hash(resource));
            }
            if r.told.is_some() || r.bells.is_some() {
                self.fast.noted(resource, None, true);
            } else if r.status == "released" {
                self.fast.calm(resource);
            }
        }
        // A stranger's refused release leaves the lease its owner's.
        if r.status != "not_owner" {
            self.fast.forget(lock_id);
        }
        r.released(lock_id, client_id, |what| self.db.unexpected("release", what))
    }

    async fn renew(&self, lock_id: &str, ttl: Option<Duration>, client_id: Option<&str>) -> Result<Renewal> {
        let ttl = ttl.map(|d| Value::from(millis(d))).unwrap_or(Value::NULL);
        let hash = lock_hash(lock_id);
        let r = self
            .db
            .call("renew", vec![lock_id.into(), hash.into(), ttl, opt(client_id)])
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
