//! The endpoints of shared/API.md. Every extractor's rejection is mapped to the error envelope, so bad input
//! always answers 4xx with a sentence naming the field, never a bare text body or a 5xx.

use crate::audit::Event;
use crate::caller::Caller;
use crate::dto::*;
use crate::error::ApiError;
use crate::state::AppState;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::time::{Duration, Instant, SystemTime};
use warden::wire::ErrorCode;
use warden::{validate, LeaseInfo, LockKind, Renewal};

type ApiResult = Result<Response, ApiError>;

/// Default lease length when `ttl` is absent.
pub const DEFAULT_TTL_MS: u64 = 30_000;
/// Default wait when `waitTimeout` is absent.
pub const DEFAULT_WAIT_MS: u64 = 5_000;

pub(crate) fn parse_body<T: DeserializeOwned>(
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError {
                status: StatusCode::PAYLOAD_TOO_LARGE,
                code: ErrorCode::InvalidRequest,
                message: format!("request body is larger than the limit of {limit} bytes"),
                node: None,
                field: None,
            }
        } else {
            ApiError::invalid(format!("could not read the request body: {}", r.body_text()))
        }
    })?;
    if bytes.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(ApiError::invalid("request body is empty: send a JSON object"));
    }
    // Typed parsing in one pass; the first byte tells a non-object apart without building a JSON tree.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde::de::IgnoredAny>(&bytes) {
            Ok(_) => ApiError::invalid("request body must be a JSON object"),
            Err(e) => ApiError::invalid(format!("malformed JSON body: {e}")),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("malformed JSON body: {inner}"))
        } else if path == "." || path == "?" || path.is_empty() {
            ApiError::invalid(format!("invalid request body: {inner}"))
        } else {
            // A top-level field's name is data the client can act on; a nested path stays in the sentence.
            let message = format!("invalid field `{path}`: {inner}");
            match path.contains(['.', '[']) {
                false => ApiError::invalid_field(&path, message),
                true => ApiError::invalid(message),
            }
        }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("malformed JSON body: trailing data after the object ({e})")))?;
    Ok(value)
}

/// An empty lock id is a bad request; any other id that cannot be one of ours is simply unknown (404).
fn check_lock_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid("`lockId` must not be empty"));
    }
    validate::lock_id(id).map_err(|_| ApiError::not_found(id))
}

/// `{"success": true, "data": ...}`, serialised straight from the typed value.
#[derive(serde::Serialize)]
struct Success<'a, T: serde::Serialize> {
    success: bool,
    data: &'a T,
}

pub(crate) fn ok<T: serde::Serialize>(status: StatusCode, data: T) -> Response {
    (
        status,
        Json(Success {
            success: true,
            data: &data,
        }),
    )
        .into_response()
}

/// A lease as its owner sees it: with its lock id, and its client id as the owner sent it.
fn own(caller: &Caller, l: &LeaseInfo) -> Lock {
    let mut lock = Lock::owned(l);
    lock.client_id = caller.unbind(&l.client_id).to_string();
    lock
}

