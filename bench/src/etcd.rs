//! The floor of etcd as a lock service: a bare try-lock cycle on the `uniform` workload from the same client
//! library warden uses: a put conditional on the key being absent, then a delete. It keeps no lease, no queue,
//! no fence and no record: what warden adds on top costs the difference.

use crate::Report;
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use std::time::Instant;

/// Runs `workers` tasks over `keys` keys for `duration` against the members of an `etcd://h1:p1,h2:p2` URL.
pub async fn etcd_floor(
    url: &str,
    workers: usize,
    keys: usize,
    duration: std::time::Duration,
) -> anyhow::Result<Report> {
    let hosts = url
        .strip_prefix("etcd://")
        .ok_or_else(|| anyhow::anyhow!("--floor on etcd needs an etcd:// URL"))?;
    let hosts = hosts.split(['?', '/']).next().unwrap_or_default();
    let endpoints: Vec<String> = hosts.split(',').map(|h| format!("http://{h}")).collect();
    let client = Client::connect(endpoints, None).await?;
    let cycle = move |key: i64| {
        let client = client.clone();
        async move {
            let key = format!("bench-floor/{key}");
            let take = Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.clone(), "x", None)]);
            let got = client.kv_client().txn(take).await?.succeeded();
            let acquired = Instant::now();
            if got {
                client.kv_client().delete(key, None).await?;
            }
            anyhow::Ok(got.then_some(acquired))
        }
    };
    crate::sql::floor("etcd put-if-absent/delete", workers, keys, duration, cycle).await
}
