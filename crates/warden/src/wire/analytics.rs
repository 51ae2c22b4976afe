//! The analytics view on the wire (`GET /api/locks/analytics`), converted from [`crate::analytics`].

use crate::analytics::{AnalyticsReport, Percentiles, ResourceAnalytics};
use serde::{Deserialize, Serialize};

/// Duration percentiles in milliseconds (fractions for sub-millisecond figures).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PercentilesDto {
    /// How many durations were measured.
    pub count: u64,
    /// Median, ms (bucketed: within a quarter of the true value).
    pub p50: f64,
    /// 90th percentile, ms.
    pub p90: f64,
    /// 99th percentile, ms.
    pub p99: f64,
    /// The longest, ms (exact).
    pub max: f64,
}

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

impl From<&Percentiles> for PercentilesDto {
    fn from(p: &Percentiles) -> Self {
        PercentilesDto {
            count: p.count,
            p50: ms(p.p50),
            p90: ms(p.p90),
            p99: ms(p.p99),
            max: ms(p.max),
        }
    }
}

/// What one instance saw of one resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ResourceAnalyticsDto {
    /// The resource.
    pub resource: String,
    /// Acquires that ended: granted, timed out or refused.
    pub acquires: u64,
    /// Acquires granted.
    pub grants: u64,
    /// Acquires not granted at their first attempt (granted after a wait, or timed out).
    pub waited: u64,
    /// `waited / acquires`, 0..=1.
    pub contention: f64,
    /// Acquires whose wait ran out.
    pub timeouts: u64,
    /// Conditional acquires refused.
    pub refused: u64,
    /// Leases granted here that ended without a release (their holder died, stalled or stopped renewing).
    pub expiries: u64,
    /// Waits of the granted acquires that waited; absent when none did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<PercentilesDto>,
    /// Hold times, grant to release or expiry; absent when none ended here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_ms: Option<PercentilesDto>,
}

impl From<&ResourceAnalytics> for ResourceAnalyticsDto {
    fn from(r: &ResourceAnalytics) -> Self {
        ResourceAnalyticsDto {
            resource: r.resource.clone(),
            acquires: r.acquires,
            grants: r.grants,
            waited: r.waited,
            contention: (r.contention() * 1e4).round() / 1e4,
            timeouts: r.timeouts,
            refused: r.refused,
            expiries: r.expiries,
            wait_ms: r.wait.as_ref().map(Into::into),
            hold_ms: r.hold.as_ref().map(Into::into),
        }
    }
}

/// The hottest or most contended resources, as one instance saw them.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AnalyticsDto {
    /// What the figures cover: `instance` (the acquires and releases served by the answering instance).
    pub scope: String,
    /// When this instance began counting (RFC 3339).
    pub since: String,
    /// The order asked for: grants, contention, wait, hold or expiries.
    pub by: String,
    /// Resources tracked now.
    pub tracked: u64,
    /// Quiet resources forgotten to bound memory.
    pub forgotten: u64,
    /// The top resources, most first.
    pub resources: Vec<ResourceAnalyticsDto>,
}

impl AnalyticsDto {
    /// The wire form of `report`.
    pub fn new(report: &AnalyticsReport) -> Self {
        AnalyticsDto {
            scope: "instance".into(),
            since: super::rfc3339(report.since),
            by: report.order.as_str().into(),
            tracked: report.tracked as u64,
            forgotten: report.forgotten,
            resources: report.resources.iter().map(Into::into).collect(),
        }
    }
}