async fn acquire_impl(
    state: AppState,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
    fixed: Option<&'static str>,
) -> ApiResult {
    let b: AcquireBody = parse_body(body, state.config().max_body_bytes)?;
    let lock_type = fixed.or(b.lock_type.as_deref());
    let kind = LockKind::from_wire(lock_type, b.mode.as_deref()).map_err(|e| {
        // A read-write lock's problem is its mode; any other, its type.
        let field = if lock_type == Some("read-write") {
            "mode"
        } else {
            "type"
        };
        ApiError::invalid_field(field, e)
    })?;
    validate::resource(&b.resource)?;
    let client_id = caller.bind(&b.client_id)?;
    caller.may_lock(&b.resource)?;
    let ttl = Duration::from_millis(b.ttl.unwrap_or(DEFAULT_TTL_MS));
    validate::ttl(ttl)?;
    let wait = Duration::from_millis(b.wait_timeout.unwrap_or(DEFAULT_WAIT_MS));
    validate::wait(wait)?;
    let _slot = if wait.is_zero() {
        None
    } else {
        Some(state.limits().enter(&b.resource).map_err(ApiError::too_many_waiters)?)
    };
    let (type_label, _) = kind.to_wire();
    let started = Instant::now();
    let mut builder = state
        .warden()
        .lock(b.resource.as_str())
        .kind(kind)
        .ttl(ttl)
        .wait(wait)
        .client_id(client_id.as_str());
    if let Some(n) = b.max_renewals {
        builder = builder.max_renewals(n);
    }
    if let Some(ms) = b.max_hold {
        builder = builder.max_hold(Duration::from_millis(ms));
    }
    let acquire = builder.acquire_lease();
    // Dropping this future (client disconnected, shutdown) leaves the queue at once: see LockBuilder::acquire.
    let result = tokio::select! {
        r = acquire => r,
        _ = state.shutdown_token().cancelled() => Err(warden::Error::ShuttingDown(
            "the server is shutting down; retry against another instance".into())),
    };
    match result {
        Ok(lease) => {
            metrics::counter!("warden_grants_total", "type" => type_label).increment(1);
            metrics::histogram!("warden_acquire_wait_seconds", "type" => type_label)
                .record(started.elapsed().as_secs_f64());
            // Never the lock id: it is the owner's secret (logs are read by others).
            tracing::debug!(resource = %lease.resource, fence = lease.fencing_token, client = %lease.client_id, "grant");
            if state.audit().active() {
                state.audit().emit(Event::new("grant", caller.name()).lease(&lease));
                state.expiry().watch(&lease);
            }
            Ok(ok(StatusCode::CREATED, own(&caller, &lease)))
        }
        Err(e) => {
            if matches!(e, warden::Error::Timeout { .. }) {
                metrics::counter!("warden_acquire_timeouts_total", "type" => type_label).increment(1);
            }
            Err(e.into())
        }
    }
}

/// Acquire a lease, waiting up to `waitTimeout` in FIFO order.
#[utoipa::path(post, path = "/api/locks/acquire", tag = "locks", request_body = AcquireBody,
    responses((status = 201, description = "Granted", body = LockEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 409, description = "lock_timeout", body = ErrorBody),
              (status = 429, description = "too_many_waiters", body = ErrorBody),
              (status = 503, description = "backend_unavailable / shutting_down", body = ErrorBody)))]
pub async fn acquire(State(state): State<AppState>, caller: Caller, body: Result<Bytes, BytesRejection>) -> ApiResult {
    acquire_impl(state, caller, body, None).await
}

