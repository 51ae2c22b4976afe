//! `warden analytics`: the hottest and most contended resources a warden server has served.

use crate::common::{explain, with_token, CliError, CliResult, EXIT_USAGE};
use crate::oneshot::Conn;
use clap::Args;
use warden::analytics::AnalyticsOrder;
use warden::backend::http::HttpBackend;
use warden::wire::PercentilesDto;

/// Arguments of `warden analytics`.
#[derive(Args, Debug)]
pub struct AnalyticsArgs {
    #[command(flatten)]
    pub conn: Conn,
    /// How many resources, 1..=1000.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
    /// Rank by grants (the hottest), contention (most acquires that waited), wait (p99), hold (p99) or
    /// expiries.
    #[arg(long, default_value = "grants", value_parser = |s: &str| s.parse::<AnalyticsOrder>().map_err(|e| e.to_string()))]
    pub by: AnalyticsOrder,
}

fn pair(p: &Option<PercentilesDto>) -> String {
    p.as_ref().map_or("-".into(), |p| format!("{} / {} ms", p.p50, p.p99))
}

pub async fn analytics(a: AnalyticsArgs) -> CliResult<u8> {
    let backend = &a.conn.backend;
    if !backend.starts_with("http://") && !backend.starts_with("https://") {
        return Err(CliError::new(
            EXIT_USAGE,
            "analytics are counted by a warden server as it serves acquires: pass --backend http://HOST:PORT of one \
             (`warden serve`)",
        ));
    }
    let server = HttpBackend::connect(&with_token(backend))
        .await
        .map_err(|e| explain(backend, e))?;
    let report = server.analytics(a.top, a.by).await.map_err(|e| explain(backend, e))?;
    if a.conn.json {
        return crate::oneshot::print_json(&report);
    }
    let noun = if report.tracked == 1 { "resource" } else { "resources" };
    println!(
        "{} {noun} tracked since {} (this instance), ranked by {}",
        report.tracked, report.since, report.by
    );
    println!(
        "{:>9} {:>14} {:>24} {:>24} {:>8} {:>8}  resource",
        "grants", "waited", "wait p50 / p99", "hold p50 / p99", "timeouts", "expiries"
    );
    for r in &report.resources {
        let waited = format!("{} ({:.0}%)", r.waited, r.contention * 100.0);
        println!(
            "{:>9} {:>14} {:>24} {:>24} {:>8} {:>8}  {}",
            r.grants,
            waited,
            pair(&r.wait_ms),
            pair(&r.hold_ms),
            r.timeouts,
            r.expiries,
            r.resource
        );
    }
    Ok(0)
}
