//! Calls on one lease: release, renew, status; and a client's held leases.

#[allow(unused_imports)]
use super::*;

/// Release a lease (lockId + the clientId it was granted to).
#[utoipa::path(post, path = "/api/locks/release", tag = "locks", request_body = ReleaseBody,
    responses((status = 200, description = "Released", body = MessageEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 409, description = "not_owner / lease_lost", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn release(State(state): State<AppState>, caller: Caller, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: ReleaseBody = parse_body(body, state.config().max_body_bytes)?;
    check_lock_id(&b.lock_id)?;
    let client_id = caller.bind(&b.client_id)?;
    caller.may_hold()?;
    // What the trail says of the lease: as watched since its grant, else as the backend has it now.
    let known = if state.audit().active() {
        match state.expiry().peek(&b.lock_id) {
            Some(l) => Some(l),
            None => state.warden().lease(&b.lock_id).await.ok().flatten(),
        }
    } else {
        None
    };
    let released = state.warden().release(&b.lock_id, Some(&client_id)).await;
    if let Some(l) = &known {
        let event = Event::new("release", caller.name()).lease(l);
        state.audit().emit(match &released {
            Ok(_) => event,
            Err(e) => event.outcome(ApiError::from(e.clone()).code.as_str()),
        });
    }
    let released = released?;
    if let Some(l) = state.expiry().forget(&b.lock_id) {
        crate::expiry::count_release(&state, &l, &released);
    }
    metrics::counter!("warden_releases_total").increment(1);
    if let Some(held) = released.held_for {
        metrics::histogram!("warden_hold_seconds").record(held.as_secs_f64());
    }
    tracing::debug!(client = %b.client_id, "release");
    Ok(Json(serde_json::json!({ "success": true, "message": "Lock released successfully" })).into_response())
}

/// Renew a lease for `ttl` ms from now (default: its ttl).
#[utoipa::path(post, path = "/api/locks/renew", tag = "locks", request_body = RenewBody,
    responses((status = 200, description = "Renewed", body = LockEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 409, description = "not_owner / lease_lost / renewal_capped", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn renew(State(state): State<AppState>, caller: Caller, body: Result<Bytes, BytesRejection>) -> ApiResult {
    let b: RenewBody = parse_body(body, state.config().max_body_bytes)?;
    check_lock_id(&b.lock_id)?;
    let client_id = caller.bind(&b.client_id)?;
    caller.may_hold()?;
    let ttl = b.ttl.map(Duration::from_millis);
    let renewed = state.warden().renew(&b.lock_id, ttl, Some(&client_id)).await;
    if state.audit().active() {
        let refusal = match &renewed {
            Ok(Renewal::Renewed { .. }) => None,
            Ok(_) => Some("renewal_capped"),
            Err(e) => Some(ApiError::from(e.clone()).code.as_str()),
        };
        if let Some(code) = refusal {
            let event = Event::new("renew_refused", caller.name()).outcome(code);
            let event = match state.warden().lease(&b.lock_id).await {
                Ok(Some(l)) => event.lease(&l),
                _ => event,
            };
            state.audit().emit(event);
        }
    }
    match renewed? {
        Renewal::Renewed { lease, .. } => {
            metrics::counter!("warden_renewals_total").increment(1);
            state.expiry().watch(&lease);
            Ok(ok(StatusCode::OK, own(&caller, &lease)))
        }
        Renewal::Capped { expires_at } => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: ErrorCode::RenewalCapped,
            message: format!(
                "lease `{}` reached its renewal or hold-time cap and was not extended; it still ends at {}: \
                 release it and acquire again",
                b.lock_id,
                rfc3339(expires_at)
            ),
            node: None,
            field: None,
        }),
        // A future kind of outcome: report it as not extended rather than guess.
        _ => Err(ApiError {
            status: StatusCode::CONFLICT,
            code: ErrorCode::RenewalCapped,
            message: format!("lease `{}` was not extended: release it and acquire again", b.lock_id),
            node: None,
            field: None,
        }),
    }
}

/// A lease's state, also shortly after it expired.
#[utoipa::path(get, path = "/api/locks/{lockId}/status", tag = "locks",
    params(("lockId" = String, Path, description = "The lease's lock id")),
    responses((status = 200, description = "The lease", body = LockStatusEnvelope),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let Path(id) = path.map_err(|r| ApiError::invalid(format!("invalid lockId in the path: {}", r.body_text())))?;
    check_lock_id(&id)?;
    match state.warden().lease(&id).await? {
        // Another tenant's lease is as unknown to a client as one that never existed.
        Some(l) if caller.sees_all() || caller.owns_client(&l.client_id) => {
            let mut status = LockStatus::owned(&l);
            status.lock.client_id = caller.unbind(&l.client_id).to_string();
            Ok(ok(StatusCode::OK, status))
        }
        _ => Err(ApiError::not_found(&id)),
    }
}

/// Query of `GET /api/locks/held`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeldQuery {
    client_id: Option<String>,
    limit: Option<usize>,
    offset: Option<usize>,
}

/// The leases a client holds now.
#[utoipa::path(get, path = "/api/locks/held", tag = "locks",
    params(("clientId" = String, Query, description = "The client id"),
           ("limit" = Option<usize>, Query, description = "Leases per page, 1..=10000 (default 1000)"),
           ("offset" = Option<usize>, Query, description = "Where the page starts (the last page's nextOffset)")),
    responses((status = 200, description = "One page of held leases, oldest first; `nextOffset` when more follow",
               body = LockPageEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn held(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<HeldQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|r| ApiError::invalid(format!("invalid query string: {}", r.body_text())))?;
    let client = q
        .client_id
        .ok_or_else(|| ApiError::invalid_field("clientId", "query parameter `clientId` is required"))?;
    validate::client_id(&client)?;
    let (offset, limit) = page_params(q.limit, q.offset)?;
    let locks: Vec<Lock> = if caller.sees_all() {
        // Nothing tells an owner from anyone else who knows a client id: leases by handle.
        let leases = state.warden().held(&client).await?;
        leases.iter().map(Lock::seen).collect()
    } else {
        // A principal's own clients: its own leases, with their lock ids.
        let leases = state.warden().held(&caller.bind(&client)?).await?;
        leases.iter().map(|l| own(&caller, l)).collect()
    };
    Ok(Json(warden::wire::Page::of(locks, offset, limit)).into_response())
}
