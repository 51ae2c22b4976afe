//! A serial job queue consumed by one elected worker. When the leader is redeployed it resigns and the next
//! candidate takes over at once; every job is handled by exactly one leader, in order, and each write
//! carries the leadership's fencing token.
//!
//! The CLI does the same for any command:  `warden elect queue-consumer -- ./worker`
//!
//!     cargo run -p warden-examples --example leader_queue_consumer

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::Warden;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("WARDEN_BACKEND").unwrap_or_else(|_| "memory://".into());
    let warden = Warden::connect(&url).await?;
    let queue: Arc<Mutex<VecDeque<u32>>> = Arc::new(Mutex::new((1..=30).collect()));
    let done: Arc<Mutex<Vec<(u32, String, u64)>>> = Arc::new(Mutex::new(Vec::new()));

    let mut workers = Vec::new();
    for w in 0..3 {
        let (warden, queue, done) = (warden.clone(), queue.clone(), done.clone());
        workers.push(tokio::spawn(async move {
            let me = format!("worker-{w}");
            let election = warden.election("queue-consumer").ttl(Duration::from_secs(3));
            let leadership = match election.campaign(&me).await {
                Ok(l) => l,
                Err(e) => return eprintln!("{me}: {e}"),
            };
            println!("{me} leads (fence {})", leadership.fencing_token());
            // Consume ten jobs, then "redeploy": resign so the next candidate takes over at once.
            for _ in 0..10 {
                if leadership.is_lost() {
                    return eprintln!("{me}: leadership lost; stopping");
                }
                let Some(job) = queue.lock().ok().and_then(|mut q| q.pop_front()) else {
                    break;
                };
                if let Ok(mut d) = done.lock() {
                    d.push((job, me.clone(), leadership.fencing_token()));
                }
            }
            println!("{me} resigns");
            if let Err(e) = leadership.resign().await {
                eprintln!("{me}: resign failed: {e}");
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let done = done.lock().map_err(|_| "poisoned")?;
    let jobs: Vec<u32> = done.iter().map(|d| d.0).collect();
    assert_eq!(jobs, (1..=30).collect::<Vec<_>>(), "every job once, in order");
    let fences: Vec<u64> = done.iter().map(|d| d.2).collect();
    assert!(fences.windows(2).all(|w| w[0] <= w[1]), "fencing tokens never go back");
    println!("30 jobs consumed by {} successive leaders", {
        let mut l: Vec<&String> = done.iter().map(|d| &d.1).collect();
        l.dedup();
        l.len()
    });
    Ok(())
}
