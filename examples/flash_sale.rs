//! A flash sale: 50 instances decrement the stock of one SKU. The lock keeps them from selling the same item
//! twice, and the fencing token, checked by the store's write, rejects a holder whose lease ran out while it
//! was paused.
//!
//!     cargo run -p warden-examples --example flash_sale                  # embedded store
//!     WARDEN_BACKEND=redis://127.0.0.1:6379 cargo run -p warden-examples --example flash_sale

use std::sync::{Arc, Mutex};
use std::time::Duration;
use warden::Warden;

/// The protected resource: a stock counter that remembers the highest fencing token it has seen.
#[derive(Default)]
struct Store {
    stock: i64,
    last_fence: u64,
}

impl Store {
    /// A fenced write: refused if a newer holder already wrote.
    fn write_stock(&mut self, value: i64, fence: u64) -> Result<(), String> {
        if fence < self.last_fence {
            return Err(format!("stale fencing token {fence} < {}", self.last_fence));
        }
        self.last_fence = fence;
        self.stock = value;
        Ok(())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("WARDEN_BACKEND").unwrap_or_else(|_| "memory://".into());
    let warden = Warden::connect(&url).await?;
    let store = Arc::new(Mutex::new(Store {
        stock: 100,
        last_fence: 0,
    }));
    let sold = Arc::new(Mutex::new(0u32));

    let mut buyers = Vec::new();
    for buyer in 0..50 {
        let (warden, store, sold) = (warden.clone(), store.clone(), sold.clone());
        buyers.push(tokio::spawn(async move {
            for _ in 0..3 {
                let (store, sold) = (store.clone(), sold.clone());
                let r = warden
                    .lock("inventory:sku-1")
                    .ttl(Duration::from_secs(5))
                    .wait(Duration::from_secs(30))
                    .client_id(format!("checkout-{buyer}"))
                    .run(|lease| async move {
                        let current = store.lock().map(|s| s.stock).unwrap_or(0);
                        tokio::task::yield_now().await; // the read-modify-write gap a lock must protect
                        if current > 0 {
                            let wrote = store
                                .lock()
                                .map(|mut s| s.write_stock(current - 1, lease.fencing_token()));
                            if matches!(wrote, Ok(Ok(()))) {
                                if let Ok(mut n) = sold.lock() {
                                    *n += 1;
                                }
                            }
                        }
                    })
                    .await;
                if let Err(e) = r {
                    eprintln!("buyer {buyer}: {e}");
                }
            }
        }));
    }
    for b in buyers {
        b.await?;
    }
    let (stock, sold) = (
        store.lock().map(|s| s.stock).unwrap_or(-1),
        *sold.lock().map_err(|_| "poisoned")?,
    );
    println!("sold {sold} items, {stock} left (started with 100, 150 attempts)");
    assert_eq!(sold, 100);
    assert_eq!(stock, 0);

    // A stale holder: its lease expired while it was paused, someone else got the lock and wrote.
    let stale = warden
        .lock("inventory:sku-1")
        .ttl(Duration::from_millis(50))
        .auto_renew(false)
        .acquire()
        .await?;
    tokio::time::sleep(Duration::from_millis(80)).await; // "GC pause" longer than the lease
    let fresh = warden.lock("inventory:sku-1").acquire().await?;
    store
        .lock()
        .map_err(|_| "poisoned")?
        .write_stock(0, fresh.fencing_token())?;
    let refused = store
        .lock()
        .map_err(|_| "poisoned")?
        .write_stock(99, stale.fencing_token());
    println!("stale holder's write: {refused:?}");
    assert!(refused.is_err());
    Ok(())
}
