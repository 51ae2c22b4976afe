use std::time::Duration;

#[tokio::main]
async fn main() -> Result<(), warden::Error> {
    // memory:// is in-process; use redis://127.0.0.1:6379 (or http://127.0.0.1:7070) to share locks.
    let warden = warden::Warden::connect("memory://").await?;
    let mut guard = warden
        .lock("inventory:sku-1")
        .ttl(Duration::from_secs(10))
        .wait(Duration::from_secs(2))
        .acquire()
        .await?;
    // Hand the fencing token to the protected resource with every write: it rejects tokens lower than the
    // highest it has seen, so a holder whose lease ran out cannot overwrite a newer holder's work.
    println!(
        "holding {} with fencing token {}",
        guard.resource(),
        guard.fencing_token()
    );
    guard.release().await?;
    Ok(())
}
