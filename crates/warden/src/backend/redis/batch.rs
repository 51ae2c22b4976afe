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
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

/// Most operations in one script call.
const MAX_OPS: usize = 128;

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
}

/// The queue of one node's pending operations.
pub(crate) struct Batcher {
    ctx: Arc<Ctx>,
}

impl Batcher {
    /// Starts batching. `header` is the scripts' common ARGV head (see `scripts/lib.lua`).
    pub(crate) fn start(
        conn: ConnectionManager,
        script: Script,
        header: Vec<String>,
        address: String,
        timeout: Duration,
        inflight: usize,
        counters: Arc<Counters>,
    ) -> Self {
        Batcher {
            ctx: Arc::new(Ctx {
                conn,
                script,
                header,
                address,
                timeout,
                counters,
                queue: Mutex::new(Vec::new()),
                slots: Arc::new(Semaphore::new(inflight.max(1))),
                next_id: std::sync::atomic::AtomicU64::new(0),
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
            let jobs = ctx.take();
            // Alone: send from this future, no task hop. Dropped midway, it loses only its own reply, and the
            // place it held is handed on (see Place).
            let place = Place {
                ctx: ctx.clone(),
                permit: Some(permit),
            };
            if jobs.len() == 1 && jobs[0].id == id {
                ctx.send(jobs).await;
                place.hand_on();
            } else if !jobs.is_empty() {
                place.send_in_task(jobs);
            }
        }
        match tokio::time::timeout(ctx.timeout, &mut rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(unavailable(&ctx.address, "the connection task has stopped")),
            Err(_) => Err(unavailable(&ctx.address, format!("no answer within {:?}", ctx.timeout))),
        }
    }
}

/// A place for one script call in flight. When it is given up (also by a dropped future), whatever queued
/// meanwhile is sent: no operation waits for a caller that will not come.
struct Place {
    ctx: Arc<Ctx>,
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Place {
    /// Sends `jobs`, then what queued meanwhile, until the queue is empty, in a task of its own.
    fn send_in_task(self, jobs: Vec<Job>) {
        tokio::spawn(async move {
            let mut jobs = jobs;
            while !jobs.is_empty() {
                self.ctx.send(jobs).await;
                jobs = self.ctx.take();
            }
            drop(self);
        });
    }

    /// Done with this place: sends what queued meanwhile (in a task), or frees the place.
    fn hand_on(self) {
        let jobs = self.ctx.take();
        if !jobs.is_empty() {
            self.send_in_task(jobs);
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        drop(self.permit.take());
        // An operation queued while every place was taken waits for the call that finishes next: this one.
        if !self.ctx.lock_queue().is_empty() {
            Ctx::pump(&self.ctx);
        }
    }
}

impl Ctx {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes up to MAX_OPS waiting operations whose callers still listen (a caller that gave up gets nothing
    /// sent on its behalf).
    fn take(&self) -> Vec<Job> {
        let mut q = self.lock_queue();
        q.retain(|j| !j.reply.is_closed());
        let n = q.len().min(MAX_OPS);
        q.drain(..n).collect()
    }

    /// If a place is free and operations wait, sends them in a task of their own.
    fn pump(ctx: &Arc<Ctx>) {
        let Ok(permit) = ctx.slots.clone().try_acquire_owned() else {
            return;
        };
        let jobs = ctx.take();
        let place = Place {
            ctx: ctx.clone(),
            permit: Some(permit),
        };
        if !jobs.is_empty() {
            place.send_in_task(jobs);
        }
    }

    async fn send(&self, jobs: Vec<Job>) {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(self.script.get_hash()).arg(0).arg(&self.header);
        for j in &jobs {
            cmd.arg(&j.args);
        }
        match self.query(&cmd).await {
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
