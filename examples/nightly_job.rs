//! A nightly job scheduled on every node of a fleet that must run on one: each node's cron fires, one wins
//! the lock, the others skip. The job watches the lost signal and stops writing if its lease goes.
//!
//! The CLI does the same for any command:  `warden run --lock nightly --skip-if-held -- ./job.sh`
//!
//!     cargo run -p warden-examples --example nightly_job

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warden::Warden;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("WARDEN_BACKEND").unwrap_or_else(|_| "memory://".into());
    let warden = Warden::connect(&url).await?;
    let runs = Arc::new(AtomicU32::new(0));
    let mut nodes = Vec::new();
    for node in 0..5 {
        let (warden, runs) = (warden.clone(), runs.clone());
        nodes.push(tokio::spawn(async move {
            let guard = warden
                .lock("nightly-report")
                .ttl(Duration::from_secs(2))
                .client_id(format!("node-{node}"))
                .try_acquire()
                .await;
            let Ok(Some(mut guard)) = guard else {
                println!("node-{node}: another node runs tonight's job; skipping");
                return;
            };
            runs.fetch_add(1, Ordering::SeqCst);
            println!("node-{node}: running the job (fence {})", guard.fencing_token());
            // The job: a few steps, each checking that the lease still holds (it renews itself meanwhile).
            for step in 0..5 {
                tokio::select! {
                    _ = guard.lost() => { eprintln!("node-{node}: lease lost at step {step}; stopping"); return; }
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
            }
            if let Err(e) = guard.release().await {
                eprintln!("node-{node}: release failed: {e}");
            }
        }));
    }
    for n in nodes {
        n.await?;
    }
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the job ran on exactly one node");
    Ok(())
}
