//! Group commit: the acquires, releases and renewals of one process share calls of `{p}batch`, one round trip
//! and one transaction (one WAL flush) for all of them.
//!
//! Operations go to one of `inflight` lanes by their resource's hash; a lane runs one call at a time, taking
//! everything that queued meanwhile (no timer: a lone operation never waits). So the operations on one resource
//! reach the database in the order they were made (FIFO across a process's waiters), and two lanes never touch
//! the same resource. deadpool and tokio-postgres pipeline statements but cannot merge several calls into one
//! transaction: that is the part written here.

#[allow(unused_imports)]
use super::*;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::Row;

/// Most operations in one call.
const MAX_OPS: usize = 64;

/// One lease operation.
pub(super) enum Op {
    Acquire {
        req: AcquireRequest,
        waiter: Option<String>,
    },
    Release {
        lock_id: String,
        client: Option<String>,
    },
    Renew {
        lock_id: String,
        ttl_ms: Option<i64>,
        client: Option<String>,
    },
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

/// Hands operations to the lanes.
pub(super) struct Batcher {
    lanes: Vec<mpsc::UnboundedSender<Job>>,
    address: String,
    timeout: Duration,
}

impl Batcher {
    /// Starts `lanes` batching tasks over `db`.
    pub(super) fn start(db: Arc<Db>, lanes: usize) -> (Self, Vec<AbortOnDrop>) {
        let mut senders = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..lanes.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(tx);
            tasks.push(AbortOnDrop(tokio::spawn(lane(db.clone(), rx))));
        }
        let batcher = Batcher {
            lanes: senders,
            address: db.address.clone(),
            timeout: db.opts.timeout,
        };
        (batcher, tasks)
    }

    /// Runs one operation in its lane's next call; bounded by the timeout from the moment it is queued.
    pub(super) async fn run(&self, op: Op) -> Result<Reply> {
        let (reply, rx) = oneshot::channel();
        let lane = &self.lanes[order_key(&op) as usize % self.lanes.len()];
        lane.send(Job { op, reply })
            .map_err(|_| Error::ShuttingDown("the PostgreSQL backend was dropped".into()))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(unavailable(&self.address, "the call was lost")),
            Err(_) => Err(unavailable(
                &self.address,
                format!("no answer within {} ms", self.timeout.as_millis()),
            )),
        }
    }
}

/// One lane: a call at a time, with everything queued since the last one.
async fn lane(db: Arc<Db>, mut rx: mpsc::UnboundedReceiver<Job>) {
    while let Some(jobs) = next_batch(&mut rx, MAX_OPS).await {
        match call(&db, &jobs).await {
            Ok(mut replies) => {
                for (job, reply) in jobs.into_iter().zip(replies.drain(..)) {
                    let _ = job.reply.send(reply.ok_or_else(|| db.unexpected("batch", "no row")));
                }
            }
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// The hash of an operation's resource: for a release or renewal, the one its lock id ends with (0 for a lock
/// id of another shape, which the database will not know anyway).
fn order_key(op: &Op) -> u32 {
    match op {
        Op::Acquire { req, .. } => resource_hash(&req.resource),
        Op::Release { lock_id, .. } | Op::Renew { lock_id, .. } => lock_hash(lock_id),
    }
}

/// One call of `{p}batch` for `jobs`, sent in the order of their resources so that two batches lock rows in
/// the same order; the replies in the jobs' order.
async fn call(db: &Db, jobs: &[Job]) -> Result<Vec<Option<Reply>>> {
    let n = jobs.len();
    let mut op = Vec::with_capacity(n);
    let (mut resource, mut lock_id, mut kind, mut client, mut waiter) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut ttl, mut waiter_lease, mut max_renewals, mut max_hold) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut priority: Vec<Option<i32>> = Vec::with_capacity(n);
    let keys: Vec<u32> = jobs.iter().map(|j| order_key(&j.op)).collect();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| keys[i]);
    // The same bits as PostgreSQL's signed integer.
    let hash: Vec<i32> = order.iter().map(|&i| keys[i] as i32).collect();
    let kinds: Vec<Option<String>> = order
        .iter()
        .map(|&i| match &jobs[i].op {
            Op::Acquire { req, .. } => Some(crate::types::stored_kind(req)),
            _ => None,
        })
        .collect();
    for (at, &i) in order.iter().enumerate() {
        let j = &jobs[i];
        match &j.op {
            Op::Acquire { req, waiter: w } => {
                op.push(match &req.condition {
                    Some(c) => format!("acquire if {}", c.encode()),
                    None => "acquire".into(),
                });
                resource.push(Some(req.resource.as_str()));
                lock_id.push(Some(req.lock_id.as_str()));
                kind.push(kinds[at].as_deref());
                ttl.push(Some(millis(req.ttl)));
                client.push(Some(req.client_id.as_str()));
                waiter.push(w.as_deref());
                waiter_lease.push(Some(millis(req.waiter_lease)));
                max_renewals.push(req.max_renewals.map(|n| n.min(i32::MAX as u32) as i32));
                max_hold.push(req.max_hold.map(millis));
                priority.push(Some(req.priority));
            }
            Op::Release { lock_id: l, client: c }
            | Op::Renew {
                lock_id: l, client: c, ..
            } => {
                let (name, t) = match &j.op {
                    Op::Renew { ttl_ms, .. } => ("renew", *ttl_ms),
                    _ => ("release", None),
                };
                op.push(name.into());
                resource.push(None);
                lock_id.push(Some(l.as_str()));
                kind.push(None);
                ttl.push(t);
                client.push(c.as_deref());
                waiter.push(None);
                waiter_lease.push(None);
                max_renewals.push(None);
                max_hold.push(None);
                priority.push(None);
            }
        }
    }
    let rows = db
        .query(
            &db.sql.batch,
            &[
                &op,
                &resource,
                &hash,
                &lock_id,
                &kind,
                &ttl,
                &client,
                &waiter,
                &waiter_lease,
                &max_renewals,
                &max_hold,
                &priority,
                &MAX_WAITERS_PER_RESOURCE,
            ],
        )
        .await?;
    let mut replies: Vec<Option<Reply>> = (0..n).map(|_| None).collect();
    for row in &rows {
        let i: i32 = db.get(row, 0)?;
        let slot = usize::try_from(i - 1)
            .ok()
            .and_then(|sent| order.get(sent))
            .and_then(|&job| replies.get_mut(job))
            .ok_or_else(|| db.unexpected("batch", &format!("row {i}")))?;
        *slot = Some(reply(db, row)?);
    }
    Ok(replies)
}

fn reply(db: &Db, row: &Row) -> Result<Reply> {
    Ok(Reply {
        status: db.get(row, 1)?,
        resource: db.get(row, 2)?,
        kind: db.get(row, 3)?,
        client: db.get(row, 4)?,
        fence: db.get(row, 5)?,
        now_us: db.get(row, 6)?,
        expires_us: db.get(row, 7)?,
        remaining_us: db.get(row, 8)?,
        retry_us: db.get(row, 9)?,
        held_us: db.get(row, 10)?,
        acquired_us: db.get(row, 11)?,
        ttl_ms: db.get(row, 12)?,
        renewals: db.get(row, 13)?,
        told: db.get(row, 14)?,
        bells: None,
    })
}
