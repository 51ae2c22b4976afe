//! What operators read: a lease, a resource's holders and queue, a client's leases, stats (with the sweep of
//! every slot), health.

#[allow(unused_imports)]
use super::*;

impl RedisBackend {
    /// Sweeps every slot; returns the number of live leases.
    pub(crate) async fn sweep_all(&self) -> Result<u64> {
        let mut active = 0;
        for chunk in self.slots_with_leases().await?.chunks(SWEEP_CHUNK as usize) {
            active += self.keeper.sweep(chunk).await?;
        }
        Ok(active)
    }

    /// The tags of the slots that hold lease records now, found with `SCAN … MATCH` (incremental, in C): far
    /// cheaper than a script look at all 16,384 slots when few are in use.
    pub(super) async fn slots_with_leases(&self) -> Result<Vec<&'static str>> {
        let mut pattern = String::from("{???}\x01h");
        for c in self.opts.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut tags = std::collections::BTreeSet::new();
        loop {
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor).arg("MATCH").arg(&pattern).arg("COUNT").arg(1000);
            let (next, found): (u64, Vec<Vec<u8>>) =
                tokio::time::timeout(self.opts.timeout, cmd.query_async(&mut conn))
                    .await
                    .map_err(|_| unavailable(&self.address, "SCAN timed out"))?
                    .map_err(|e| map_err(&self.address, e))?;
            for key in found {
                if let Some(t) = key.get(1..1 + keys::TAG_LEN) {
                    let tag = keys::tag_of_slot(keys::slot(t));
                    if tag.as_bytes() == t {
                        tags.insert(tag);
                    }
                }
            }
            cursor = next;
            if cursor == 0 {
                return Ok(tags.into_iter().collect());
            }
        }
    }

    pub(super) async fn view_lease(&self, lock_id: &str) -> Result<Option<LeaseInfo>> {
        if keys::tag_of_lock_id(lock_id).is_none() {
            return Ok(None);
        }
        let v = self.view(&["lease", lock_id]).await?;
        let Value::Array(items) = &v else {
            return Err(bad("inspect", &v));
        };
        Ok(parse_leases(items)?.into_iter().next())
    }

    pub(super) async fn view_inspect(&self, resource: &str) -> Result<ResourceInfo> {
        let v = self.view(&["resource", self.tag(resource), resource]).await?;
        let Value::Array(items) = &v else {
            return Err(bad("inspect", &v));
        };
        let foreign = items.first().and_then(as_i64) == Some(1);
        let sep = items
            .iter()
            .position(|x| is_str(x, "--"))
            .ok_or_else(|| bad("inspect", &v))?;
        let holders = parse_leases(&items[1..sep])?;
        let mut queue = Vec::new();
        for c in items[sep + 1..].chunks(2) {
            let [id, info] = c else { continue };
            let (Some(id), Some(info)) = (as_string(id), as_string(info)) else {
                return Err(bad("inspect", &v));
            };
            let f: Vec<&str> = info.split('\n').collect();
            if f.len() < 4 {
                return Err(bad("inspect", &v));
            }
            queue.push(QueueEntry {
                waiter_id: id,
                kind: crate::types::parse_kind(f[1]).ok_or_else(|| bad("inspect", &v))?,
                client_id: f[2].to_string(),
                ttl: Duration::from_millis(f[3].parse().unwrap_or(0)),
            });
        }
        Ok(ResourceInfo {
            holders,
            foreign_holder: foreign,
            queue,
        })
    }

    pub(super) async fn view_held(&self, client_id: &str) -> Result<Vec<LeaseInfo>> {
        // No per-client index on the lock path: read the lease records of the slots in use (an operator's view).
        let mut out = Vec::new();
        for chunk in self.slots_with_leases().await?.chunks(SWEEP_CHUNK as usize) {
            let mut args = vec!["held", client_id];
            args.extend_from_slice(chunk);
            let v = self.view(&args).await?;
            let Value::Array(items) = &v else {
                return Err(bad("held", &v));
            };
            out.extend(parse_leases(items)?.into_iter().filter(|l| !l.expired));
        }
        out.sort_by_key(|l| l.acquired_at);
        Ok(out)
    }

    pub(super) async fn view_stats(&self, top: usize) -> Result<Stats> {
        // A node that cannot take the pending counts now will not answer the reads either: one timeout, not
        // one per step.
        if !self.flush().await {
            return Err(unavailable(&self.address, "statistics could not be written"));
        }
        let active = self.sweep_all().await?;
        if !self.flush().await {
            return Err(unavailable(&self.address, "statistics could not be written"));
        }
        read_stats(&self.conn, &self.names, top, active, self.opts.timeout, &self.address).await
    }

    pub(super) async fn view_health(&self) -> Health {
        let start = std::time::Instant::now();
        let mut conn = self.conn.clone();
        let ping = tokio::time::timeout(self.opts.timeout, redis::cmd("PING").query_async::<String>(&mut conn)).await;
        let node = match ping {
            Ok(Ok(_)) => NodeHealth::new(
                self.address.clone(),
                true,
                Some(start.elapsed().as_secs_f64() * 1000.0),
                None,
            ),
            Ok(Err(e)) => NodeHealth::new(self.address.clone(), false, None, Some(e.to_string())),
            Err(_) => NodeHealth::new(
                self.address.clone(),
                false,
                None,
                Some(format!("no answer within {:?}", self.opts.timeout)),
            ),
        };
        let status = if node.reachable {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        };
        Health::new("redis", status, vec![node], None)
    }
}

/// The statistics in the shared hashes `names` (totals, and the `top` busiest resources), with `active` live
/// leases counted by the caller's sweep.
pub(crate) async fn read_stats(
    conn: &ConnectionManager,
    names: &Names,
    top: usize,
    active: u64,
    timeout: Duration,
    address: &str,
) -> Result<Stats> {
    let mut c = conn.clone();
    let hash: HashMap<String, u64> =
        tokio::time::timeout(timeout, redis::cmd("HGETALL").arg(&names.stats).query_async(&mut c))
            .await
            .map_err(|_| unavailable(address, "HGETALL timed out"))?
            .map_err(|e| map_err(address, e))?;
    let top_resources = if top == 0 {
        Vec::new()
    } else {
        let mut counts = hscan_counts(conn, &names.top, timeout)
            .await
            .map_err(|e| map_err(address, e))?;
        counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        counts.truncate(top);
        counts
    };
    let (grants, released, expired, hold_ms) = counters::totals(&hash);
    let active_of = |k: usize| grants[k].saturating_sub(released[k]).saturating_sub(expired[k]);
    let ended: u64 = released.iter().chain(&expired).sum();
    Ok(Stats {
        total_locks: grants.iter().sum(),
        active_locks: active,
        expired_locks: expired.iter().sum(),
        average_hold_time_ms: hold_ms.checked_div(ended).unwrap_or(0),
        active_exclusive: active_of(0),
        active_shared: active_of(1),
        active_read_write: active_of(2) + active_of(3),
        top_resources,
    })
}
