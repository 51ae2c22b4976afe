//! Submitting a batch as one script call in queue order, reading its reply, retrying after a dropped
//! connection or a lost script, and handing each operation its own answer.

#[allow(unused_imports)]
use super::*;

impl Ctx {
    pub(super) fn lock_queue(&self) -> std::sync::MutexGuard<'_, Vec<Job>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The batch's script call, followed, when replicas must acknowledge it, by `WAIT` on the same connection
    /// (sent together, answered together: an array of the script's reply and, with `WAIT`, the count).
    pub(super) fn command(&self, jobs: &[Job]) -> redis::Pipeline {
        let mut p = redis::pipe();
        let cmd = p.cmd("EVALSHA").arg(self.script.get_hash()).arg(0).arg(&self.header);
        for j in jobs {
            cmd.arg(&j.args);
        }
        if self.replicas > 0 {
            p.cmd("WAIT").arg(self.replicas).arg(self.wait.as_millis() as u64);
        }
        p
    }

    /// The script's reply out of a call's answer, or the error of a call too few replicas acknowledged.
    fn script_reply(&self, answer: Value) -> Result<Value> {
        let Value::Array(mut parts) = answer else {
            return Err(Error::Protocol(format!("unexpected reply to a batch call: {answer:?}")));
        };
        if self.replicas > 0 {
            let acked = match parts.get(1) {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            if acked < i64::from(self.replicas) {
                return Err(unavailable(
                    &self.address,
                    format!(
                        "applied on the primary but acknowledged by {acked} of {} replicas within {} ms (WAIT); \
                         it may not survive a failover",
                        self.replicas,
                        self.wait.as_millis()
                    ),
                ));
            }
        }
        if parts.is_empty() {
            return Err(Error::Protocol("an empty reply to a batch call".into()));
        }
        Ok(parts.swap_remove(0))
    }

    /// Takes the waiting operations and submits them as one call while holding the queue's lock, so calls
    /// reach the connection in the order their operations were queued (FIFO across the calls in flight).
    /// The first poll of redis-rs's request hands the command to its connection.
    pub(super) async fn submit(&self) -> Option<Batch> {
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
    pub(super) async fn finish(&self, batch: Batch) {
        let deadline = tokio::time::Instant::now() + self.timeout;
        let first = match batch.first {
            First::Done(r) => Ok(r),
            First::Sent(call) => tokio::time::timeout_at(deadline, call).await,
        };
        self.conclude(batch.jobs, first).await
    }

    /// Hands out a call's first answer, retrying after a dropped connection or a lost script.
    pub(super) async fn conclude(
        &self,
        jobs: Vec<Job>,
        first: std::result::Result<redis::RedisResult<Value>, tokio::time::error::Elapsed>,
    ) {
        let result = match first {
            Err(_) => Err(unavailable(
                &self.address,
                format!("no answer within {:?}", self.timeout),
            )),
            Ok(Ok(v)) => self.script_reply(v),
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

    pub(super) fn deliver(&self, jobs: Vec<Job>, result: Result<Value>) {
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
    pub(super) async fn query(&self, cmd: &redis::Pipeline) -> Result<Value> {
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
                Ok(Ok(v)) => return self.script_reply(v),
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
