//! Group commit of the fast paths: a process's exclusive grants of free resources and releases with nobody
//! queued share one round trip, one transaction and one statement per kind, instead of a procedure call each.
//!
//! A stored procedure runs each of its statements at a fixed price (measured: ~200 µs of server time per call on
//! a 2-core VM), so a cycle's cost is the number of statements it runs, and every call commits (a disk flush). A
//! batch instead releases with one `UPDATE`, grants with one `UPDATE` (each finds its rows by key) and commits
//! once, one multi-statement round trip for all of them ([`Plan`]). Whatever it cannot do (a resource held or
//! queued, a row not yet made, a lease ended or of another process, any other kind or a condition) comes back as
//! "not here", and the caller makes its procedure call as before. Contended resources go to the procedures
//! directly ([`Contention`]), so a contended lock pays no extra round trip.
//!
//! One lane runs one batch at a time with everything queued meanwhile (no timer: a lone operation never waits),
//! so a process's operations on one resource reach the database in the order they were made. mysql_async sends
//! statements; merging several callers' operations into one transaction is the part written here.

use super::batch_plan::{Fast, Plan};
use super::contention::{Busy, Contention, Kind, Ticket};
#[allow(unused_imports)]
use super::*;
use mysql_async::prelude::Queryable;
use mysql_async::Row;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;
use tokio::sync::{mpsc, oneshot};

/// Most operations in one batch.
const MAX_OPS: usize = 128;
/// Idle time after which the lane's connection is checked before use.
const CHECK_AFTER: Duration = Duration::from_secs(1);
/// Most lock ids remembered with their resource (leases that end unreleased are forgotten in bulk past it).
const MAX_OWNED: usize = 65_536;

/// One fast-path operation.
pub(super) enum FastOp {
    Acquire(AcquireRequest),
    Release {
        resource: String,
        lock_id: String,
        client: Option<String>,
    },
}

impl FastOp {
    pub(super) fn resource(&self) -> &str {
        match self {
            FastOp::Acquire(req) => &req.resource,
            FastOp::Release { resource, .. } => resource,
        }
    }
}

/// `None`: not done here; the caller makes its procedure call, holding the [`Busy`] mark while it runs.
type Outcome<'a> = Result<(Option<Reply>, Option<Busy<'a>>)>;

pub(super) struct Job {
    pub(super) op: FastOp,
    reply: oneshot::Sender<Result<Fast>>,
    /// Its place in the lane, left when its batch lands.
    ticket: Option<Ticket>,
}

/// Hands fast-path operations to the lanes, and remembers what routes an operation past them.
pub(super) struct Batcher {
    lane: mpsc::UnboundedSender<Job>,
    address: String,
    timeout: Duration,
    contention: Arc<Contention>,
    /// Lock ids this process was granted, with their resource: what a fast release needs (a lock id names only
    /// its resource's hash).
    owned: Mutex<HashMap<String, String>>,
}

impl Batcher {
    /// Starts the lane over `db`.
    pub(super) fn start(db: Arc<Db>) -> (Self, AbortOnDrop) {
        let (tx, rx) = mpsc::unbounded_channel();
        let contention = Arc::new(Contention::default());
        let task = AbortOnDrop(tokio::spawn(lane(db.clone(), rx, contention.clone())));
        let batcher = Batcher {
            lane: tx,
            address: db.address.clone(),
            timeout: db.opts.timeout,
            contention,
            owned: Mutex::new(HashMap::new()),
        };
        (batcher, task)
    }

    /// Tries an exclusive grant of a free resource (`None`: not here).
    pub(super) async fn acquire(&self, req: &AcquireRequest) -> Outcome<'_> {
        let eligible = req.kind.is_exclusive() && req.condition.is_none();
        let (mut busy, fast) = self.contention.enter(&req.resource, eligible.then_some(Kind::Acquire));
        if !fast {
            return Ok((None, Some(busy)));
        }
        let mut granted = self.run(FastOp::Acquire(req.clone()), &busy).await?;
        // Held by a lease of this process whose release is on its way through the lane: this acquire, sent
        // after it, goes in the same batch (releases go first) or a later one, and takes the lock there instead
        // of joining the queue and waiting for a handover (three procedure calls).
        if granted.is_none() && self.contention.releasing(&req.resource) && busy.again() {
            granted = self.run(FastOp::Acquire(req.clone()), &busy).await?;
        }
        match granted {
            Some(_) => self.owns(&req.lock_id, &req.resource),
            None => busy.leave_lane(),
        }
        Ok((granted, Some(busy)))
    }

    /// Tries a release of a lease this process was granted on a resource nobody waits for (`None`: not here).
    pub(super) async fn release(&self, lock_id: &str, client: Option<&str>) -> Outcome<'_> {
        let resource = match self.owned.lock().map(|m| m.get(lock_id).cloned()) {
            Ok(Some(r)) => r,
            _ => return Ok((None, None)),
        };
        let (mut busy, fast) = self.contention.enter(&resource, Some(Kind::Release));
        if !fast {
            return Ok((None, Some(busy)));
        }
        let op = FastOp::Release {
            resource,
            lock_id: lock_id.into(),
            client: client.map(Into::into),
        };
        let released = self.run(op, &busy).await?;
        match released {
            Some(_) => self.forget(lock_id),
            None => busy.leave_lane(),
        }
        Ok((released, Some(busy)))
    }

    /// Notes what a procedure call found: a grant (of `lock_id`), or contention on `resource`.
    pub(super) fn noted(&self, resource: &str, lock_id: Option<&str>, contended: bool) {
        if contended {
            self.contention.mark(resource);
        }
        if let Some(id) = lock_id {
            self.owns(id, resource);
        }
    }

    /// Notes that a procedure's release of `resource` handed it to nobody: the resource is free with nobody
    /// queued, so its next operations try the batch again.
    pub(super) fn calm(&self, resource: &str) {
        self.contention.calm(resource);
    }

    fn owns(&self, lock_id: &str, resource: &str) {
        if let Ok(mut owned) = self.owned.lock() {
            if owned.len() >= MAX_OWNED {
                owned.clear();
            }
            owned.insert(lock_id.into(), resource.into());
        }
    }

    /// Forgets a released lease.
    pub(super) fn forget(&self, lock_id: &str) {
        if let Ok(mut owned) = self.owned.lock() {
            owned.remove(lock_id);
        }
    }

    /// Runs `op` in the lane's next batch (`None`: not done there).
    async fn run(&self, op: FastOp, busy: &Busy<'_>) -> Result<Option<Reply>> {
        let (reply, rx) = oneshot::channel();
        let resource = op.resource().to_owned();
        let ticket = busy.ticket();
        self.lane
            .send(Job { op, reply, ticket })
            .map_err(|_| Error::ShuttingDown("the MySQL backend was dropped".into()))?;
        let out = match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r?,
            Ok(Err(_)) => return Err(unavailable(&self.address, "the call was lost")),
            Err(_) => {
                return Err(unavailable(
                    &self.address,
                    format!("no answer within {} ms", self.timeout.as_millis()),
                ))
            }
        };
        Ok(match out {
            Fast::Done(r) => Some(*r),
            Fast::Contended => {
                self.contention.mark(&resource);
                None
            }
            Fast::Elsewhere => None,
        })
    }
}

