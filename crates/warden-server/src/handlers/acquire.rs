//! Acquire and its type shortcuts.

#[allow(unused_imports)]
use super::*;

/// A lease as its owner sees it: with its lock id, and its client id as the owner sent it.
pub(crate) fn own(caller: &Caller, l: &LeaseInfo) -> Lock {
    let mut lock = Lock::owned(l);
    lock.client_id = caller.unbind(&l.client_id).to_string();
    lock
}

/// The kind a body's `type`, `mode` and `permits` ask for; the error names the field that is wrong.
pub(crate) fn kind_of(lock_type: Option<&str>, mode: Option<&str>, permits: Option<u32>) -> Result<LockKind, ApiError> {
    let kind = LockKind::from_wire(lock_type, mode).map_err(|e| {
        // A read-write lock's or an intention's problem is its mode; any other, its type.
        let field = if matches!(lock_type, Some("read-write" | "intent")) {
            "mode"
        } else {
            "type"
        };
        ApiError::invalid_field(field, e)
    })?;
    match (kind, permits) {
        (LockKind::Semaphore, None) => Err(ApiError::invalid_field(
            "permits",
            "`permits` is required for type semaphore: the resource's number of permits, 1..=1000",
        )),
        (LockKind::Semaphore, Some(n)) => Ok(validate::permits(n).map(|_| kind)?),
        (_, Some(_)) => Err(ApiError::invalid_field(
            "permits",
            "`permits` is only for type semaphore: drop it, or set `type` to \"semaphore\"",
        )),
        _ => Ok(kind),
    }
}

pub(crate) async fn acquire_impl(
    state: AppState,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
    fixed: Option<&'static str>,
) -> ApiResult {
    let b: AcquireBody = parse_body(body, state.config().max_body_bytes)?;
    if let (Some(path_type), Some(body_type)) = (fixed, b.lock_type.as_deref()) {
        if path_type != body_type {
            return Err(ApiError::invalid_field(
                "type",
                format!(
                    "`type` is `{body_type}` but this endpoint acquires `{path_type}` locks: drop `type`, or POST to \
                     /api/locks/acquire"
                ),
            ));
        }
    }
    let lock_type = fixed.or(b.lock_type.as_deref());
    let kind = kind_of(lock_type, b.mode.as_deref(), b.permits)?;
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
    if let Some(n) = b.permits {
        builder = builder.permits(n);
    }
    if let Some(n) = b.max_renewals {
        builder = builder.max_renewals(n);
    }
    if let Some(ms) = b.max_hold {
        builder = builder.max_hold(Duration::from_millis(ms));
    }
    builder = builder.condition(b.condition()?).priority(b.priority.unwrap_or(0));
    let acquire = builder.acquire_lease();
    // Dropping this future (client disconnected, shutdown) leaves the queue at once: see LockBuilder::acquire.
    let result = tokio::select! {
        r = acquire => r,
        _ = state.shutdown_token().cancelled() => Err(warden::Error::ShuttingDown(
            "this warden server is stopping; retry against another instance".into())),
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
            }
            // Watched for analytics (hold time at release, expiry when it ends unreleased) and the trail.
            state.expiry().watch(&lease);
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
              (status = 409, description = "lock_timeout / conflict", body = ErrorBody),
              (status = 412, description = "condition_failed", body = ErrorBody),
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
              (status = 412, description = "condition_failed", body = ErrorBody),
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
              (status = 412, description = "condition_failed", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn shared(State(state): State<AppState>, caller: Caller, body: Result<Bytes, BytesRejection>) -> ApiResult {
    acquire_impl(state, caller, body, Some("shared")).await
}

/// Acquire with `type` fixed to read-write; `mode` (read | write) is required.
#[utoipa::path(post, path = "/api/locks/read-write", tag = "locks", request_body = AcquireBody,
    responses((status = 201, description = "Granted", body = LockEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody),
              (status = 409, description = "lock_timeout", body = ErrorBody),
              (status = 412, description = "condition_failed", body = ErrorBody),
              (status = 503, description = "backend_unavailable", body = ErrorBody)))]
pub async fn read_write(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    acquire_impl(state, caller, body, Some("read-write")).await
}
