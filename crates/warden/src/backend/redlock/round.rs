//! One Redlock round, and the fence a majority has seen.

#[allow(unused_imports)]
use super::*;

impl RedlockBackend {
    /// One Redlock round: the grant with fence T on every node. `Round::FenceStale`: no quorum, and a node
    /// had already seen a fence at or above T (nothing is held).
    pub(super) async fn round(&self, req: &AcquireRequest, waiter_id: Option<&str>, t: u64) -> Result<Round> {
        let start = Instant::now();
        let n = self.nodes.len();
        let q = self.quorum();
        // Phase 2: grant with T on every node.
        let token = self.next_token(&req.lock_id);
        let mut node_req = req.clone();
        node_req.lock_id = token.clone();
        let score = waiter_id.map(|w| self.score_for(w));
        let granted = |r: &[Option<Result<NodeAttempt>>]| {
            r.iter()
                .filter(|x| matches!(x, Some(Ok(NodeAttempt::Granted(..)))))
                .count()
        };
        let node_req = Arc::new(node_req);
        let waiter: Option<Arc<str>> = waiter_id.map(Arc::from);
        let results = self
            .on_all(
                move |_, b| {
                    let (node_req, waiter) = (node_req.clone(), waiter.clone());
                    async move { b.attempt_on_node(&node_req, waiter.as_deref(), Some(t), score).await }
                },
                |r| {
                    let answered_no = r.iter().filter(|x| x.is_some()).count() - granted(r);
                    granted(r) >= q || answered_no > n - q
                },
            )
            .await;
        let ok = granted(&results);
        let drift = crate::lock::drift(req.ttl);
        if ok >= q && start.elapsed() + drift < req.ttl {
            let grants: Vec<&Grant> = results
                .iter()
                .filter_map(|r| match r {
                    Some(Ok(NodeAttempt::Granted(g, _))) => Some(g),
                    _ => None,
                })
                .collect();
            let acquired_at = grants
                .iter()
                .map(|g| g.acquired_at)
                .max()
                .unwrap_or_else(SystemTime::now);
            let expires_at = grants
                .iter()
                .map(|g| g.expires_at)
                .min()
                .unwrap_or_else(SystemTime::now);
            self.remember_lease(&token, start + req.ttl);
            let mut grant = Grant::new(t, acquired_at, expires_at);
            grant.lock_id = Some(token);
            self.attempts
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&req.lock_id);
            if let Some(w) = waiter_id {
                self.forget_waiter(w);
                // Nodes that queued us (or did not answer) still list us as a waiter, at the head of their
                // queue: leave them now, or we would block the next waiter until our waiter lease ran out.
                for (n, r) in self.nodes.iter().zip(&results) {
                    if matches!(r, Some(Ok(NodeAttempt::Granted(_, false)))) {
                        continue;
                    }
                    let (n, res, w) = (n.clone(), req.resource.clone(), w.to_string());
                    tokio::spawn(async move {
                        let _ = n.call(|b| async move { b.leave_queue(&res, &w).await }).await;
                    });
                }
            }
            self.remember_fence(&req.resource, t);
            return Ok(Round::Done(Attempt::Granted(grant)));
        }
        // No quorum in time: undo everywhere at once, without waiting for slow nodes.
        self.release_everywhere(token, req.ttl);
        if count_err(&results) > n - q {
            return Err(self.quorum_error(&results));
        }
        let retry_in = results
            .iter()
            .filter_map(|r| match r {
                Some(Ok(NodeAttempt::NotGranted { retry_in, .. })) => *retry_in,
                // A concurrent grant with a higher fence, or a split vote: retry soon, with jitter.
                Some(Ok(_)) => Some(Duration::from_millis(1 + rand::random::<u64>() % 5)),
                _ => None,
            })
            .min();
        let not_granted = Attempt::NotGranted {
            retry_in,
            backend_now: None,
        };
        if results.iter().any(|r| matches!(r, Some(Ok(NodeAttempt::FenceAhead)))) {
            return Ok(Round::FenceStale(not_granted));
        }
        Ok(Round::Done(not_granted))
    }

    /// Phase 1: the highest fence a majority of nodes answers.
    pub(super) async fn read_quorum_fence(&self, resource: &str) -> Result<u64> {
        let n = self.nodes.len();
        let q = self.quorum();
        let reads = self
            .on_all(
                with_arg(resource, |b, resource| async move { b.read_fence(&resource).await }),
                |r| count_ok(r) >= q || count_err(r) > n - q,
            )
            .await;
        if count_ok(&reads) < q {
            return Err(self.quorum_error(&reads));
        }
        Ok(reads
            .iter()
            .filter_map(|r| r.as_ref()?.as_ref().ok())
            .copied()
            .max()
            .unwrap_or(0))
    }
}
