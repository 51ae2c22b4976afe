//! The floor of ZooKeeper as a lock service: a bare try-lock cycle on the `uniform` workload from the same
//! client library warden uses: create an ephemeral node (taken if it did not exist), then delete it. It keeps
//! no queue, no fence, no record and no lease of its own: what warden adds on top costs the difference.

use crate::Report;
use std::time::Instant;
use zookeeper_client::{Acls, Client, CreateMode, Error};

/// Runs `workers` tasks over `keys` keys for `duration` against the servers of a `zk://h1:p1,h2:p2` URL.
pub async fn zookeeper_floor(
    url: &str,
    workers: usize,
    keys: usize,
    duration: std::time::Duration,
) -> anyhow::Result<Report> {
    let hosts = url
        .strip_prefix("zk://")
        .or_else(|| url.strip_prefix("zookeeper://"))
        .ok_or_else(|| anyhow::anyhow!("--floor on ZooKeeper needs a zk:// URL"))?;
    let hosts = hosts.split(['?', '/']).next().unwrap_or_default();
    let client = Client::connect(hosts).await?;
    match client
        .create(
            "/bench-floor",
            b"",
            &CreateMode::Persistent.with_acls(Acls::anyone_all()),
        )
        .await
    {
        Ok(_) | Err(Error::NodeExists) => {}
        Err(e) => return Err(e.into()),
    }
    let cycle = move |key: i64| {
        let client = client.clone();
        async move {
            let path = format!("/bench-floor/{key}");
            let opts = CreateMode::Ephemeral.with_acls(Acls::anyone_all());
            let got = match client.create(&path, b"x", &opts).await {
                Ok(_) => true,
                Err(Error::NodeExists) => false,
                Err(e) => return Err(e.into()),
            };
            let acquired = Instant::now();
            if got {
                client.delete(&path, None).await?;
            }
            anyhow::Ok(got.then_some(acquired))
        }
    };
    crate::sql::floor("zookeeper create/delete", workers, keys, duration, cycle).await
}
