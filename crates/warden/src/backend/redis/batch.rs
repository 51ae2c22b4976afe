//! Group commit: the lease operations of one process on one node share script calls.
//!
//! At most `inflight` script calls are on the connection at once. An operation that finds a place free is sent
//! at once, together with whatever else is waiting; one that finds every place taken waits in the queue, and the
//! call that finishes next takes the whole queue with it (no timer: a lone operation never waits). Each
//! operation keeps its own reply and its own error; the script runs them in order, each in its own protected
//! call. A call costs Redis a fixed price (EVALSHA lookup, the Lua call, `TIME`, the reply) that is paid once
//! per batch instead of once per operation.
//! redis-rs pipelines commands but has no way to merge several script invocations into one: that is the
//! part written here.

use super::counters::Counters;
use super::{map_err, unavailable};
use crate::error::{Error, Result};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Most operations in one script call.
const MAX_OPS: usize = 128;

/// A script call handed to the connection.
type Call = Pin<Box<dyn Future<Output = redis::RedisResult<Value>> + Send>>;

/// A call's reply, if its first poll already had it.
enum First {
    Done(redis::RedisResult<Value>),
    Sent(Call),
}

/// Operations submitted together as one call.
struct Batch {
    jobs: Vec<Job>,
    first: First,
}

struct Job {
    id: u64,
    args: Vec<String>,
    reply: oneshot::Sender<Result<(i64, Value)>>,
}

/// What every batch call needs.
struct Ctx {
    conn: ConnectionManager,
    script: Script,
    header: Vec<String>,
    address: String,
    timeout: Duration,
    counters: Arc<Counters>,
    /// Operations waiting for a free place.
    queue: Mutex<Vec<Job>>,
    /// Free places for script calls in flight.
    slots: Arc<Semaphore>,
    next_id: std::sync::atomic::AtomicU64,
    /// Send operations whose caller stopped listening too (Redlock's nodes: a quorum answered, but every
    /// node should see the same attempts, so that its counts and queue agree with the others).
    send_abandoned: bool,
}

/// How a node's operations are batched.
pub(crate) struct Config {
    /// The batch script (`scripts/batch.lua` after its libraries).
    pub script: Script,
    /// The scripts' common ARGV head (see `scripts/lib.lua`).
    pub header: Vec<String>,
    /// The node, for errors.
    pub address: String,
    /// Bound on each operation, from the moment it is queued.
    pub timeout: Duration,
    /// Script calls in flight at once.
    pub inflight: usize,
    /// Send operations whose caller stopped listening too (Redlock's nodes).
    pub send_abandoned: bool,
}

/// The queue of one node's pending operations.
pub(crate) struct Batcher {
    ctx: Arc<Ctx>,
}

impl Batcher {
    /// Starts batching on `conn`, counting into `counters`.
    pub(crate) fn start(conn: ConnectionManager, counters: Arc<Counters>, cfg: Config) -> Self {
        Batcher {
            ctx: Arc::new(Ctx {
                conn,
                script: cfg.script,
                header: cfg.header,
                address: cfg.address,
                timeout: cfg.timeout,
                counters,
                queue: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(cfg.inflight.max(1))),
                next_id: std::sync::atomic::AtomicU64::new(0),
                send_abandoned: cfg.send_abandoned,
            }),
        }
    }

    /// Runs one operation (an opcode and its arguments) and returns the server's clock (ms) at the call and the
    /// operation's own reply. Bounded by the node's timeout from the moment it is queued.
    pub(crate) async fn call(&self, args: Vec<String>) -> Result<(i64, Value)> {
        let (reply, mut rx) = oneshot::channel();
        let ctx = &self.ctx;
        let id = ctx.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ctx.lock_queue().push(Job { id, args, reply });
        if let Ok(permit) = ctx.slots.clone().try_acquire_owned() {
            let place = Place {
                ctx: ctx.clone(),
                permit: Some(permit),
                used: true,
            };
            match ctx.submit().await {
                // Alone: finish from this future, no task hop. Dropped midway, it loses only its own reply,
                // and the place it held is handed on (see Place).
                Some(batch) if batch.jobs.len() == 1 && batch.jobs[0].id == id => {
                    Inline {
                        ctx: ctx.clone(),
                        batch: Some(batch),
                    }
                    .finish()
                    .await;
                    place.keep_sending();
                }
                Some(batch) => place.finish_in_task(Some(batch)),
                None => {}
            }
        }
        match tokio::time::timeout(ctx.timeout, &mut rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(unavailable(&ctx.address, "the connection task has stopped")),
            Err(_) => Err(unavailable(&ctx.address, format!("no answer within {:?}", ctx.timeout))),
        }
    }
}

