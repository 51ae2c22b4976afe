//! Lock groups: acquire several resources as one, release and renew them with one call.

#[allow(unused_imports)]
use super::*;
use warden::wire::{Group, GroupAcquireBody, GroupMember, GroupReleaseBody, GroupRenewBody, PathAcquireBody};

/// An error about member `i`: its field becomes `members[i].<field>` and the sentence names the member.
fn in_member(i: usize, resource: &str, mut e: ApiError) -> ApiError {
    e.field = Some(match e.field.take() {
        Some(f) => format!("members[{i}].{f}"),
        None => format!("members[{i}]"),
    });
    e.message = format!("member {i} (`{resource}`): {}", e.message);
    e
}

/// Acquire every member or none, waiting up to `waitTimeout` for the whole group. Members are taken in one
/// global order (by resource name), each waiting in its own FIFO queue, so groups never deadlock.
#[utoipa::path(post, path = "/api/groups/acquire", tag = "groups", request_body = GroupAcquireBody,
    responses((status = 201, description = "Every member granted", body = GroupEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 409, description = "lock_timeout (naming the member still held) / conflict", body = ErrorBody),
              (status = 429, description = "too_many_waiters", body = ErrorBody),
              (status = 503, description = "backend_unavailable / shutting_down", body = ErrorBody)))]
pub async fn acquire_group(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b: GroupAcquireBody = parse_body(body, state.config().max_body_bytes)?;
    grant_group(state, caller, b).await
}

/// Lock a path in a tree (`orders/eu/42`): it excludes locks on anything below and above it, never its
/// siblings. The answer is a group (an intention on each ancestor, then the path itself; release and renew it
/// with `/api/groups/*`); the path's own lease carries the fencing token to use.
#[utoipa::path(post, path = "/api/paths/acquire", tag = "groups", request_body = PathAcquireBody,
    responses((status = 201, description = "The path and its ancestors' intentions granted", body = GroupEnvelope),
              (status = 400, description = "Invalid request, or a backend without intentions", body = ErrorBody),
              (status = 409, description = "lock_timeout (naming the member still held)", body = ErrorBody),
              (status = 429, description = "too_many_waiters", body = ErrorBody),
              (status = 503, description = "backend_unavailable / shutting_down", body = ErrorBody)))]
pub async fn acquire_path(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b: PathAcquireBody = parse_body(body, state.config().max_body_bytes)?;
    let separator = match b.separator.as_deref() {
        None => '/',
        Some(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => c,
                _ => return Err(ApiError::invalid_field("separator", "must be one character")),
            }
        }
    };
    let shared = match b.mode.as_deref() {
        None | Some("exclusive") => false,
        Some("shared") => true,
        Some(_) => return Err(ApiError::invalid_field("mode", "must be \"exclusive\" or \"shared\"")),
    };
    if !state.warden().capabilities().intentions {
        return Err(warden::Error::Unsupported {
            backend: state.warden().backend().kind(),
            what: "path locks (intention kinds)".into(),
        }
        .into());
    }
    let members = warden::lock::path_members(&b.path, separator, shared)?
        .into_iter()
        .map(|(resource, kind)| {
            let (lock_type, mode) = kind.to_wire();
            GroupMember {
                resource,
                lock_type: Some(lock_type.into()),
                mode: mode.map(String::from),
                permits: None,
            }
        })
        .collect();
    let group = GroupAcquireBody {
        members,
        ttl: b.ttl,
        wait_timeout: b.wait_timeout,
        client_id: b.client_id,
        max_renewals: b.max_renewals,
        max_hold: b.max_hold,
    };
    grant_group(state, caller, group).await
}

