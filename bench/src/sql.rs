//! The floor of a SQL database as a lock service: its own lock primitive on the `uniform` workload, from the
//! same client library and pool size warden uses (PostgreSQL: `pg_try_advisory_lock` then
//! `pg_advisory_unlock` on one pooled connection). It keeps no lease, no queue, no fence and nothing that
//! outlives the connection: what warden adds on top costs the difference.

use crate::{histogram, Report, Workload};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// warden's own query options, which the driver does not know.
const WARDEN_OPTIONS: &[&str] = &["prefix", "timeout_ms", "pool_size", "inflight", "sweep_ms", "retain_ms"];

/// The driver URL and pool size a warden `postgres://` URL describes (warden's default pool: 16).
fn driver_url(url: &str) -> (String, usize) {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut pool = 16;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "pool_size" {
            pool = v.parse().unwrap_or(pool);
        }
        if !WARDEN_OPTIONS.contains(&k) {
            kept.push(pair);
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (url, pool)
}

/// Runs `workers` tasks over `keys` advisory locks for `duration`: lock (non-blocking), unlock, repeat.
pub async fn postgres_floor(url: &str, workers: usize, keys: usize, duration: Duration) -> anyhow::Result<Report> {
    let (url, size) = driver_url(url);
    let config: tokio_postgres::Config = url.parse()?;
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    let pool = Pool::builder(manager).max_size(size).runtime(Runtime::Tokio1).build()?;
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (pool, stop, failed) = (pool.clone(), stop.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut cycles = 0u64;
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                let key = (i % keys) as i64;
                i = i.wrapping_add(7919);
                let t0 = Instant::now();
                let cycle = async {
                    let c = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
                    let lock = c.prepare_cached("SELECT pg_try_advisory_lock($1)").await?;
                    let unlock = c.prepare_cached("SELECT pg_advisory_unlock($1)").await?;
                    let got: bool = c.query_one(&lock, &[&key]).await?.get(0);
                    let _ = hist.record(t0.elapsed().as_micros().max(1) as u64);
                    if got {
                        c.query_one(&unlock, &[&key]).await?;
                    }
                    anyhow::Ok(got)
                };
                match cycle.await {
                    Ok(true) => cycles += 1,
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (hist, cycles)
        }));
    }
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut hist = histogram();
    let mut cycles = 0;
    for t in tasks {
        let (h, c) = t.await?;
        hist.add(h)?;
        cycles += c;
    }
    Ok(Report {
        peer: "pg_advisory_lock",
        workload: Workload::Uniform,
        workers,
        keys,
        cycles_per_s: cycles as f64 / start.elapsed().as_secs_f64(),
        acq_p50_us: hist.value_at_quantile(0.5),
        acq_p99_us: hist.value_at_quantile(0.99),
        acq_max_us: hist.max(),
        failed: failed.load(Ordering::Relaxed),
        fifo_violations: 0,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn warden_options_are_not_passed_to_the_driver() {
        let (url, pool) = super::driver_url("postgres://u@h:1/db?prefix=x_&pool_size=4&application_name=b");
        assert_eq!(url, "postgres://u@h:1/db?application_name=b");
        assert_eq!(pool, 4);
    }
}
