//! The store behind the mutex: leases, resources, counters, fences, and lazy expiry.

#[allow(unused_imports)]
use super::*;

/// How many idle resources may be remembered past their retention before the sweep looks for them.
pub(super) const IDLE_SLACK: usize = 4096;

/// A lease token (128 random bits) as two words, so maps of tokens keep 8-byte alignment.
pub(super) type Tok = (u64, u64);
/// "No holder" (tokens are never all zero).
pub(super) const NO_TOK: Tok = (0, 0);

// Memory layout: a held lease costs one entry in `leases`, one in `resources` (shared by the resource's holders
// and waiters) and the resource name. Expiry is lazy: an operation on a resource or lease first ends whatever
// of it has expired, every operation also checks a couple of leases from a rotating cursor, and `stats` sweeps
// everything; waiters do not need an expiry index, they wake at the blocking lease's expiry on their own.
// B-trees rather than hash maps: at a million entries a
// hash table sits right after a doubling, at half load, and costs twice its entries; a B-tree stays about
// three-quarters full. Times are microseconds since `epoch` (8 bytes instead of 16 for an `Instant`).
#[derive(Debug)]
pub(super) struct State {
    pub(super) epoch: Instant,
    pub(super) resources: BTreeMap<Arc<str>, Res>,
    pub(super) leases: BTreeMap<Tok, Lease>,
    /// Interned client ids with the number of leases each holds.
    pub(super) clients: HashMap<Arc<str>, u32>,
    /// Where the incremental sweep continues, in the leases and in the resources.
    pub(super) cursor: Tok,
    pub(super) res_cursor: Option<Arc<str>>,
    /// How long an idle resource (its last fence) is remembered after its last grant, in µs.
    pub(super) retain_us: u64,
    pub(super) grants: [u64; 4],
    pub(super) released: [u64; 4],
    pub(super) expired: [u64; 4],
    pub(super) hold_ms: u64,
    pub(super) top: HashMap<Arc<str>, u64>,
}

impl Default for State {
    fn default() -> Self {
        State {
            epoch: Instant::now(),
            resources: BTreeMap::new(),
            leases: BTreeMap::new(),
            clients: HashMap::new(),
            cursor: NO_TOK,
            res_cursor: None,
            retain_us: 60_000_000,
            grants: [0; 4],
            released: [0; 4],
            expired: [0; 4],
            hold_ms: 0,
            top: HashMap::new(),
        }
    }
}

#[derive(Debug)]
pub(super) struct Lease {
    pub(super) resource: Arc<str>,
    pub(super) client: Arc<str>,
    /// µs since the store's epoch.
    pub(super) acquired: u64,
    /// µs since the store's epoch.
    pub(super) expires: u64,
    pub(super) fence: u64,
    pub(super) ttl_ms: u32,
    pub(super) renewals: u32,
    /// `u32::MAX` = no cap.
    pub(super) max_renewals: u32,
    /// 0 = no cap.
    pub(super) max_hold_ms: u32,
    pub(super) kind: LockKind,
}

pub(super) fn kind_index(k: LockKind) -> usize {
    match k {
        LockKind::Exclusive => 0,
        // Semaphore permits count as shared holds in the statistics.
        // So do intentions.
        LockKind::Shared | LockKind::Semaphore | LockKind::IntentShared | LockKind::IntentExclusive => 1,
        LockKind::Read => 2,
        LockKind::Write => 3,
    }
}

pub(super) fn parse_token(lock_id: &str) -> Option<Tok> {
    if lock_id.len() != 32 {
        return None;
    }
    let v = u128::from_str_radix(lock_id, 16).ok()?;
    let t = ((v >> 64) as u64, v as u64);
    (t != NO_TOK).then_some(t)
}

pub(super) fn fmt_token(t: Tok) -> String {
    format!("{:016x}{:016x}", t.0, t.1)
}

pub(super) fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Converts a monotonic instant to wall-clock time for display.
pub(super) fn to_system(at: Instant, now: Instant, now_sys: SystemTime) -> SystemTime {
    if at >= now {
        now_sys + (at - now)
    } else {
        now_sys - (now - at)
    }
}

impl State {
    pub(super) fn us(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_micros() as u64
    }