/// Grants every member of `b` or none.
async fn grant_group(state: AppState, caller: Caller, b: GroupAcquireBody) -> ApiResult {
    let most = validate::MAX_GROUP_MEMBERS;
    if b.members.is_empty() || b.members.len() > most {
        return Err(ApiError::invalid_field(
            "members",
            format!("a group needs 1..={most} members, got {}", b.members.len()),
        ));
    }
    let client_id = caller.bind(&b.client_id)?;
    let ttl = Duration::from_millis(b.ttl.unwrap_or(DEFAULT_TTL_MS));
    validate::ttl(ttl)?;
    let wait = Duration::from_millis(b.wait_timeout.unwrap_or(DEFAULT_WAIT_MS));
    validate::wait(wait)?;
    let mut builder = state
        .warden()
        .group(Vec::<String>::new())
        .ttl(ttl)
        .wait(wait)
        .client_id(client_id.as_str());
    let mut slots = Vec::new();
    for (i, m) in b.members.iter().enumerate() {
        let checked = kind_of(m.lock_type.as_deref(), m.mode.as_deref(), m.permits).and_then(|kind| {
            validate::resource(&m.resource)?;
            caller.may_lock(&m.resource)?;
            Ok(kind)
        });
        let kind = checked.map_err(|e| in_member(i, &m.resource, e))?;
        if !wait.is_zero() {
            slots.push(state.limits().enter(&m.resource).map_err(ApiError::too_many_waiters)?);
        }
        builder = builder.member(m.resource.as_str(), kind, m.permits.unwrap_or(0));
    }
    if let Some(n) = b.max_renewals {
        builder = builder.max_renewals(n);
    }
    if let Some(ms) = b.max_hold {
        builder = builder.max_hold(Duration::from_millis(ms));
    }
    let started = Instant::now();
    // Dropping this future (client disconnected, shutdown) releases what was granted and leaves the queues.
    let result = tokio::select! {
        r = builder.acquire_leases() => r,
        _ = state.shutdown_token().cancelled() => Err(warden::Error::ShuttingDown(
            "this warden server is stopping; retry against another instance".into())),
    };
    drop(slots);
    let leases = match result {
        Ok(leases) => leases,
        Err(e) => {
            if matches!(e, warden::Error::Timeout { .. }) {
                metrics::counter!("warden_acquire_timeouts_total", "type" => "group").increment(1);
            }
            return Err(e.into());
        }
    };
    metrics::counter!("warden_grants_total", "type" => "group").increment(1);
    metrics::histogram!("warden_acquire_wait_seconds", "type" => "group").record(started.elapsed().as_secs_f64());
    for lease in &leases {
        if state.audit().active() {
            state.audit().emit(Event::new("grant", caller.name()).lease(lease));
        }
        state.expiry().watch(lease);
    }
    tracing::debug!(members = leases.len(), client = %client_id, "group grant");
    let group = Group {
        group_id: warden::lock::group_id(leases.iter().map(|l| l.lock_id.as_str())),
        locks: leases.iter().map(|l| own(&caller, l)).collect(),
    };
    Ok(ok(StatusCode::CREATED, group))
}

/// Release every member of a group (groupId + the clientId it was granted to). Every member is released; the
/// answer is the first member's error, if any.
#[utoipa::path(post, path = "/api/groups/release", tag = "groups", request_body = GroupReleaseBody,
    responses((status = 200, description = "Released", body = MessageEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 409, description = "not_owner / lease_lost", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn release_group(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b: GroupReleaseBody = parse_body(body, state.config().max_body_bytes)?;
    let client_id = caller.bind(&b.client_id)?;
    caller.may_hold()?;
    let ids = warden::lock::group_lock_ids(&b.group_id)?;
    let known: Vec<LeaseInfo> = if state.audit().active() {
        ids.iter().filter_map(|id| state.expiry().peek(id)).collect()
    } else {
        Vec::new()
    };
    let released = state.warden().release_group(&b.group_id, Some(&client_id)).await;
    for l in &known {
        let event = Event::new("release", caller.name()).lease(l);
        state.audit().emit(match &released {
            Ok(_) => event,
            Err(e) => event.outcome(ApiError::from(e.clone()).code.as_str()),
        });
    }
    let released = released?;
    for (id, r) in ids.into_iter().zip(&released) {
        if let Some(l) = state.expiry().forget(id) {
            crate::expiry::count_release(&state, &l, r);
        }
    }
    metrics::counter!("warden_releases_total").increment(released.len() as u64);
    for held in released.iter().filter_map(|r| r.held_for) {
        metrics::histogram!("warden_hold_seconds").record(held.as_secs_f64());
    }
    Ok(Json(serde_json::json!({ "success": true, "message": "Group released successfully" })).into_response())
}

/// Renew every member of a group for `ttl` ms from now (default: their ttl).
#[utoipa::path(post, path = "/api/groups/renew", tag = "groups", request_body = GroupRenewBody,
    responses((status = 200, description = "Renewed", body = GroupEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 404, description = "not_found", body = ErrorBody),
              (status = 409, description = "not_owner / lease_lost / renewal_capped", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn renew_group(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let b: GroupRenewBody = parse_body(body, state.config().max_body_bytes)?;
    let client_id = caller.bind(&b.client_id)?;
    caller.may_hold()?;
    let ttl = b.ttl.map(Duration::from_millis);
    let renewed = state.warden().renew_group(&b.group_id, ttl, Some(&client_id)).await?;
    let mut locks = Vec::with_capacity(renewed.len());
    for r in renewed {
        match r {
            Renewal::Renewed { lease, .. } => {
                state.expiry().watch(&lease);
                locks.push(own(&caller, &lease));
            }
            _ => {
                return Err(ApiError {
                    status: StatusCode::CONFLICT,
                    code: ErrorCode::RenewalCapped,
                    message: "a member reached its renewal or hold-time cap and was not extended (the others were): \
                              release the group and acquire it again"
                        .into(),
                    node: None,
                    field: None,
                })
            }
        }
    }
    metrics::counter!("warden_renewals_total").increment(locks.len() as u64);
    Ok(ok(
        StatusCode::OK,
        Group {
            group_id: b.group_id,
            locks,
        },
    ))
}
