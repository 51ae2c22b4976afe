//! Keeping a guard's lease: the renewal watchdog and release retries.

#[allow(unused_imports)]
use super::*;

/// First pause before a release the backend could not take is tried again; it doubles up to 1 s.
pub(super) const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Releases in the background, first after `pause`, retrying while the backend cannot be reached, until
/// the lease would have ended anyway: a holder that let go is never what keeps a recovered backend's lock
/// blocked for the rest of the lease.
pub(super) fn spawn_release_retries(shared: Arc<GuardShared>, first_pause: Duration) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let left = {
        let st = shared.state();
        st.expires_at.duration_since(SystemTime::now()).unwrap_or_default()
    };
    let until = Instant::now() + left;
    rt.spawn(async move {
        let mut pause = first_pause;
        loop {
            if Instant::now() + pause >= until {
                return;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).clamp(RETRY_PAUSE, Duration::from_secs(1));
            match shared
                .backend
                .release(&shared.req.lock_id, Some(&shared.req.client_id))
                .await
            {
                Err(e) if e.is_retryable() => tracing::debug!(error = %e, "release failed, retrying"),
                _ => return,
            }
        }
    });
}

pub(super) fn apply_renewal(shared: &GuardShared, sent: Instant, ttl: Duration, r: Renewal) {
    let mut st = shared.state();
    match r {
        Renewal::Renewed { lease, granted } => {
            st.valid_until = sent + granted.saturating_sub(drift(ttl));
            st.next_renew = sent + granted / 3;
            st.expires_at = lease.expires_at;
            st.renewal_count = lease.renewal_count;
            st.ttl = ttl;
            st.claim = false;
        }
        Renewal::Capped { expires_at } => {
            st.expires_at = expires_at;
            st.capped = true;
        }
    }
}

/// Renews the lease about every ttl/3 and fires the lost signal when validity cannot be confirmed.
pub(super) async fn watchdog(shared: Arc<GuardShared>, auto_renew: bool) {
    loop {
        let (valid_until, next_renew, ttl, capped, claim) = {
            let st = shared.state();
            (st.valid_until, st.next_renew, st.ttl, st.capped, st.claim)
        };
        let renew_at = ((auto_renew || claim) && !capped).then_some(next_renew);
        tokio::select! {
            _ = shared.stop.cancelled() => return,
            _ = sleep_until(valid_until) => {
                shared.lost.cancel();
                return;
            }
            _ = shared.changed.notified() => continue,
            _ = sleep_until(renew_at.unwrap_or(valid_until)), if renew_at.is_some() => {}
        }
        let sent = Instant::now();
        let renewal = tokio::select! {
            _ = shared.stop.cancelled() => return,
            r = timeout_at(valid_until, shared.backend.renew(&shared.req.lock_id, Some(ttl), Some(&shared.req.client_id))) => r,
        };
        match renewal {
            Err(_) => {
                tracing::warn!(resource = %shared.req.resource, "renewal not confirmed before the lease's validity ended");
                shared.lost.cancel();
                return;
            }
            Ok(Ok(r)) => apply_renewal(&shared, sent, ttl, r),
            Ok(Err(e)) if e.is_retryable() => {
                // Transient: try again soon, but never past the validity deadline (the select above fires first).
                let retry = (ttl / 10).clamp(Duration::from_millis(5), Duration::from_secs(1));
                shared.state().next_renew = Instant::now() + retry;
                tracing::debug!(resource = %shared.req.resource, error = %e, "renewal failed, retrying");
            }
            Ok(Err(e)) => {
                // Not the error's sentence: it names the lock id, which no log may show.
                let why = match e {
                    Error::NotFound { .. } => "not found",
                    Error::NotOwner { .. } => "not owner",
                    Error::LeaseLost { .. } => "taken over or expired",
                    _ => "refused",
                };
                tracing::warn!(resource = %shared.req.resource, why, "renewal refused; lease lost");
                shared.lost.cancel();
                return;
            }
        }
    }
}
