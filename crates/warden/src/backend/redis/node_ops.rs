//! The single-node operations the Redlock backend composes over its nodes.

#[allow(unused_imports)]
use super::*;

impl RedisBackend {
    /// One node's acquire, as Redlock uses it: `fence_t` (grant only if the stored fence is below it, then
    /// store it) and `queue_score` (the waiter's position, the same on every node).
    pub(crate) async fn attempt_on_node(
        &self,
        req: &AcquireRequest,
        waiter_id: Option<&str>,
        fence_t: Option<u64>,
        queue_score: Option<u64>,
    ) -> Result<NodeAttempt> {
        let tag = self.tag(&req.resource);
        if keys::tag_of_lock_id(&req.lock_id) != Some(tag) {
            return Err(Error::invalid(
                "lockId",
                "was not made for this resource: use Backend::new_lock_id(resource)",
            ));
        }
        let condition = match &req.condition {
            None => String::new(),
            Some(c) => {
                c.within_retention(self.opts.retain)?;
                c.encode()
            }
        };
        let v = self
            .op(vec![
                "A".into(),
                req.lock_id.clone(),
                crate::types::stored_kind(req),
                req.ttl.as_millis().to_string(),
                req.client_id.clone(),
                waiter_id.unwrap_or("").into(),
                req.waiter_lease.as_millis().to_string(),
                req.max_renewals.map(i64::from).unwrap_or(-1).to_string(),
                req.max_hold.map(|d| d.as_millis()).unwrap_or(0).to_string(),
                req.resource.clone(),
                fence_t.map(|t| t.to_string()).unwrap_or_default(),
                queue_score.map(|t| t.to_string()).unwrap_or_default(),
                condition,
                req.priority.to_string(),
            ])
            .await?;
        let (now, v) = v;
        if let Value::Int(fence) = v {
            // Granted by this call, at the batch's clock, for the ttl asked.
            let acquired = ms_to_system(now);
            return Ok(NodeAttempt::Granted(
                Grant::new(fence as u64, acquired, acquired + req.ttl),
                false,
            ));
        }
        let Value::Array(items) = &v else {
            return Err(bad("acquire", &v));
        };
        let int = |i: usize| items.get(i).and_then(as_i64).ok_or_else(|| bad("acquire", &v));
        match items.first().and_then(as_i64) {
            Some(1) if items.len() >= 4 => {
                let mut grant = Grant::new(int(1)? as u64, ms_to_system(int(2)?), ms_to_system(int(3)?));
                let queued = items.get(4).and_then(as_i64) == Some(1);
                grant.remaining = items
                    .get(5)
                    .and_then(as_i64)
                    .filter(|ms| *ms >= 0)
                    .map(|ms| Duration::from_millis(ms as u64));
                Ok(NodeAttempt::Granted(grant, queued))
            }
            Some(0) => {
                let retry = items.get(1).and_then(as_i64).unwrap_or(-1);
                Ok(NodeAttempt::NotGranted {
                    backend_now: items.get(2).and_then(as_i64).map(ms_to_system),
                    retry_in: (retry >= 0).then(|| Duration::from_millis(retry as u64)),
                })
            }
            Some(-1) => Err(Error::LimitExceeded {
                what: format!(
                    "{MAX_WAITERS_PER_RESOURCE} waiters already queued on `{}`",
                    req.resource
                ),
            }),
            Some(-2) => Ok(NodeAttempt::FenceAhead),
            Some(-4) => {
                let last = items.get(1).and_then(as_string).and_then(|s| s.parse().ok());
                let clock_us = int(2)? as u64;
                let refused = req.condition.and_then(|c| c.refused(&req.resource, last, clock_us));
                Err(refused.unwrap_or_else(|| bad("acquire", &v)))
            }
            Some(-3) => {
                let have = items.get(1).and_then(as_string).unwrap_or_default();
                Err(Error::permits_conflict(
                    &req.resource,
                    crate::types::stored_permits(&have),
                    req.permits,
                ))
            }
            _ => Err(bad("acquire", &v)),
        }
    }

    /// Redlock's fence read: the node's stored fence, or its clock in µs if it has none.
    pub(crate) async fn read_fence(&self, resource: &str) -> Result<u64> {
        let v = self
            .op(vec!["F".into(), self.tag(resource).into(), resource.into()])
            .await?
            .1;
        as_i64(&v).map(|n| n as u64).ok_or_else(|| bad("fence", &v))
    }
}
