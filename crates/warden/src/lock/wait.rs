//! The waiting loop shared by every backend.

#[allow(unused_imports)]
use super::*;

/// Waits for a grant (see [`attempt_until_granted`]) and counts the acquire's outcome in the handle's
/// analytics. A backend that waits on the far side does not say whether it waited: its grants count as
/// immediate here (its server counts the wait).
pub(super) async fn wait_for_grant(
    warden: &Warden,
    req: &AcquireRequest,
    wait: Duration,
    claim_now: bool,
) -> Result<(Instant, crate::types::Grant)> {
    let backend = &warden.backend;
    let start = Instant::now();
    let mut waited = false;
    let result = if backend.capabilities().remote_wait {
        wait_remotely(backend, req, wait).await
    } else {
        attempt_until_granted(backend, req, wait, claim_now, &mut waited).await
    };
    let outcome = match &result {
        Ok(_) if waited => Outcome::GrantedAfter(start.elapsed()),
        Ok(_) => Outcome::Granted,
        Err(Error::Timeout { .. }) => Outcome::TimedOut,
        Err(Error::ConditionFailed { .. }) => Outcome::Refused,
        Err(_) => return result,
    };
    warden.analytics.record_acquire(&req.resource, outcome);
    result
}

/// The waiting loop shared by every backend: attempt, then sleep until a notification, the blocking lease's
/// expiry, the next queue heartbeat or the deadline, whichever comes first. Returns the instant the
/// granting request was sent (validity is measured from it) and the grant; sets `waited` when the first
/// attempt did not grant.
async fn attempt_until_granted(
    backend: &Arc<dyn Backend>,
    req: &AcquireRequest,
    wait: Duration,
    claim_now: bool,
    waited: &mut bool,
) -> Result<(Instant, crate::types::Grant)> {
    let start = Instant::now();
    let deadline = start + wait;
    let registration = (!wait.is_zero()).then(|| backend.wake_router().register(token::waiter_id()));
    let mut cleanup = CancelCleanup {
        backend: backend.clone(),
        resource: req.resource.clone(),
        waiter_id: registration.as_ref().map(|r| r.id().to_string()),
        lock_id: req.lock_id.clone(),
        client_id: req.client_id.clone(),
        ttl: req.ttl,
        armed: true,
    };
    let heartbeat = req.waiter_lease / 3;
    loop {
        let sent = Instant::now();
        let outcome = backend.attempt(req, registration.as_ref().map(|r| r.id())).await;
        // The answer that left this waiter queued: when it was sent, and the backend's clock in it.
        let queued: Option<(Instant, SystemTime)>;
        let retry_in = match outcome {
            Ok(Attempt::Granted(g)) => {
                cleanup.armed = false;
                return Ok((sent, g));
            }
            Ok(Attempt::NotGranted { retry_in, backend_now }) => {
                *waited = true;
                queued = backend_now.map(|t| (sent, t));
                retry_in
            }
            // The condition failed in the step that would have granted: nothing was granted (nor is a conditional
            // waiter ever handed the lock); leave the queue before answering, so nobody waits behind this waiter.
            Err(e @ Error::ConditionFailed { .. }) => {
                cleanup.armed = false;
                if let Some(reg) = &registration {
                    if backend.leave_queue(&req.resource, reg.id()).await.is_err() {
                        cleanup.armed = true;
                    }
                }
                return Err(e);
            }
            // The cleanup (still armed) leaves the queue and releases a grant the failed attempt may have made.
            Err(e) => return Err(e),
        };
        let Some(reg) = registration.as_ref() else {
            cleanup.armed = false;
            return Err(Error::Timeout {
                resource: req.resource.clone(),
                waited: Duration::ZERO,
            });
        };
        let now = Instant::now();
        let mut wake_at = (now + heartbeat).min(deadline);
        if let Some(r) = retry_in {
            // Wake when the blocking lease ends (+1 ms: expiry is strict), even without a notification.
            wake_at = wake_at.min(now + r + Duration::from_millis(1));
        }
        let timer_fired = loop {
            tokio::select! {
                _ = reg.notified() => break false,
                _ = reg.retimed() => {
                    // The lock went to the waiter ahead: wake when its lease ends, unless earlier anyway.
                    if let Some(at) = reg.take_blocked_until() {
                        wake_at = wake_at.min(at.max(Instant::now()));
                    }
                }
                _ = sleep_until(wake_at) => break true,
            }
        };
        // A grant handed over with a notification wins over a deadline that passed meanwhile.
        let handed = reg.take_grant();
        if timer_fired && handed.is_none() && Instant::now() >= deadline {
            cleanup.armed = false;
            if let Ok(false) = backend.leave_queue(&req.resource, reg.id()).await {
                // No longer queued: a release may have handed this waiter the lock just now.
                let _ = backend.release(&req.lock_id, Some(&req.client_id)).await;
            }
            return Err(Error::Timeout {
                resource: req.resource.clone(),
                waited: start.elapsed(),
            });
        }
        if let (Some(g), Some((q_sent, q_now))) = (handed, queued) {
            // Handed over by a release after the answer that queued us, which the backend dated q_now: the
            // lease began at least (acquired_at - q_now) after q_sent. Counted at 99% (the stated clock-rate
            // allowance) less 1 ms for the backend's millisecond clock, so the anchor is never late.
            let Ok(later) = g.acquired_at.duration_since(q_now) else {
                // Handed over *before* that answer, which said this waiter did not hold the lock: the grant
                // has ended already (its notification was read late, e.g. after this process was stopped).
                // Trusting it would anchor a dead lease at q_sent; keep waiting instead.
                tracing::debug!(resource = %req.resource, "ignoring a handover older than the last queue answer");
                continue;
            };
            let anchor = (q_sent + (later * 99 / 100).saturating_sub(Duration::from_millis(1))).min(Instant::now());
            cleanup.armed = false;
            // Handed over for less than the ttl (min(ttl, waiter lease)): a guard claims the rest with one
            // renewal a third into that span (none if released before); a bare lease claims it now.
            if claim_now && g.remaining.is_some_and(|r| r < req.ttl) {
                return reanchor(backend, req, anchor, g).await;
            }
            return Ok((anchor, g));
        }
    }
}

