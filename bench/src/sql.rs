//! The floor of a SQL database as a lock service: its own lock primitive on the `uniform` workload, from the
//! same client library and pool size warden uses (PostgreSQL: `pg_try_advisory_lock` then
//! `pg_advisory_unlock` on one pooled connection; MySQL/MariaDB: `GET_LOCK` then `RELEASE_LOCK`). It keeps no
//! lease, no queue, no fence and nothing that outlives the connection: what warden adds on top costs the
//! difference.

use crate::{histogram, Report, Workload};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// warden's own query options, which the driver does not know.
const WARDEN_OPTIONS: &[&str] = &["prefix", "timeout_ms", "pool_size", "inflight", "sweep_ms", "retain_ms"];

/// The driver URL and pool size a warden `postgres://` or `mysql://` URL describes (warden's default pool: 16).
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
    let cycle = move |key: i64| {
        let pool = pool.clone();
        async move {
            let c = pool.get().await.map_err(|e| anyhow::anyhow!("{e}"))?;
            let lock = c.prepare_cached("SELECT pg_try_advisory_lock($1)").await?;
            let unlock = c.prepare_cached("SELECT pg_advisory_unlock($1)").await?;
            let got: bool = c.query_one(&lock, &[&key]).await?.get(0);
            let acquired = Instant::now();
            if got {
                c.query_one(&unlock, &[&key]).await?;
            }
            anyhow::Ok(got.then_some(acquired))
        }
    };
    floor("pg_advisory_lock", workers, keys, duration, cycle).await
}

/// Runs `workers` tasks over `keys` named locks for `duration`: `GET_LOCK(name, 0)`, `RELEASE_LOCK(name)`,
/// repeat, on one pooled connection (mysql_async, the driver warden uses, with warden's pool size).
pub async fn mysql_floor(url: &str, workers: usize, keys: usize, duration: Duration) -> anyhow::Result<Report> {
    use mysql_async::prelude::Queryable;
    let (url, size) = driver_url(url);
    let constraints = mysql_async::PoolConstraints::new(0, size).ok_or_else(|| anyhow::anyhow!("pool size"))?;
    let opts = mysql_async::OptsBuilder::from_opts(mysql_async::Opts::from_url(&url)?)
        .prefer_socket(false)
        .pool_opts(
            mysql_async::PoolOpts::default()
                .with_constraints(constraints)
                .with_inactive_connection_ttl(Duration::from_secs(60))
                .with_reset_connection(false),
        );
    let pool = mysql_async::Pool::new(opts);
    let cycle = move |key: i64| {
        let pool = pool.clone();
        async move {
            let mut c = pool.get_conn().await?;
            let name = format!("bench.{key}");
            let got: Option<i64> = c.exec_first("SELECT GET_LOCK(?, 0)", (name.as_str(),)).await?;
            let acquired = Instant::now();
            if got == Some(1) {
                c.exec_drop("DO RELEASE_LOCK(?)", (name.as_str(),)).await?;
            }
            anyhow::Ok((got == Some(1)).then_some(acquired))
        }
    };
    floor("mysql GET_LOCK", workers, keys, duration, cycle).await
}

/// The uniform workload over a database's own lock: `cycle(key)` tries the lock and, if it got it, releases it,
/// answering when it was acquired (None: not acquired, counted as failed).
pub(crate) async fn floor<F, Fut>(
    peer: &'static str,
    workers: usize,
    keys: usize,
    duration: Duration,
    cycle: F,
) -> anyhow::Result<Report>
where
    F: Fn(i64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<Option<Instant>>> + Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let (cycle, stop, failed) = (cycle.clone(), stop.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = histogram();
            let mut cycles = 0u64;
            // Each cycle's key is drawn uniformly at random (a fixed seed per worker: the same sequence on every
            // run). A shared stride instead would make a worker that once waited for another follow it to every
            // later key, for good.
            let mut keys_rng = StdRng::seed_from_u64(w as u64);
            while !stop.load(Ordering::Relaxed) {
                let key = keys_rng.random_range(0..keys) as i64;
                let t0 = Instant::now();
                match cycle(key).await {
                    Ok(Some(acquired)) => {
                        let _ = hist.record(acquired.duration_since(t0).as_micros().max(1) as u64);
                        cycles += 1;
                    }
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
        peer,
        workload: Workload::Uniform,
        workers,
        keys,
        cycles_per_s: cycles as f64 / start.elapsed().as_secs_f64(),
        acq_p50_us: hist.value_at_quantile(0.5),
        acq_p99_us: hist.value_at_quantile(0.99),
        acq_max_us: hist.max(),
        failed: failed.load(Ordering::Relaxed),
        fifo_violations: 0,
        permits: None,
        max_holders: None,
        group: None,
        path: None,
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
