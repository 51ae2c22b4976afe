//! Exactly-once order processing: three consumers receive the same order; each tries the order's lock once
//! and skips if another consumer holds it. The lease is kept after processing (until its TTL) so a late
//! duplicate delivery is skipped too.
//!
//!     cargo run -p warden-examples --example order_once

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use warden::Warden;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("WARDEN_BACKEND").unwrap_or_else(|_| "memory://".into());
    let warden = Warden::connect(&url).await?;
    let processed = Arc::new(AtomicU32::new(0));
    for order in ["A-1001", "A-1002", "A-1003"] {
        let mut consumers = Vec::new();
        for consumer in 0..3 {
            let (warden, processed) = (warden.clone(), processed.clone());
            consumers.push(tokio::spawn(async move {
                let lease = warden
                    .lock(format!("order-processing:{order}"))
                    .ttl(Duration::from_secs(60))
                    .client_id(format!("consumer-{consumer}"))
                    .acquire_lease_once()
                    .await;
                match lease {
                    Ok(Some(l)) => {
                        processed.fetch_add(1, Ordering::SeqCst);
                        println!("consumer-{consumer} processed {order} (fence {})", l.fencing_token);
                    }
                    Ok(None) => println!("consumer-{consumer} skipped {order}: another consumer has it"),
                    Err(e) => eprintln!("consumer-{consumer}: {e}"),
                }
            }));
        }
        for c in consumers {
            c.await?;
        }
    }
    assert_eq!(processed.load(Ordering::SeqCst), 3, "each order processed exactly once");
    Ok(())
}

/// `try once, keep the lease`: a bare lease (no guard) that simply expires after its TTL.
trait TryLease {
    async fn acquire_lease_once(self) -> warden::Result<Option<warden::LeaseInfo>>;
}

impl TryLease for warden::LockBuilder<'_> {
    async fn acquire_lease_once(self) -> warden::Result<Option<warden::LeaseInfo>> {
        match self.wait(Duration::ZERO).acquire_lease().await {
            Ok(l) => Ok(Some(l)),
            Err(warden::Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}
