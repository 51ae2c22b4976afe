//! The analytics view: the hottest and most contended resources this instance served.

#[allow(unused_imports)]
use super::*;
use warden::analytics::AnalyticsOrder;
use warden::wire::AnalyticsDto;

/// Resources answered unless `top` says otherwise.
pub const DEFAULT_TOP: usize = 10;
/// The most resources one answer holds.
pub const MAX_TOP: usize = 1_000;

/// Query of `GET /api/locks/analytics`.
#[derive(Debug, Deserialize)]
pub struct AnalyticsQuery {
    top: Option<usize>,
    by: Option<String>,
}

/// Per-resource grants, contention, wait and hold percentiles, timeouts and expiries, as this instance served
/// them (counted in memory since it started; nothing is written to the backend).
#[utoipa::path(get, path = "/api/locks/analytics", tag = "monitoring",
    params(("top" = Option<usize>, Query, description = "How many resources, 1..=1000 (default 10)"),
           ("by" = Option<String>, Query,
            description = "Rank by grants (default: the hottest), contention (most acquires that waited), wait \
                           (longest p99 wait), hold (longest p99 hold) or expiries")),
    responses((status = 200, description = "The top resources", body = AnalyticsEnvelope),
              (status = 400, description = "Invalid request", body = ErrorBody)))]
pub async fn analytics(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<AnalyticsQuery>, QueryRejection>,
) -> ApiResult {
    let Query(q) = q.map_err(|r| ApiError::invalid(format!("invalid query string: {}", r.body_text())))?;
    caller.may_observe()?;
    let top = q.top.unwrap_or(DEFAULT_TOP);
    if !(1..=MAX_TOP).contains(&top) {
        return Err(ApiError::invalid_field(
            "top",
            format!("`top` must be 1..={MAX_TOP}, got {top}"),
        ));
    }
    let order = match q.by {
        Some(by) => by.parse()?,
        None => AnalyticsOrder::default(),
    };
    let report = state.warden().analytics().report(top, order);
    Ok(ok(StatusCode::OK, AnalyticsDto::new(&report)))
}