/// Acquire through a backend that waits on the far side. Dropping the future drops the request, which gives
/// up the place in the remote queue. When the grant came after a long wait, the moment it was made is not
/// known closely enough to bound the lease's validity, so one renewal re-anchors it: its send time is a safe
/// lower bound for the new lease start.
pub(super) async fn wait_remotely(
    backend: &Arc<dyn Backend>,
    req: &AcquireRequest,
    wait: Duration,
) -> Result<(Instant, crate::types::Grant)> {
    let sent = Instant::now();
    let grant = backend.acquire_waiting(req, wait).await?;
    if sent.elapsed() <= req.ttl / 4 {
        return Ok((sent, grant));
    }
    reanchor(backend, req, sent, grant).await
}

/// Renews a fresh grant for its full ttl, so its validity is measured from the renewal's send time (a safe
/// lower bound for the renewed lease's start). If a cap refuses, the grant keeps `anchor`; if the renewal
/// fails, the grant is released and the error returned.
pub(super) async fn reanchor(
    backend: &Arc<dyn Backend>,
    req: &AcquireRequest,
    anchor: Instant,
    mut grant: crate::types::Grant,
) -> Result<(Instant, crate::types::Grant)> {
    let lock_id = grant.lock_id.clone().unwrap_or_else(|| req.lock_id.clone());
    let renew_sent = Instant::now();
    match backend.renew(&lock_id, Some(req.ttl), Some(&req.client_id)).await {
        Ok(crate::types::Renewal::Renewed { lease, granted }) => {
            grant.expires_at = lease.expires_at;
            grant.remaining = Some(granted);
            Ok((renew_sent, grant))
        }
        Ok(_) => Ok((anchor, grant)),
        Err(e) => {
            let _ = backend.release(&lock_id, Some(&req.client_id)).await;
            Err(e)
        }
    }
}