    pub(super) fn instant(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us)
    }

    /// Ends lease `t` if its expiry has passed (as an expiry, not a release). Returns whether it did.
    pub(super) fn expire_lease(&mut self, t: Tok, now: Instant, router: &WakeRouter) -> bool {
        let now_us = self.us(now);
        if self.leases.get(&t).is_none_or(|l| l.expires >= now_us) {
            return false;
        }
        let Some(l) = self.leases.remove(&t) else {
            return false;
        };
        self.expired[kind_index(l.kind)] += 1;
        self.hold_ms += (l.expires - l.acquired) / 1000;
        tracing::debug!(resource = %l.resource, client = %l.client, fence = l.fence, "lease expired");
        self.forget_client(&l.client);
        self.drop_holder(&l.resource, t, l.kind, now, router);
        true
    }

    /// Ends the expired holders of `resource`.
    pub(super) fn expire_resource(&mut self, resource: &str, now: Instant, router: &WakeRouter) {
        let Some(res) = self.resources.get(resource) else {
            return;
        };
        let holders: Vec<Tok> = std::iter::once(res.exclusive)
            .filter(|t| *t != NO_TOK)
            .chain(res.readers().iter().copied())
            .collect();
        for t in holders {
            self.expire_lease(t, now, router);
        }
    }

    /// Checks `n` leases from the rotating cursor, so leases nobody touches again are still reclaimed, and, while
    /// idle resources outnumber the held ones and a slack, `n` resources, forgetting idle ones whose retention
    /// has passed (below that, remembering them costs less than looking would; remembering a token longer is
    /// always allowed).
    pub(super) fn sweep_some(&mut self, n: usize, now: Instant, router: &WakeRouter) {
        if self.resources.len() > 2 * self.leases.len() + IDLE_SLACK {
            self.forget_idle(n);
        }
        for _ in 0..n {
            let next = self
                .leases
                .range((Bound::Excluded(self.cursor), Bound::Unbounded))
                .next()
                .or_else(|| self.leases.iter().next())
                .map(|(t, _)| *t);
            let Some(t) = next else {
                return;
            };
            self.cursor = t;
            self.expire_lease(t, now, router);
        }
    }

    /// Looks at `n` resources from the rotating cursor and forgets the idle ones whose retention has passed.
    fn forget_idle(&mut self, n: usize) {
        let forget_before = now_micros().saturating_sub(self.retain_us);
        for _ in 0..n {
            let next = match &self.res_cursor {
                Some(c) => self
                    .resources
                    .range::<str, _>((Bound::Excluded(&**c), Bound::Unbounded))
                    .next(),
                None => None,
            }
            .or_else(|| self.resources.iter().next())
            .map(|(k, r)| (k.clone(), r.is_idle() && r.fence < forget_before));
            let Some((k, forget)) = next else {
                return;
            };
            if forget {
                self.resources.remove(&k);
            }
            self.res_cursor = Some(k);
        }
    }

    /// Ends every expired lease.
    pub(super) fn sweep_all(&mut self, now: Instant, router: &WakeRouter) {
        let now_us = self.us(now);
        let due: Vec<Tok> = self
            .leases
            .iter()
            .filter(|(_, l)| l.expires < now_us)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.expire_lease(t, now, router);
        }
    }

    pub(super) fn forget_client(&mut self, client: &Arc<str>) {
        if let Some(n) = self.clients.get_mut(client) {
            *n -= 1;
            if *n == 0 {
                self.clients.remove(client);
            }
        }
    }

    /// Removes `t` from the holders of `resource`, wakes the next waiters, forgets idle resources.
    pub(super) fn drop_holder(
        &mut self,
        resource: &Arc<str>,
        t: Tok,
        kind: LockKind,
        now: Instant,
        router: &WakeRouter,
    ) {
        let Some(res) = self.resources.get_mut(resource) else {
            return;
        };
        if res.exclusive == t {
            res.exclusive = NO_TOK;
        }
        if let Some(m) = res.more.as_mut() {
            m.remove_reader(t, kind);
        }
        res.clean_head(now);
        let ids = res.eligible(now);
        router.wake(ids.iter().map(String::as_str));
        // Forget an idle resource only once its retention has passed (conditional acquires read its last fence),
        // and so once the clock is past its fence: a re-seeded fence still grows.
        if res.is_idle() && res.fence + self.retain_us < now_micros() {
            self.resources.remove(resource);
        }
    }

    /// The shared copy of `client`, counting one more lease for it.
    pub(super) fn intern_client(&mut self, client: &str) -> Arc<str> {
        if let Some((k, n)) = self.clients.get_key_value(client) {
            let k = k.clone();
            let n = *n;
            self.clients.insert(k.clone(), n + 1);
            return k;
        }
        let k: Arc<str> = Arc::from(client);
        self.clients.insert(k.clone(), 1);
        k
    }

    pub(super) fn info(&self, t: Tok, l: &Lease, now: Instant, now_sys: SystemTime) -> LeaseInfo {
        let held = self.resources.get(&l.resource).is_some_and(|r| r.holds(t));
        let expires = self.instant(l.expires);
        let lock_id = fmt_token(t);
        LeaseInfo {
            lease_handle: crate::lease_handle(&lock_id),
            lock_id,
            resource: l.resource.to_string(),
            kind: l.kind,
            client_id: l.client.to_string(),
            acquired_at: to_system(self.instant(l.acquired), now, now_sys),
            expires_at: to_system(expires, now, now_sys),
            ttl: Duration::from_millis(u64::from(l.ttl_ms)),
            fencing_token: l.fence,
            renewal_count: l.renewals,
            expired: !held || expires < now,
        }
    }

    /// The lease and whether `client_id` may act on it.
    pub(super) fn owned(&self, lock_id: &str, client_id: Option<&str>) -> Result<(Tok, &Lease)> {
        let t = parse_token(lock_id).ok_or_else(|| Error::NotFound {
            lock_id: lock_id.to_string(),
        })?;
        let l = self.leases.get(&t).ok_or_else(|| Error::NotFound {
            lock_id: lock_id.to_string(),
        })?;
        if let Some(c) = client_id {
            if &*l.client != c {
                return Err(Error::NotOwner {
                    lock_id: lock_id.to_string(),
                    client_id: c.to_string(),
                });
            }
        }
        Ok((t, l))
    }
}
