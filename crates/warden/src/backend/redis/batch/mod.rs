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

mod calls;
mod places;
use places::{Inline, Place};

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
    /// Replicas that must acknowledge each call's writes (`WAIT`), and how long they may take.
    replicas: u32,
    wait: Duration,
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
    /// Replicas that must acknowledge each call's writes (0: no `WAIT`).
    pub replicas: u32,
    /// How long they may take.
    pub wait: Duration,
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
                replicas: cfg.replicas,
                wait: cfg.wait,
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
