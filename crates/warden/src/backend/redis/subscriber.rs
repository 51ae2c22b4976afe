//! Wake-ups: one subscriber connection (RESP3 push) per backend reads the channel the scripts publish
//! releases and handoffs on, and routes them to this process's waiters.

use super::options::Options;
use super::reply::as_string;
use super::{map_err, unavailable};
use crate::error::{Error, Result};
use crate::wake::WakeRouter;
use redis::aio::ConnectionManagerConfig;
use redis::PushKind;
use std::sync::Arc;
use std::time::Duration;

/// One subscriber connection (RESP3 push) per backend: routes wake-ups to local waiters. After a
/// disconnection it reconnects with backoff and wakes every local waiter, since messages may have been lost.
pub(crate) async fn spawn_subscriber(
    redis_url: &str,
    address: &str,
    opts: &Options,
    channel: &str,
    router: Arc<WakeRouter>,
) -> Result<tokio::task::JoinHandle<()>> {
    let mut u = url::Url::parse(redis_url).map_err(|e| Error::invalid("backend", format!("{address}: {e}")))?;
    u.query_pairs_mut().append_pair("protocol", "resp3");
    let client = super::connect::open_client(u.as_str(), address, opts)?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cfg = ConnectionManagerConfig::new()
        .set_push_sender(tx)
        .set_automatic_resubscription()
        .set_connection_timeout(Some(opts.timeout))
        .set_response_timeout(Some(opts.timeout))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(100));
    let mut sub = tokio::time::timeout(opts.timeout, client.get_connection_manager_with_config(cfg))
        .await
        .map_err(|_| unavailable(address, "subscriber: no answer"))?
        .map_err(|e| unavailable(address, e))?;
    sub.subscribe(channel).await.map_err(|e| map_err(address, e))?;
    Ok(tokio::spawn(async move {
        while let Some(push) = rx.recv().await {
            match push.kind {
                PushKind::Message => {
                    if let Some(payload) = push.data.get(1).and_then(as_string) {
                        router.deliver(&payload);
                    }
                }
                PushKind::Disconnection => {
                    router.wake_all();
                    let mut backoff = Duration::from_millis(20);
                    loop {
                        let ping: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut sub).await;
                        if ping.is_ok() {
                            break;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(1));
                    }
                    router.wake_all();
                }
                _ => {}
            }
        }
    }))
}
