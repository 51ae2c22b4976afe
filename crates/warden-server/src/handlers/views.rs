//! Monitoring: stats, health, queues, liveness, metrics and the OpenAPI document.

#[allow(unused_imports)]
use super::*;

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
    limit: Option<usize>,
    offset: Option<usize>,
}

/// The waiters of a resource, in grant order.
#[utoipa::path(get, path = "/api/locks/queue", tag = "monitoring",
    params(("resource" = String, Query, description = "The resource"),
           ("limit" = Option<usize>, Query, description = "Waiters per page, 1..=10000 (default 1000)"),
           ("offset" = Option<usize>, Query, description = "Where the page starts (the last page's nextOffset)")),
    responses((status = 200, description = "Holders and one page of the queue; `nextOffset` when more wait",
               body = QueueEnvelope),
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
    let (offset, limit) = page_params(q.limit, q.offset)?;
    let info = state.warden().inspect(&resource).await?;
    Ok(ok(StatusCode::OK, QueueDto::from(&info).page(offset, limit)))
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

/// The process is up (for a load balancer's liveness probe): 200 always, without asking the backend.
#[utoipa::path(get, path = "/livez", tag = "monitoring",
    responses((status = 200, description = "The process serves requests", body = Probe)))]
pub async fn livez() -> Response {
    Json(Probe {
        status: "alive".into(),
        backend: None,
    })
    .into_response()
}

/// The backend is reachable (for a readiness probe): 200 when it serves locks (healthy or degraded), 503 when
/// it does not.
#[utoipa::path(get, path = "/readyz", tag = "monitoring",
    responses((status = 200, description = "Ready: the backend serves locks", body = Probe),
              (status = 503, description = "Not ready: the backend cannot serve locks", body = Probe)))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let h = state.warden().health().await;
    let (code, status) = match h.status {
        warden::HealthStatus::Healthy => (StatusCode::OK, "ready"),
        warden::HealthStatus::Degraded => (StatusCode::OK, "ready (degraded)"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    };
    (
        code,
        Json(Probe {
            status: status.into(),
            backend: Some(h.kind.into()),
        }),
    )
        .into_response()
}

/// The answer of `/livez` and `/readyz`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Probe {
    /// `alive`; `ready`, `ready (degraded)` or `not ready`.
    pub status: String,
    /// The backend's kind (readiness only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
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
        // Counters that only grow, read from the backend at scrape (every instance reports the same totals).
        metrics::counter!("warden_cluster_grants_total").absolute(s.total_locks);
        metrics::counter!("warden_cluster_expiries_total").absolute(s.expired_locks);
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