/// A batch finished from its caller's own future. If that future is dropped while the call is in flight, the
/// batch is finished in a task: the operation happened on the server, so its reply is still read and counted.
struct Inline {
    ctx: Arc<Ctx>,
    batch: Option<Batch>,
}

impl Inline {
    async fn finish(mut self) {
        let deadline = tokio::time::Instant::now() + self.ctx.timeout;
        let answered = match self.batch.as_mut().map(|b| &mut b.first) {
            Some(First::Sent(call)) => Some(tokio::time::timeout_at(deadline, call).await),
            _ => None,
        };
        let Some(batch) = self.batch.take() else {
            return;
        };
        let first = match (answered, batch.first) {
            (Some(a), _) => a,
            (None, First::Done(r)) => Ok(r),
            (None, First::Sent(_)) => return,
        };
        self.ctx.conclude(batch.jobs, first).await
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        if let Some(b) = self.batch.take() {
            let ctx = self.ctx.clone();
            tokio::spawn(async move { ctx.finish(b).await });
        }
    }
}

/// A place for one script call in flight. When it is given up (also by a dropped future), whatever queued
/// meanwhile is sent: no operation waits for a caller that will not come.
struct Place {
    ctx: Arc<Ctx>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// Whether the place was used. One dropped unused (its task never ran: the runtime is shutting down)
    /// does not pump again, or a shutdown would recurse without end.
    used: bool,
}

impl Place {
    /// Finishes `first`, then submits and finishes what queued meanwhile until the queue is empty, in a task of
    /// its own.
    fn finish_in_task(self, first: Option<Batch>) {
        tokio::spawn(async move {
            let mut this = self;
            this.used = true;
            let me = &this;
            if let Some(b) = first {
                me.ctx.finish(b).await;
            }
            while let Some(b) = me.ctx.submit().await {
                me.ctx.finish(b).await;
            }
            drop(this);
        });
    }

    /// Done with its own call: sends what queued meanwhile (in a task), or frees the place.
    fn keep_sending(self) {
        if !self.ctx.lock_queue().is_empty() {
            self.finish_in_task(None);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        drop(self.permit.take());
        // An operation queued while every place was taken waits for the call that finishes next: this one.
        if self.used && !self.ctx.lock_queue().is_empty() {
            Ctx::pump(&self.ctx);
        }
    }
}

impl Ctx {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// If a place is free and operations wait, sends them in a task of their own.
    fn pump(ctx: &Arc<Ctx>) {
        let Ok(permit) = ctx.slots.clone().try_acquire_owned() else {
            return;
        };
        Place {
            ctx: ctx.clone(),
            permit: Some(permit),
            used: false,
        }
        .finish_in_task(None);
    }

    fn command(&self, jobs: &[Job]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(0).arg(&self.header);
        for j in jobs {
            cmd.arg(&j.args);
        }
        cmd
    }

    /// Takes the waiting operations and submits them as one call while holding the queue's lock, so calls
    /// reach the connection in the order their operations were queued (FIFO across the calls in flight).
    /// The first poll of redis-rs's request hands the command to its connection.
    async fn submit(&self) -> Option<Batch> {
        std::future::poll_fn(|cx| {
            let jobs = {
                let mut q = self.lock_queue();
                if !self.send_abandoned {
                    q.retain(|j| !j.reply.is_closed());
                }
                let n = q.len().min(MAX_OPS);
                if n == 0 {
                    return Poll::Ready(None);
                }
                let jobs: Vec<Job> = q.drain(..n).collect();
                let cmd = self.command(&jobs);
                let mut conn = self.conn.clone();
                let mut call: Call = Box::pin(async move { cmd.query_async::<Value>(&mut conn).await });
                let first = match call.as_mut().poll(cx) {
                    Poll::Ready(r) => First::Done(r),
                    Poll::Pending => First::Sent(call),
                };
                (jobs, first)
            };
            Poll::Ready(Some(Batch {
                jobs: jobs.0,
                first: jobs.1,
            }))
        })
        .await
    }

