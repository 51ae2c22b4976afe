//! The Prometheus recorder. One per process (the `metrics` facade has one global recorder); every server
//! instance in the process renders from the same handle.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    300.0,
];

/// The process's Prometheus handle, installing the recorder on first use. If the embedding application
/// installed its own recorder first, `/metrics` renders an empty registry instead of failing.
pub fn handle() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let builder = || {
                PrometheusBuilder::new()
                    .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
                    .unwrap_or_else(|_| PrometheusBuilder::new())
            };
            match builder().install_recorder() {
                Ok(h) => {
                    describe();
                    h
                }
                Err(e) => {
                    tracing::warn!(error = %e, "another metrics recorder is installed; /metrics will be empty");
                    builder().build_recorder().handle()
                }
            }
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!("warden_grants_total", "Leases granted by this instance, by type");
    metrics::describe_counter!("warden_releases_total", "Releases served by this instance");
    metrics::describe_counter!("warden_renewals_total", "Renewals served by this instance");
    metrics::describe_counter!(
        "warden_acquire_timeouts_total",
        "Acquires that ran out of waitTimeout, by type"
    );
    metrics::describe_histogram!(
        "warden_acquire_wait_seconds",
        "Time from acquire request to grant, by type"
    );
    metrics::describe_histogram!(
        "warden_hold_seconds",
        "Hold time of leases released through this instance (grant to release, from the backend)"
    );
    metrics::describe_gauge!("warden_waiters", "Waiters parked on this instance");
    metrics::describe_gauge!("warden_active_locks", "Leases held now (cluster-wide, read at scrape)");
    metrics::describe_counter!(
        "warden_cluster_grants_total",
        "Grants ever made by every instance of the backend (read at scrape)"
    );
    metrics::describe_counter!(
        "warden_cluster_expiries_total",
        "Leases of every instance that ended by expiry (read at scrape)"
    );
    metrics::describe_counter!(
        "warden_backend_errors_total",
        "Requests answered with a 5xx, by code and node"
    );
    metrics::describe_counter!(
        "warden_redlock_release_failures_total",
        "Redlock releases that could not reach a node before the lease ended (the node frees it by expiry), by node"
    );
    metrics::describe_counter!(
        "warden_slow_bodies_total",
        "Requests whose body did not arrive within the body deadline (answered 408, connection closed)"
    );
}
