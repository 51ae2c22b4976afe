//! `warden bench`: the bench driver as a command.

use crate::common::*;
use clap::Args;
use std::io::IsTerminal;
use std::time::Duration;

/// Arguments of `warden bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Backend URL.
    #[arg(long, env = "WARDEN_BACKEND", default_value = DEFAULT_BACKEND)]
    pub backend: String,
    /// uniform | hot | handoff
    #[arg(long, default_value = "uniform")]
    pub workload: warden_bench::Workload,
    /// Concurrent workers.
    #[arg(long, default_value_t = 50)]
    pub workers: usize,
    /// Distinct resources (uniform).
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// How long to run.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub duration: Duration,
    /// Lease TTL.
    #[arg(long, default_value = "10s", value_parser = duration)]
    pub ttl: Duration,
    /// Take one of N permits of a semaphore per resource instead of a lock (uniform and hot).
    #[arg(long, value_name = "N")]
    pub permits: Option<u32>,
    /// Take N resources per cycle as one lock group (uniform: spread over the keys; hot: the same N for all).
    #[arg(long, value_name = "N")]
    pub group: Option<usize>,
    /// Lock a path of N levels per cycle (`tree/…/{key}`; hot: one leaf for all).
    #[arg(long, value_name = "N")]
    pub path: Option<usize>,
    /// Print exactly one JSON line.
    #[arg(long)]
    pub json: bool,
}

pub async fn bench(a: BenchArgs) -> CliResult<u8> {
    if a.workers == 0 || a.keys == 0 {
        return Err(CliError::new(2, "--workers and --keys must be at least 1"));
    }
    // Fail fast, with the usual sentence, when the backend is not there.
    connect(&a.backend).await?;
    let cfg = warden_bench::Config {
        backend: crate::common::with_token(&a.backend),
        workload: a.workload,
        workers: a.workers,
        keys: a.keys,
        duration: a.duration,
        ttl: a.ttl,
        fifo_slack: std::time::Duration::from_millis(1),
        permits: a.permits,
        group: a.group,
        path: a.path,
    };
    let report = warden_bench::run_with_progress(&cfg, std::io::stderr().is_terminal() && !a.json)
        .await
        .map_err(|e| CliError::new(EXIT_FAILURE, format!("benchmark failed: {e:#}")))?;
    if a.json {
        let mut line = serde_json::json!({
            "peer": "warden", "workers": report.workers, "keys": report.keys,
            "cycles_per_s": report.cycles_per_s, "acq_p50_us": report.acq_p50_us,
            "acq_p99_us": report.acq_p99_us, "acq_max_us": report.acq_max_us, "failed": report.failed,
            "fifo_violations": report.fifo_violations,
        });
        // A semaphore's run says so; a lock's line keeps the shape the peer harness reads.
        if let Some(n) = report.permits {
            line["permits"] = n.into();
            if let Some(most) = report.max_holders {
                line["max_holders"] = most.into();
            }
        }
        if let Some(n) = report.path {
            line["path"] = n.into();
        }
        if let Some(n) = report.group {
            line["group"] = n.into();
            if let Some(most) = report.max_holders {
                line["max_holders"] = most.into();
            }
        }
        println!("{line}");
    } else {
        println!(
            "{:?} on {}: {} workers, {} keys: {:.0} cycles/s, acquire p50 {} µs, p99 {} µs, max {} µs, {} failed, {} FIFO violations",
            report.workload,
            crate::serve::redact(&a.backend),
            report.workers,
            report.keys,
            report.cycles_per_s,
            report.acq_p50_us,
            report.acq_p99_us,
            report.acq_max_us,
            report.failed,
            report.fifo_violations
        );
        if let (Some(n), Some(most)) = (report.permits, report.max_holders) {
            println!("a semaphore of {n} permits per resource: at most {most} holders seen at once");
        }
        if let Some(n) = report.group {
            println!("each cycle took {n} resources as one lock group");
        }
        if let Some(n) = report.path {
            println!("each cycle locked a path of {n} levels");
        }
    }
    Ok(0)
}
