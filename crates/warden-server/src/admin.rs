//! What only an admin may do: end someone else's lease.

use crate::caller::Caller;
use crate::dto::{ErrorBody, ForceReleaseBody, ForceReleased, ForceReleasedEnvelope, Lock};
use crate::error::ApiError;
use crate::handlers::{ok, parse_body};
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use warden::validate;
use warden::wire::ErrorCode;

/// Longest force-release reason, bytes.
pub const MAX_REASON_BYTES: usize = 512;

/// Ends the live leases of a resource (or the one named by `leaseHandle`) now. Their holders learn at their
/// next renewal (the guard's lost signal fires); the next grant gets a higher fencing token, so a holder that
/// has not noticed yet is refused by anything that checks the token.
#[utoipa::path(post, path = "/api/locks/force-release", tag = "admin", request_body = ForceReleaseBody,
    responses((status = 200, description = "Ended", body = ForceReleasedEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 401, description = "unauthorized", body = ErrorBody),
              (status = 403, description = "forbidden: role admin needed", body = ErrorBody),
              (status = 404, description = "not_found: no live lease matches", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn force_release(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.may_force()?;
    let b: ForceReleaseBody = parse_body(body, state.config().max_body_bytes)?;
    validate::resource(&b.resource)?;
    if b.reason.trim().is_empty() || b.reason.len() > MAX_REASON_BYTES {
        return Err(ApiError::invalid(format!(
            "`reason` must be 1..={MAX_REASON_BYTES} bytes of text saying why the lease is taken away"
        )));
    }
    if let Some(h) = &b.lease_handle {
        if !warden::token::is_lease_handle(h) {
            return Err(ApiError::invalid(
                "`leaseHandle` must be `lh_` and 16 hex characters, as the views show it",
            ));
        }
    }
    let info = state.warden().inspect(&b.resource).await?;
    let mut released = Vec::new();
    for holder in info.holders.iter().filter(|h| !h.expired) {
        if b.lease_handle.as_ref().is_some_and(|h| *h != holder.lease_handle) {
            continue;
        }
        if holder.lock_id.is_empty() {
            return Err(ApiError::invalid(
                "this server's backend is another warden server, which does not show lock ids: force-release \
                 on that server",
            ));
        }
        match state.warden().release(&holder.lock_id, None).await {
            Ok(_) => {
                state.expiry().forget(&holder.lock_id);
                state.audit().emit(
                    crate::audit::Event::new("force_release", caller.name())
                        .lease(holder)
                        .detail(b.reason.clone()),
                );
                released.push(Lock::seen(holder));
            }
            // Released or expired meanwhile: nothing left to end.
            Err(warden::Error::NotFound { .. } | warden::Error::LeaseLost { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    if released.is_empty() {
        let what = match &b.lease_handle {
            Some(h) => format!("lease {h} on that resource"),
            None => "lease on that resource".into(),
        };
        return Err(ApiError {
            status: StatusCode::NOT_FOUND,
            code: ErrorCode::NotFound,
            message: format!("no live {what}: it was released, expired, or never held"),
            node: None,
            field: None,
        });
    }
    metrics::counter!("warden_force_releases_total").increment(released.len() as u64);
    for l in &released {
        tracing::info!(principal = caller.name(), resource = %l.resource, lease = %l.lease_handle,
            fence = l.fencing_token, reason = %b.reason, "force-release");
    }
    Ok(ok(
        StatusCode::OK,
        ForceReleased {
            released,
            reason: b.reason,
        },
    ))
}
