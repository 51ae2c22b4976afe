//! The `handoff` workload: one holder, one waiter, the time from a release to the waiter's grant.

use crate::{histogram, Config, Report, Workload};
use std::time::{Duration, Instant};
use warden::Warden;

pub(crate) async fn handoff(cfg: &Config, warden: Warden) -> anyhow::Result<Report> {
    let mut hist = histogram();
    let start = Instant::now();
    let mut cycles = 0u64;
    let mut failed = 0u64;
    // A second client of the same store: `memory://` stores are per connect, so share this one there.
    let waiter_client = if cfg.backend.starts_with("memory:") {
        warden.clone()
    } else {
        Warden::connect(&cfg.backend).await?
    };
    while start.elapsed() < cfg.duration {
        let mut g = warden
            .lock("bench:handoff")
            .ttl(cfg.ttl)
            .auto_renew(false)
            .acquire()
            .await?;
        let wc = waiter_client.clone();
        let ttl = cfg.ttl;
        let (queued_tx, queued_rx) = tokio::sync::oneshot::channel::<()>();
        let waiter = tokio::spawn(async move {
            let _ = queued_tx.send(());
            let r = wc
                .lock("bench:handoff")
                .ttl(ttl)
                .wait(Duration::from_secs(10))
                .auto_renew(false)
                .acquire()
                .await;
            (Instant::now(), r)
        });
        let _ = queued_rx.await;
        // Let the waiter's first attempt reach the queue.
        let queued_by = Instant::now() + Duration::from_secs(10);
        while warden
            .inspect("bench:handoff")
            .await
            .map(|i| i.queue.is_empty())
            .unwrap_or(false)
        {
            anyhow::ensure!(Instant::now() < queued_by, "the waiter never appeared in the queue");
            tokio::task::yield_now().await;
        }
        let released = Instant::now();
        g.release().await?;
        let (granted, r) = waiter.await?;
        match r {
            Ok(mut g2) => {
                let _ = hist.record((granted - released).as_micros().max(1) as u64);
                g2.release().await?;
                cycles += 1;
            }
            Err(_) => failed += 1,
        }
    }
    Ok(Report {
        peer: "warden",
        workload: Workload::Handoff,
        workers: 2,
        keys: 1,
        cycles_per_s: cycles as f64 / start.elapsed().as_secs_f64(),
        acq_p50_us: hist.value_at_quantile(0.5),
        acq_p99_us: hist.value_at_quantile(0.99),
        acq_max_us: hist.max(),
        failed,
        fifo_violations: 0,
        permits: None,
        max_holders: None,
        group: None,
        path: None,
    })
}
