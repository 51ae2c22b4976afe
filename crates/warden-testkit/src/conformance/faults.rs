//! The backend down: errors within the timeout, and the lost signal.

#[allow(unused_imports)]
use super::*;

/// With the backend down, operations fail with BackendUnavailable within the configured timeout.
pub async fn backend_down(h: &dyn Harness) {
    if let Some(url) = h.unreachable_url() {
        let start = Instant::now();
        let r = warden::Warden::connect(&url).await;
        assert!(
            matches!(
                r,
                Err(Error::BackendUnavailable { .. }
                    | Error::ServerBackendUnavailable { .. }
                    | Error::QuorumUnavailable { .. })
            ),
            "{r:?}"
        );
        assert!(start.elapsed() < 2 * SEC);
        let msg = r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("127.0.0.1"), "error does not name the address: {msg}");
    }
    let a = h.client().await;
    let g = a
        .lock("down")
        .ttl(ms(900))
        .acquire()
        .await
        .expect("acquire before kill");
    if !h.kill().await {
        return;
    }
    let start = Instant::now();
    let r = a.lock("down2").wait(5 * SEC).acquire().await;
    assert!(
        matches!(
            r,
            Err(Error::BackendUnavailable { .. }
                | Error::ServerBackendUnavailable { .. }
                | Error::QuorumUnavailable { .. })
        ),
        "{r:?}"
    );
    assert!(r.as_ref().err().is_some_and(|e| e.is_retryable()));
    assert!(start.elapsed() < 2 * SEC, "took {:?}", start.elapsed());
    // The holder cannot renew: its lost signal fires by the end of its validity.
    tokio::time::timeout(2 * SEC, g.lost())
        .await
        .expect("lost signal with the backend down");
}
