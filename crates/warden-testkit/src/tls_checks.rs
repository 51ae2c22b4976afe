//! Checks every TLS form of a backend shares: a lock handed over between two clients connected over TLS, and a
//! connection that cannot check the server refused with a sentence.

use std::time::{Duration, Instant};
use warden::Warden;

/// `a` holds `resource`, a waiter from `b` queues behind it, and `a`'s release hands `b` the lock within 250 ms
/// (the wake-up travels over TLS too) with a higher fencing token.
pub async fn handoff_over_tls(a: &Warden, b: &Warden, resource: &str) {
    let sec = Duration::from_secs(1);
    let mut held = a
        .lock(resource)
        .ttl(10 * sec)
        .acquire()
        .await
        .expect("acquire over TLS");
    let waiter = {
        let (b, resource) = (b.clone(), resource.to_string());
        tokio::spawn(async move { b.lock(&resource).wait(5 * sec).acquire().await })
    };
    let queued = crate::eventually(5 * sec, || async {
        a.inspect(resource).await.map(|i| i.queue.len()) == Ok(1)
    })
    .await;
    assert!(queued, "the waiter never queued");
    let released = Instant::now();
    held.release().await.expect("release");
    let mut g = tokio::time::timeout(2 * sec, waiter)
        .await
        .expect("the waiter was never granted")
        .expect("task")
        .expect("granted");
    assert!(
        released.elapsed() < Duration::from_millis(250),
        "took {:?}",
        released.elapsed()
    );
    assert!(g.fencing_token() > held.fencing_token());
    g.release().await.expect("release the handed lock");
}

/// Connecting to `url` (a CA that did not sign the servers, or none) fails with a sentence that names the
/// certificate and the host.
pub async fn refused_for_its_certificate(url: &str) {
    let msg = Warden::connect(url)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(msg.contains("127.0.0.1") && msg.contains("certificate"), "{msg}");
}
