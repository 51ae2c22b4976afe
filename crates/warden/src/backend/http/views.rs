//! What operators read, from the server's views.

#[allow(unused_imports)]
use super::*;
use crate::wire::{Page, MAX_PAGE};

impl HttpBackend {
    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        if crate::validate::lock_id(lock_id).is_err() {
            return Ok(None);
        }
        let path = format!("/api/locks/{lock_id}/status");
        let (status, bytes) = self.call(reqwest::Method::GET, &path, None, self.timeout).await?;
        match status {
            200 => {
                let st: LockStatus = self.data(&bytes)?;
                let lease = st
                    .lock
                    .to_lease(Some(st.is_expired))
                    .map_err(|e| Error::Protocol(format!("{} sent a lease this client cannot read: {e}", self.base)))?;
                Ok(Some(lease))
            }
            404 => Ok(None),
            _ => Err(self.failure(status, &bytes, Some(About::lease(lock_id)))),
        }
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        crate::validate::resource(resource)?;
        let url = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("resource", resource)
            .finish();
        // Every page of the queue, in order.
        let mut q: QueueDto = self
            .get_data(&format!("/api/locks/queue?{url}&limit={MAX_PAGE}"))
            .await?;
        while let Some(offset) = q.next_offset.take() {
            let next: QueueDto = self
                .get_data(&format!("/api/locks/queue?{url}&limit={MAX_PAGE}&offset={offset}"))
                .await?;
            q.queue.extend(next.queue);
            q.next_offset = next.next_offset;
        }
        q.to_resource_info()
            .map_err(|e| Error::Protocol(format!("{} sent a queue this client cannot read: {e}", self.base)))
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        crate::validate::client_id(client_id)?;
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("clientId", client_id)
            .finish();
        // Every page, in order.
        let mut locks: Vec<Lock> = Vec::new();
        let mut offset = Some(0);
        while let Some(at) = offset {
            let (status, bytes) = self
                .call(
                    reqwest::Method::GET,
                    &format!("/api/locks/held?{q}&limit={MAX_PAGE}&offset={at}"),
                    None,
                    self.timeout,
                )
                .await?;
            if status != 200 {
                return Err(self.failure(status, &bytes, None));
            }
            let page: Page<Lock> = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Protocol(format!("{} sent an answer this client cannot read: {e}", self.base)))?;
            locks.extend(page.data);
            offset = page.next_offset;
        }
        locks
            .iter()
            .map(|l| l.to_lease(None))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| Error::Protocol(format!("{} sent a lease this client cannot read: {e}", self.base)))
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let d: StatsDto = self.get_data("/api/locks/stats").await?;
        let mut stats = Stats::from(d);
        stats.top_resources.truncate(top);
        Ok(stats)
    }

    pub(super) async fn view_health(&self) -> Health {
        let started = Instant::now();
        let answer = self
            .call(reqwest::Method::GET, "/api/locks/health", None, self.timeout)
            .await;
        let failed = |reason: String, reachable: bool| {
            Health::new(
                "http",
                HealthStatus::Unhealthy,
                vec![NodeHealth::new(self.base.clone(), reachable, None, Some(reason))],
                None,
            )
        };
        match answer {
            Ok((200, bytes)) => {
                let latency = started.elapsed().as_secs_f64() * 1000.0;
                let d: HealthDto = match self.data(&bytes) {
                    Ok(d) => d,
                    Err(e) => return failed(e.to_string(), true),
                };
                let status = match d.status.as_str() {
                    "healthy" => HealthStatus::Healthy,
                    "degraded" => HealthStatus::Degraded,
                    _ => HealthStatus::Unhealthy,
                };
                let mut nodes = vec![NodeHealth::new(self.base.clone(), true, Some(latency), None)];
                for n in d.nodes {
                    nodes.push(NodeHealth::new(n.address, n.reachable, n.latency_ms, n.error));
                }
                Health::new("http", status, nodes, d.quorum)
            }
            Ok((status, bytes)) => failed(self.failure(status, &bytes, None).to_string(), true),
            Err(e) => failed(e.to_string(), false),
        }
    }
}