/// The lane: one batch at a time, with everything queued meanwhile, on a connection of its own (not in
/// autocommit mode: a batch's statements are one transaction without a `START TRANSACTION`). Measured on a
/// 2-core VM (50 workers, 1000 resources): a batch costs the database a fixed price per statement, so fewer,
/// larger batches serve more operations; one lane gave 17,000 cycles/s, two lanes by resource 16,500, three
/// 14,200, and two batches in flight on one lane waited for each other's row locks.
async fn lane(db: Arc<Db>, mut rx: mpsc::UnboundedReceiver<Job>, contention: Arc<Contention>) {
    let mut conn = LaneConn {
        conn: None,
        used: Instant::now(),
    };
    while let Some(jobs) = next_batch(&mut rx, MAX_OPS).await {
        let outcome = db.bounded(batch(&db, &mut conn, &jobs)).await;
        // Out of the lane before their callers read the answers (see `contention::Flight`).
        for job in &jobs {
            if let Some(t) = job.ticket {
                contention.landed(job.op.resource(), t);
            }
        }
        match outcome {
            Ok(outcomes) => {
                for (job, out) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(Ok(out));
                }
            }
            Err(e) => {
                // Whatever state the connection is in (a transaction left open, a call cut off), the next batch
                // starts on a new one.
                conn.conn = None;
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The lane's connection, made when there is none and checked (`COM_PING`) before use after a while idle: a
/// server restart or its idle timeout ends a connection without telling the client, and a batch sent on it
/// would fail.
struct LaneConn {
    conn: Option<mysql_async::Conn>,
    used: Instant,
}

impl LaneConn {
    async fn get(&mut self, db: &Db) -> Result<&mut mysql_async::Conn> {
        let fail = |e| db_error(&db.address, e);
        let idle = std::mem::replace(&mut self.used, Instant::now()).elapsed() > CHECK_AFTER;
        if let (true, Some(c)) = (idle, self.conn.as_mut()) {
            if c.ping().await.is_err() {
                self.conn = None;
            }
        }
        let conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let mut c = mysql_async::Conn::new(db.conn_opts.clone()).await.map_err(fail)?;
                // Read committed: a locking read of a row not yet made takes no gap lock, which a procedure
                // making that row would wait for while holding another.
                for sql in [
                    "SET autocommit = 0",
                    "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
                ] {
                    c.query_drop(sql).await.map_err(fail)?;
                }
                c
            }
        };
        Ok(self.conn.insert(conn))
    }
}

/// Runs a batch's statements and answers all their rows.
async fn run(c: &mut mysql_async::Conn, sql: &str) -> std::result::Result<Vec<Row>, mysql_async::Error> {
    let mut result = c.query_iter(sql).await?;
    let mut rows: Vec<Row> = Vec::new();
    while !result.is_empty() {
        rows.extend(result.collect::<Row>().await?);
    }
    Ok(rows)
}

/// One batch for `jobs` on the lane's connection (made anew when there is none): the outcomes in the jobs' order.
async fn batch(db: &Db, conn: &mut LaneConn, jobs: &[Job]) -> Result<Vec<Fast>> {
    let plan = Plan::of(jobs);
    let sql = plan.sql(&db.prefix);
    let c = conn.get(db).await?;
    // A transaction InnoDB chose as a deadlock's victim was rolled back whole: it is run again.
    let mut tries = 0;
    let mut rows = loop {
        tries += 1;
        match run(c, &sql).await {
            Err(mysql_async::Error::Server(e)) if e.code == DEADLOCK && tries < 3 => continue,
            other => break other.map_err(|e| db_error(&db.address, e))?,
        }
    };
    // The one row: the clock and what each `UPDATE` changed.
    let row = rows.pop().ok_or_else(|| db.unexpected("batch", "no answer"))?;
    plan.read(db, jobs.len(), row)
}
