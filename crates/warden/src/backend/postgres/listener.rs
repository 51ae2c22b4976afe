//! The one connection per backend that `LISTEN`s for wake-ups: a release `NOTIFY`s the waiters it handed the
//! lock to (with their grants), a waiter leaving or a dead waiter dropped the ids of those that may proceed;
//! this task hands them to the wake router.
//!
//! If the connection drops or stops answering its health check, notifications may have been lost: every local
//! waiter is woken (it re-attempts), and the task reconnects with backoff.

#[allow(unused_imports)]
use super::*;
use tokio::sync::oneshot;

/// How often the listening connection is checked with a query.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// Starts the listener; returns once it listens (so no notification sent after `connect` returns is
/// missed), or the error of the first connection.
pub(super) async fn spawn(
    config: tokio_postgres::Config,
    tls: Tls,
    channel: String,
    router: Arc<WakeRouter>,
    address: String,
    timeout: Duration,
) -> Result<tokio::task::JoinHandle<()>> {
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(run(config, tls, channel, router, address.clone(), timeout, ready_tx));
    match tokio::time::timeout(timeout, ready_rx).await {
        Ok(Ok(Ok(()))) => Ok(task),
        Ok(Ok(Err(e))) => {
            task.abort();
            Err(e)
        }
        _ => {
            task.abort();
            Err(unavailable(
                &address,
                format!("no answer within {} ms", timeout.as_millis()),
            ))
        }
    }
}

async fn run(
    config: tokio_postgres::Config,
    tls: Tls,
    channel: String,
    router: Arc<WakeRouter>,
    address: String,
    timeout: Duration,
    ready: oneshot::Sender<Result<()>>,
) {
    let mut ready = Some(ready);
    let mut backoff = Duration::from_millis(50);
    loop {
        match listen_once(&config, &tls, &channel, &router, &address, timeout, &mut ready).await {
            Ok(()) => backoff = Duration::from_millis(50),
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
                tracing::debug!(address, error = %e, "wake-up listener down; reconnecting");
            }
        }
        router.wake_all();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One listening connection, until it fails. `Ok` when it had been listening.
async fn listen_once(
    config: &tokio_postgres::Config,
    tls: &Tls,
    channel: &str,
    router: &Arc<WakeRouter>,
    address: &str,
    timeout: Duration,
    ready: &mut Option<oneshot::Sender<Result<()>>>,
) -> Result<()> {
    // The connection's notifications go to the router; the driver ends when the connection does.
    let (client, driver) = tls
        .connect(config, Some(router.clone()))
        .await
        .map_err(|e| db_error(address, e))?;
    let listen = format!("LISTEN {channel}");
    tokio::time::timeout(timeout, client.batch_execute(&listen))
        .await
        .map_err(|_| unavailable(address, "no answer to LISTEN"))?
        .map_err(|e| db_error(address, e))?;
    if let Some(r) = ready.take() {
        let _ = r.send(Ok(()));
    }
    loop {
        tokio::time::sleep(CHECK_EVERY).await;
        let check = tokio::time::timeout(timeout, client.simple_query("SELECT 1")).await;
        if !matches!(check, Ok(Ok(_))) || driver.0.is_finished() {
            return Ok(());
        }
    }
}
