//! Group commit: the lease operations of one process on one node share script calls.
//!
//! An operation is queued to one task; that task keeps at most `inflight` script calls on the connection at
//! once and sends everything that arrived while they were in flight as the next call (no timer: a lone
//! operation goes out at once). Each operation keeps its own reply and its own error; the script runs them in
//! order, each in its own protected call. A call costs Redis a fixed price (EVALSHA lookup, the Lua call,
//! `TIME`, the reply) that is paid once per batch instead of once per operation.
//! redis-rs pipelines commands but has no way to merge several script invocations into one: that is the
//! part written here.

use super::counters::Counters;
use super::{map_err, unavailable};
use crate::error::{Error, Result};
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Most operations in one script call.
const MAX_OPS: usize = 128;

struct Job {
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
}

/// The queue of one node's pending operations.
pub(crate) struct Batcher {
    tx: mpsc::UnboundedSender<Job>,
    timeout: Duration,
    address: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Batcher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Batcher {
    /// Starts the batching task. `header` is the scripts' common ARGV head (see `scripts/lib.lua`).
    pub(crate) fn start(
        conn: ConnectionManager,
        script: Script,
        header: Vec<String>,
        address: String,
        timeout: Duration,
        inflight: usize,
        counters: Arc<Counters>,
    ) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = Arc::new(Ctx {
            conn,
            script,
            header,
            address: address.clone(),
            timeout,
            counters,
        });
        let task = tokio::spawn(collect(rx, Arc::new(Semaphore::new(inflight.max(1))), ctx));
        Batcher {
            tx,
            timeout,
            address,
            task,
        }
    }

    /// Runs one operation (an opcode and its arguments) and returns the server's clock (ms) at the call and the
    /// operation's own reply. Bounded by the node's timeout from the moment it is queued.
    pub(crate) async fn call(&self, args: Vec<String>) -> Result<(i64, Value)> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Job { args, reply })
            .map_err(|_| unavailable(&self.address, "the connection task has stopped"))?;
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(r)) => r,
            Ok(Err(_)) => Err(unavailable(&self.address, "the connection task has stopped")),
            Err(_) => Err(unavailable(
                &self.address,
                format!("no answer within {:?}", self.timeout),
            )),
        }
    }
}

async fn collect(mut rx: mpsc::UnboundedReceiver<Job>, slots: Arc<Semaphore>, ctx: Arc<Ctx>) {
    loop {
        // Wait for a free place first: whatever arrives meanwhile joins the next call.
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        // Let the tasks the last reply woke run first: their next operations join this call.
        tokio::task::yield_now().await;
        let mut jobs = vec![first];
        while jobs.len() < MAX_OPS {
            match rx.try_recv() {
                Ok(j) => jobs.push(j),
                Err(_) => break,
            }
        }
        // A caller that gave up (timeout, cancellation) gets nothing sent on its behalf.
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let ctx = ctx.clone();
        tokio::spawn(async move {
            ctx.send(jobs).await;
            drop(permit);
        });
    }
}

impl Ctx {
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
