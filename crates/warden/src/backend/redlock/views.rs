//! What operators read, by majority: a lease, a resource's holders and queue, a client's leases, stats, health.

#[allow(unused_imports)]
use super::*;

impl RedlockBackend {
    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        let r = self
            .on_all(
                with_arg(lock_id, |b, lock_id| async move { b.lease(&lock_id).await }),
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < self.quorum() {
            return Err(self.quorum_error(&r));
        }
        let found: Vec<&LeaseInfo> = r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()?.as_ref()).collect();
        let live = found.iter().filter(|l| !l.expired).count();
        if found.is_empty() {
            return Ok(None);
        }
        let mut info = found[0].clone();
        info.expires_at = found.iter().map(|l| l.expires_at).min().unwrap_or(info.expires_at);
        info.expired = live < self.quorum();
        Ok(Some(info))
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let q = self.quorum();
        let r = self
            .on_all(
                with_arg(resource, |b, resource| async move { b.inspect(&resource).await }),
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < q {
            return Err(self.quorum_error(&r));
        }
        let infos: Vec<&ResourceInfo> = r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()).collect();
        let mut out = ResourceInfo::default();
        let mut holder_votes: HashMap<&str, (usize, &LeaseInfo)> = HashMap::new();
        let mut waiter_votes: HashMap<&str, usize> = HashMap::new();
        let mut foreign = 0;
        for i in &infos {
            for h in i.holders.iter().filter(|h| !h.expired) {
                holder_votes.entry(h.lock_id.as_str()).or_insert((0, h)).0 += 1;
            }
            for w in &i.queue {
                *waiter_votes.entry(w.waiter_id.as_str()).or_insert(0) += 1;
            }
            foreign += usize::from(i.foreign_holder);
        }
        let mut holders: Vec<LeaseInfo> = holder_votes
            .into_values()
            .filter(|(v, _)| *v >= q)
            .map(|(_, h)| h.clone())
            .collect();
        holders.sort_by_key(|h| h.fencing_token);
        out.holders = holders;
        out.foreign_holder = foreign >= q;
        if let Some(first) = infos.iter().max_by_key(|i| i.queue.len()) {
            out.queue = first
                .queue
                .iter()
                .filter(|w| waiter_votes.get(w.waiter_id.as_str()).copied().unwrap_or(0) >= q)
                .cloned()
                .collect();
        }
        Ok(out)
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        crate::validate::client_id(client_id)?;
        let q = self.quorum();
        let r = self
            .on_all(
                with_arg(client_id, |b, client| async move { b.held(&client).await }),
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < q {
            return Err(self.quorum_error(&r));
        }
        let mut votes: HashMap<String, (usize, LeaseInfo)> = HashMap::new();
        for list in r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()) {
            for l in list {
                votes.entry(l.lock_id.clone()).or_insert((0, l.clone())).0 += 1;
            }
        }
        let mut out: Vec<LeaseInfo> = votes.into_values().filter(|(v, _)| *v >= q).map(|(_, l)| l).collect();
        out.sort_by(|a, b| a.resource.cmp(&b.resource));
        Ok(out)
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        let r = self
            .on_all(
                move |_, b| async move { b.stats(top).await },
                |r| r.iter().all(Option::is_some),
            )
            .await;
        if count_ok(&r) < self.quorum() {
            return Err(self.quorum_error(&r));
        }
        // Every grant, release and expiry is recorded on at least a quorum of nodes (a call returns once a
        // quorum confirmed; the rest may still be on their way): each figure is the one a majority of nodes
        // has reached, the value that stays once every node answered.
        let all: Vec<&Stats> = r.iter().filter_map(|x| x.as_ref()?.as_ref().ok()).collect();
        let q = self.quorum();
        let majority = |f: fn(&Stats) -> u64| {
            let mut v: Vec<u64> = all.iter().map(|s| f(s)).collect();
            v.sort_unstable();
            v.get(v.len().saturating_sub(q)).copied().unwrap_or(0)
        };
        let top = all
            .iter()
            .max_by_key(|s| s.total_locks)
            .map(|s| s.top_resources.clone())
            .unwrap_or_default();
        let mut s = Stats {
            total_locks: majority(|s| s.total_locks),
            active_locks: majority(|s| s.active_locks),
            expired_locks: majority(|s| s.expired_locks),
            average_hold_time_ms: majority(|s| s.average_hold_time_ms),
            active_exclusive: majority(|s| s.active_exclusive),
            active_shared: majority(|s| s.active_shared),
            active_read_write: majority(|s| s.active_read_write),
            ..Stats::default()
        };
        s.top_resources = top;
        Ok(s)
    }

    pub(super) async fn view_health(&self) -> Health {
        let r = self
            .on_all(
                |_, b| async move { Ok(b.health().await) },
                |r| r.iter().all(Option::is_some),
            )
            .await;
        let mut nodes = Vec::new();
        for (res, node) in r.into_iter().zip(&self.nodes) {
            match res {
                Some(Ok(h)) => nodes.extend(h.nodes),
                Some(Err(e)) => nodes.push(NodeHealth::new(node.address.clone(), false, None, Some(e.to_string()))),
                None => nodes.push(NodeHealth::new(
                    node.address.clone(),
                    false,
                    None,
                    Some("no answer".into()),
                )),
            }
        }
        let up = nodes.iter().filter(|n| n.reachable).count();
        let quorum = up >= self.quorum();
        let status = if up == self.nodes.len() {
            HealthStatus::Healthy
        } else if quorum {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("redlock", status, nodes, Some(quorum))
    }
}