    /// Waits for a submitted call's reply (retrying after a dropped connection or a lost script, see
    /// `query`) and hands every operation its own.
    async fn finish(&self, batch: Batch) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let first = match batch.first {
            First::Done(r) => Ok(r),
            First::Sent(call) => tokio::time::timeout_at(deadline, call).await,
        };
        self.conclude(batch.jobs, first).await
    }

    /// Hands out a call's first answer, retrying after a dropped connection or a lost script.
    async fn conclude(
        &self,
        jobs: Vec<Job>,
        first: std::result::Result<redis::RedisResult<Value>, tokio::time::error::Elapsed>,
    ) {
        let result = match first {
            Err(_) => Err(unavailable(
                &self.address,
                format!("no answer within {:?}", self.timeout),
            )),
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e))
                if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript)
                    || e.is_connection_dropped()
                    || e.is_connection_refusal() =>
            {
                self.query(&self.command(&jobs)).await
            }
            Ok(Err(e)) => Err(map_err(&self.address, e)),
        };
        self.deliver(jobs, result);
    }

    fn deliver(&self, jobs: Vec<Job>, result: Result<Value>) {
        match result {
            Ok(Value::Array(mut items)) if items.len() == jobs.len() + 1 => {
                let now = match items.remove(0) {
                    Value::Int(ms) => ms,
                    _ => 0,
                };
                for (j, v) in jobs.into_iter().zip(items) {
                    // Counted here, whether or not the caller still waits (Redlock stops listening to a node
                    // once a quorum answered; the node's grant happened all the same).
                    self.counters.tally(&j.args, &v);
                    let _ = j.reply.send(Ok((now, v)));
                }
            }
            Ok(v) => {
                let msg = format!("unexpected reply to a batch of {}: {v:?}", jobs.len());
                for j in jobs {
                    let _ = j.reply.send(Err(Error::Protocol(msg.clone())));
                }
            }
            Err(e) => {
                let unreachable = matches!(e, Error::BackendUnavailable { .. });
                let reason = match &e {
                    Error::BackendUnavailable { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                for j in jobs {
                    let e = if unreachable {
                        unavailable(&self.address, &reason)
                    } else {
                        Error::Protocol(reason.clone())
                    };
                    let _ = j.reply.send(Err(e));
                }
            }
        }
    }

    /// One script call, bounded by the timeout. After a node restart the old connection is gone and the call
    /// was never executed; the connection manager reconnects in the background: retry with a short backoff
    /// within the same deadline (operations are idempotent per token). A node that lost the script gets it
    /// loaded again.
    async fn query(&self, cmd: &redis::Cmd) -> Result<Value> {
        let mut conn = self.conn.clone();
        let deadline = tokio::time::Instant::now() + self.timeout;
        let mut backoff = Duration::from_millis(2);
        loop {
            match tokio::time::timeout_at(deadline, cmd.query_async::<Value>(&mut conn)).await {
                Err(_) => {
                    return Err(unavailable(
                        &self.address,
                        format!("no answer within {:?}", self.timeout),
                    ))
                }
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                    let inv = self.script.prepare_invoke();
                    match tokio::time::timeout_at(deadline, inv.load_async(&mut conn)).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(e)) => return Err(map_err(&self.address, e)),
                        Err(_) => return Err(unavailable(&self.address, "no answer while loading the script")),
                    }
                }
                Ok(Err(e))
                    if (e.is_connection_dropped() || e.is_connection_refusal())
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(50));
                }
                Ok(Err(e)) => return Err(map_err(&self.address, e)),
            }
        }
    }
}
