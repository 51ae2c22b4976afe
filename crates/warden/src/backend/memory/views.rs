//! What operators read: one lease, a resource's holders and queue, a client's leases, stats, health.

#[allow(unused_imports)]
use super::*;

impl MemoryBackend {
    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let now = Instant::now();
        let mut st = self.lock();
        let Some(t) = parse_token(lock_id) else {
            return Ok(None);
        };
        st.expire_lease(t, now, &self.router);
        Ok(st.leases.get(&t).map(|l| st.info(t, l, now, SystemTime::now())))
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.expire_resource(resource, now, &self.router);
        let Some(res) = st.resources.get(resource) else {
            return Ok(ResourceInfo::default());
        };
        let holders = std::iter::once(res.exclusive)
            .filter(|t| *t != NO_TOK)
            .chain(res.readers().iter().copied())
            .filter_map(|t| st.leases.get(&t).map(|l| st.info(t, l, now, now_sys)))
            .collect();
        let queue = res
            .queue()
            .filter(|w| w.deadline >= now)
            .map(|w| QueueEntry {
                waiter_id: w.id.clone(),
                client_id: w.client.to_string(),
                kind: w.kind,
                ttl: w.ttl,
            })
            .collect();
        Ok(ResourceInfo {
            holders,
            foreign_holder: false,
            queue,
        })
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        let now = Instant::now();
        let now_sys = SystemTime::now();
        let mut st = self.lock();
        st.sweep_all(now, &self.router);
        if !st.clients.contains_key(client_id) {
            return Ok(Vec::new());
        }
        // A scan: no per-client index is kept, to keep every lease small (see `State`).
        let mut out: Vec<LeaseInfo> = st
            .leases
            .iter()
            .filter(|(_, l)| &*l.client == client_id)
            .map(|(t, l)| st.info(*t, l, now, now_sys))
            .filter(|i| !i.expired)
            .collect();
        out.sort_by_key(|i| i.acquired_at);
        Ok(out)
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let now = Instant::now();
        let mut st = self.lock();
        st.sweep_all(now, &self.router);
        let mut active = [0u64; 4];
        for l in st.leases.values() {
            active[kind_index(l.kind)] += 1;
        }
        let ended: u64 = st.released.iter().sum::<u64>() + st.expired.iter().sum::<u64>();
        let mut top_resources: Vec<(String, u64)> = Vec::new();
        if top > 0 {
            top_resources = st.top.iter().map(|(k, v)| (k.to_string(), *v)).collect();
            top_resources.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            top_resources.truncate(top);
        }
        Ok(Stats {
            total_locks: st.grants.iter().sum(),
            active_locks: active.iter().sum(),
            expired_locks: st.expired.iter().sum(),
            average_hold_time_ms: st.hold_ms.checked_div(ended).unwrap_or(0),
            active_exclusive: active[0],
            active_shared: active[1],
            active_read_write: active[2] + active[3],
            top_resources,
        })
    }

    pub(super) async fn view_health(&self) -> Health {
        Health::new(
            "memory",
            HealthStatus::Healthy,
            vec![NodeHealth::new("in-process".into(), true, Some(0.0), None)],
            None,
        )
    }
}