/// Acquire with `type` fixed to exclusive.
#[utoipa::path(post, path = "/api/locks/exclusive", tag = "locks", request_body = AcquireBody,
    responses((status = 201, description = "Granted", body = LockEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 409, description = "lock_timeout", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn exclusive(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    acquire_impl(state, caller, body, Some("exclusive")).await
}

/// Acquire with `type` fixed to shared.
#[utoipa::path(post, path = "/api/locks/shared", tag = "locks", request_body = AcquireBody,
    responses((status = 201, description = "Granted", body = LockEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 409, description = "lock_timeout", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn shared(State(state): State<AppState>, caller: Caller, body: Result<Bytes, BytesRejection>) -> ApiResult {
    acquire_impl(state, caller, body, Some("shared")).await
}

/// Acquire with `type` fixed to read-write; `mode` (read | write) is required.
#[utoipa::path(post, path = "/api/locks/read-write", tag = "locks", request_body = AcquireBody,
    responses((status = 201, description = "Granted", body = LockEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 409, description = "lock_timeout", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn read_write(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    acquire_impl(state, caller, body, Some("read-write")).await
}

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
    state.expiry().forget(&b.lock_id);
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
            if state.audit().active() {
                state.expiry().watch(&lease);
            }
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
}

/// The leases a client holds now.
#[utoipa::path(get, path = "/api/locks/held", tag = "locks",
    params(("clientId" = String, Query, description = "The client id")),
    responses((status = 200, description = "Held leases", body = LockListEnvelope),
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
    if caller.sees_all() {
        // Nothing tells an owner from anyone else who knows a client id: leases by handle.
        let leases = state.warden().held(&client).await?;
        return Ok(ok(StatusCode::OK, leases.iter().map(Lock::seen).collect::<Vec<_>>()));
    }
    // A principal's own clients: its own leases, with their lock ids.
    let leases = state.warden().held(&caller.bind(&client)?).await?;
    Ok(ok(
        StatusCode::OK,
        leases.iter().map(|l| own(&caller, l)).collect::<Vec<_>>(),
    ))
}

/// Cluster-wide statistics.
#[utoipa::path(get, path = "/api/locks/stats", tag = "monitoring",
    responses((status = 200, description = "Statistics", body = StatsEnvelope),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn stats(State(state): State<AppState>, caller: Caller) -> ApiResult {
    caller.may_observe()?;
    let s = state.warden().stats().await?;
    Ok(ok(StatusCode::OK, StatsDto::from(s)))
}

/// Backend health: every node, quorum, status.
#[utoipa::path(get, path = "/api/locks/health", tag = "monitoring",
    responses((status = 200, description = "Health", body = HealthEnvelope)))]
pub async fn health(State(state): State<AppState>) -> ApiResult {
    let h = state.warden().health().await;
    let status = match h.status {
        warden::HealthStatus::Healthy => "healthy",
        warden::HealthStatus::Degraded => "degraded",
        _ => "unhealthy",
    };
    let dto = HealthDto {
        status: status.into(),
        backend: h.kind.into(),
        nodes: h
            .nodes
            .into_iter()
            .map(|n| NodeDto {
                address: n.address,
                reachable: n.reachable,
                latency_ms: n.latency_ms,
                error: n.error,
            })
            .collect(),
        quorum: h.quorum,
        waiters: state.limits().total() as u64,
        capabilities: state.warden().capabilities().into(),
    };
    Ok(ok(StatusCode::OK, dto))
}

/// Query of `GET /api/locks/queue`.
#[derive(Debug, Deserialize)]
pub struct QueueQuery {
    resource: Option<String>,
}

/// The waiters of a resource, in grant order.
#[utoipa::path(get, path = "/api/locks/queue", tag = "monitoring",
    params(("resource" = String, Query, description = "The resource")),
    responses((status = 200, description = "Queue", body = QueueEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn queue(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<QueueQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|r| ApiError::invalid(format!("invalid query string: {}", r.body_text())))?;
    let resource = q
        .resource
        .ok_or_else(|| ApiError::invalid_field("resource", "query parameter `resource` is required"))?;
    validate::resource(&resource)?;
    caller.may_inspect(&resource)?;
    let info = state.warden().inspect(&resource).await?;
    Ok(ok(StatusCode::OK, QueueDto::from(&info)))
}

/// Liveness for load balancers: 200 when the backend answers, 503 otherwise.
#[utoipa::path(get, path = "/health", tag = "monitoring",
    responses((status = 200, description = "Healthy", body = Liveness),
              (status = 503, description = "Backend unreachable", body = Liveness)))]
pub async fn liveness(State(state): State<AppState>) -> Response {
    let timestamp = rfc3339(SystemTime::now());
    match state.warden().counts().await {
        Ok(s) => Json(Liveness {
            status: "healthy".into(),
            timestamp,
            active_locks: s.active_locks,
            total_locks: s.total_locks,
        })
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "health check: backend unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    serde_json::json!({ "status": "unhealthy", "timestamp": timestamp, "activeLocks": 0,
                    "totalLocks": 0, "error": e.to_string() }),
                ),
            )
                .into_response()
        }
    }
}

/// Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain")))]
pub async fn metrics_text(State(state): State<AppState>, caller: Caller) -> Response {
    if let Err(e) = caller.may_observe() {
        return e.into_response();
    }
    metrics::gauge!("warden_waiters").set(state.limits().total() as f64);
    if let Ok(s) = state.warden().counts().await {
        metrics::gauge!("warden_active_locks").set(s.active_locks as f64);
        metrics::gauge!("warden_total_locks").set(s.total_locks as f64);
        metrics::gauge!("warden_expired_locks").set(s.expired_locks as f64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
        .into_response()
}

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/openapi.json", tag = "monitoring",
    responses((status = 200, description = "OpenAPI document", body = Object)))]
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], crate::openapi::json()).into_response()
}

/// Unknown paths: the envelope, not an empty 404.
pub async fn no_route(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError {
        status: StatusCode::NOT_FOUND,
        code: ErrorCode::NotFound,
        message: format!("no endpoint {method} {path}: see /openapi.json for the API"),
        node: None,
        field: None,
    }
}

/// Known path, wrong method.
pub async fn wrong_method(method: Method, uri: Uri) -> ApiError {
    let path: String = uri.path().chars().take(200).collect();
    ApiError {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: ErrorCode::InvalidRequest,
        message: format!("{path} does not accept {method}: see /openapi.json for the API"),
        node: None,
        field: None,
    }
}
