//! `warden-bench`: runs one workload against a backend and prints its figures (see bench/README.md).

use clap::Parser;
use std::io::{IsTerminal, Write};

/// `println!` that ends the process quietly when stdout is gone (`warden-bench … | head -1`) instead of
/// panicking on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {
        if writeln!(std::io::stdout(), $($arg)*).is_err() {
            std::process::exit(0);
        }
    };
}

#[derive(Parser, Debug)]
#[command(about = "Benchmark warden: uniform, hot and handoff workloads")]
struct Args {
    /// Backend URL (memory://, redis://host:port, ...).
    #[arg(long, default_value = "memory://")]
    backend: String,
    /// uniform | hot | handoff
    #[arg(long, default_value = "uniform")]
    workload: warden_bench::Workload,
    /// Concurrent workers.
    #[arg(long, default_value_t = 50)]
    workers: usize,
    /// Distinct resources (uniform).
    #[arg(long, default_value_t = 1000)]
    keys: usize,
    /// How long to run (10s, 500ms, 2m).
    #[arg(long, default_value = "10s", value_parser = warden_bench::parse_duration)]
    duration: std::time::Duration,
    /// Lease TTL.
    #[arg(long, default_value = "10s", value_parser = warden_bench::parse_duration)]
    ttl: std::time::Duration,
    /// Hot workload: how much later a call must start than another to count as a FIFO violation when granted
    /// first (the in-flight time of a first attempt).
    #[arg(long, default_value = "1ms", value_parser = warden_bench::parse_duration)]
    fifo_slack: std::time::Duration,
    /// Take one of N permits of a semaphore per resource instead of a lock (uniform and hot).
    #[arg(long)]
    permits: Option<u32>,
    /// Take N resources per cycle as one lock group (uniform: spread over the keys; hot: the same N for all).
    #[arg(long, value_name = "N")]
    group: Option<usize>,
    /// Lock a path of N levels per cycle (`tree/…/{key}`; hot: one leaf for all).
    #[arg(long, value_name = "N")]
    path: Option<usize>,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Also measure the redis-benchmark ceiling against host:port.
    #[arg(long)]
    ceiling: Option<String>,
    /// Also run the database's own lock primitive on the same workload, as the floor (etcd://: a put-if-absent
    /// then delete cycle; zk://: create an ephemeral node, then delete it; postgres://:
    /// pg_try_advisory_lock + pg_advisory_unlock; mysql://: GET_LOCK + RELEASE_LOCK; same client library and
    /// pool size).
    #[arg(long)]
    floor: bool,
    /// Drive the REST API instead: an in-process server over --backend, and a trivial handler as ceiling.
    #[arg(long)]
    http: bool,
    /// Hold this many leases at once in the memory backend and report the memory per lease.
    #[arg(long)]
    memory_per_lock: Option<usize>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    if let Some(n) = a.memory_per_lock {
        let per = warden_bench::http::memory_per_lock(n).await?;
        out!("memory   {n} leases held at once in memory://: {per:.0} bytes per lease (resident set growth)");
        return Ok(());
    }
    if a.http {
        let (real, trivial) = warden_bench::http::run_http(&a.backend, a.workers, a.keys, a.duration).await?;
        for r in [&real, &trivial] {
            if a.json {
                out!("{}", serde_json::to_string(r)?);
            } else {
                out!(
                    "http     {:<8} {:<24} workers={:<3} {:>9.0} cycles/s  acquire p50={}us p99={}us max={}us  failed={}",
                    r.target, r.backend, r.workers, r.cycles_per_s, r.acq_p50_us, r.acq_p99_us, r.acq_max_us, r.failed
                );
            }
        }
        if !a.json {
            out!(
                "http     warden reached {:.0}% of the trivial-handler ceiling",
                100.0 * real.cycles_per_s / trivial.cycles_per_s.max(1.0)
            );
        }
        return Ok(());
    }
    let cfg = warden_bench::Config {
        backend: a.backend.clone(),
        workload: a.workload,
        workers: a.workers,
        keys: a.keys,
        duration: a.duration,
        ttl: a.ttl,
        fifo_slack: a.fifo_slack,
        permits: a.permits,
        group: a.group,
        path: a.path,
    };
    let ceiling = match &a.ceiling {
        Some(hp) => {
            let (host, port) = hp
                .rsplit_once(':')
                .ok_or_else(|| anyhow::anyhow!("--ceiling takes host:port"))?;
            let port: u16 = port.parse()?;
            warden_bench::redis_reset_stats(host, port)?;
            Some((host.to_string(), port))
        }
        None => None,
    };
    let report = warden_bench::run_with_progress(&cfg, std::io::stderr().is_terminal() && !a.json).await?;
    if a.json {
        out!("{}", serde_json::to_string(&report)?);
    } else {
        out!(
            "{:<8} {:<28} workers={:<3} keys={:<5} {:>10.0} cycles/s  acquire p50={}us p99={}us max={}us  failed={} fifo_violations={}",
            format!("{:?}", report.workload).to_lowercase(),
            a.backend,
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
            out!("         semaphore of {n} permits per resource: at most {most} holders seen at once");
        }
        if let Some(n) = report.group {
            out!("         each cycle took {n} resources as one lock group");
        }
        if let Some(n) = report.path {
            out!("         each cycle locked a path of {n} levels");
        }
    }
    if a.floor {
        let floor = if a.backend.starts_with("postgres") {
            warden_bench::sql::postgres_floor(&a.backend, a.workers, a.keys, a.duration).await?
        } else if a.backend.starts_with("mysql") || a.backend.starts_with("mariadb") {
            let url = a.backend.replacen("mariadb://", "mysql://", 1);
            warden_bench::sql::mysql_floor(&url, a.workers, a.keys, a.duration).await?
        } else if a.backend.starts_with("etcd://") {
            etcd_floor(&a.backend, a.workers, a.keys, a.duration).await?
        } else if a.backend.starts_with("zk://") || a.backend.starts_with("zookeeper://") {
            warden_bench::zookeeper::zookeeper_floor(&a.backend, a.workers, a.keys, a.duration).await?
        } else {
            anyhow::bail!("--floor needs a postgres://, mysql://, etcd:// or zk:// backend");
        };
        out!(
            "floor    {:<28} workers={:<3} keys={:<5} {:>10.0} cycles/s  acquire p50={}us p99={}us max={}us  failed={}",
            floor.peer,
            floor.workers,
            floor.keys,
            floor.cycles_per_s,
            floor.acq_p50_us,
            floor.acq_p99_us,
            floor.acq_max_us,
            floor.failed
        );
        out!(
            "floor    warden reached {:.0}% of the database's own lock cycle",
            100.0 * report.cycles_per_s / floor.cycles_per_s.max(1.0)
        );
    }
    if let Some((host, port)) = ceiling {
        let cycles = report.cycles_per_s * a.duration.as_secs_f64();
        let usec = warden_bench::redis_evalsha_usec(&host, port)? / cycles.max(1.0);
        out!(
            "server   Redis time per lock cycle {usec:.1} us -> same-commands ceiling {:.0} cycles/s; warden reached {:.0}%",
            1e6 / usec,
            100.0 * report.cycles_per_s * usec / 1e6
        );
        let c = warden_bench::redis_ceiling(&host, port, 500_000)?;
        for x in &c {
            out!(
                "ceiling  redis-benchmark -c 1 -P 50  {:<28} {:>10.0} req/s",
                x.command,
                x.rps
            );
        }
        if let (Some(set), Some(del)) = (c.first(), c.get(1)) {
            let cycle = 1.0 / (1.0 / set.rps + 1.0 / del.rps);
            out!(
                "ceiling  plain SET NX PX + DEL lock cycle {cycle:.0} cycles/s; warden reached {:.0}%",
                100.0 * report.cycles_per_s / cycle
            );
        }
    }
    Ok(())
}

#[cfg(feature = "etcd")]
use warden_bench::etcd::etcd_floor;

#[cfg(not(feature = "etcd"))]
async fn etcd_floor(_: &str, _: usize, _: usize, _: std::time::Duration) -> anyhow::Result<warden_bench::Report> {
    anyhow::bail!("this build has no etcd support: build with --features etcd")
}
