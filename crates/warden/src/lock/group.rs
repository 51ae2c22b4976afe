//! Lock groups: several resources held as one lease, all or nothing.
//!
//! Members are acquired in one global order (by resource name, byte-wise), whatever order the caller named
//! them in: a caller waits only for a resource that sorts after every resource it holds, so no cycle of
//! waiters, hence no deadlock, can form, on any backend and across Redis Cluster slots alike. Every member
//! waits in its own resource's FIFO queue. The first member is asked for (queueing if it is held) while every
//! other is tried at the same time, so a group of free resources costs one round trip; from the first member
//! that was busy on, that member is waited for in its queue and every later one tried at once again, and so
//! on. If the wait runs out, or any member fails, every member already granted is released: the caller holds
//! nothing.

#[allow(unused_imports)]
use super::*;
use crate::validate::MAX_GROUP_MEMBERS;
use futures::future::join_all;
use futures::FutureExt;

/// Options of one group acquisition. Created by [`Warden::group`].
#[derive(Debug, Clone)]
#[must_use = "a GroupBuilder does nothing until acquire() is awaited"]
pub struct GroupBuilder<'a> {
    options: LockBuilder<'a>,
    members: Vec<(String, LockKind, u32)>,
}

impl<'a> GroupBuilder<'a> {
    pub(super) fn new(warden: &'a Warden) -> Self {
        GroupBuilder {
            options: warden.lock(String::new()),
            members: Vec::new(),
        }
    }
    /// The handle the group is taken through.
    pub(super) fn warden(&self) -> &'a Warden {
        self.options.warden
    }
    /// Adds `resource` in any [`LockKind`] (`permits` only for [`LockKind::Semaphore`], else 0).
    pub fn member(mut self, resource: impl Into<String>, kind: LockKind, permits: u32) -> Self {
        self.members.push((resource.into(), kind, permits));
        self
    }
    /// Adds `resource` in exclusive mode.
    pub fn exclusive(self, resource: impl Into<String>) -> Self {
        self.member(resource, LockKind::Exclusive, 0)
    }
    /// Adds `resource` in shared mode.
    pub fn shared(self, resource: impl Into<String>) -> Self {
        self.member(resource, LockKind::Shared, 0)
    }
    /// Adds one of the `permits` permits of the semaphore `resource` (see [`LockBuilder::permits`]).
    pub fn semaphore(self, resource: impl Into<String>, permits: u32) -> Self {
        self.member(resource, LockKind::Semaphore, permits)
    }
    /// Lease length of every member (10 ms ..= 24 h).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.options = self.options.ttl(ttl);
        self
    }
    /// How long to wait for the whole group (0 = try once; at most 10 min).
    pub fn wait(mut self, wait: Duration) -> Self {
        self.options = self.options.wait(wait);
        self
    }
    /// Client id of the group's leases (defaults to the handle's).
    pub fn client_id(mut self, id: impl Into<String>) -> Self {
        self.options = self.options.client_id(id);
        self
    }
    /// Refuse renewals after `n`.
    pub fn max_renewals(mut self, n: u32) -> Self {
        self.options = self.options.max_renewals(n);
        self
    }
    /// Never extend the leases past this long after their grant.
    pub fn max_hold(mut self, d: Duration) -> Self {
        self.options = self.options.max_hold(d);
        self
    }
    /// Renew automatically about every ttl/3 (default true).
    pub fn auto_renew(mut self, on: bool) -> Self {
        self.options = self.options.auto_renew(on);
        self
    }
    /// A condition on a group of one (see [`LockBuilder::condition`]). A group of several members with a
    /// condition is refused: a member let go to keep the global order would count as a grant of its resource.
    pub fn condition(mut self, condition: Option<Condition>) -> Self {
        self.options = self.options.condition(condition);
        self
    }
    /// Every member waits with this priority (see [`LockBuilder::priority`]).
    pub fn priority(mut self, priority: i32) -> Self {
        self.options = self.options.priority(priority);
        self
    }

    /// Every member's request, in the global order, validated.
    fn requests(&self) -> Result<Vec<AcquireRequest>> {
        if self.members.is_empty() || self.members.len() > MAX_GROUP_MEMBERS {
            return Err(Error::invalid(
                "members",
                format!(
                    "a group needs 1..={MAX_GROUP_MEMBERS} resources, got {}",
                    self.members.len()
                ),
            ));
        }
        if self.options.condition.is_some() && self.members.len() > 1 {
            return Err(Error::invalid(
                "condition",
                "a condition applies to one lock: acquire the conditional lock on its own, or drop the condition",
            ));
        }
        let mut reqs = Vec::with_capacity(self.members.len());
        for (resource, kind, permits) in &self.members {
            let mut b = self.options.clone().kind(*kind);
            b.resource = resource.clone();
            b.permits = *permits;
            reqs.push(b.request()?);
        }
        reqs.sort_by(|a, b| a.resource.as_bytes().cmp(b.resource.as_bytes()));
        if let Some(w) = reqs.windows(2).find(|w| w[0].resource == w[1].resource) {
            return Err(Error::invalid(
                "members",
                format!("`{}` is named twice: a group holds each resource once", w[0].resource),
            ));
        }
        Ok(reqs)
    }

    /// Acquires every member, waiting up to the configured wait for the whole group. Fails with
    /// [`Error::Timeout`] naming the member that was still held by others when the wait ran out; then no member
    /// is held. Cancel-safe: dropping the future releases what was granted and leaves the queue.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let w = warden::Warden::connect("memory://").await.unwrap();
    /// let mut group = w.group(["account:bob", "account:alice"]).shared("rates").acquire().await.unwrap();
    /// assert!(group.fencing_token("account:alice").is_some());
    /// // Any member held elsewhere: a group that cannot wait holds nothing.
    /// assert!(w.group(["account:carol", "account:bob"]).try_acquire().await.unwrap().is_none());
    /// assert!(w.lock("account:carol").try_acquire().await.unwrap().is_some());
    /// group.release().await.unwrap();
    /// # });
    /// ```
    pub async fn acquire(self) -> Result<GroupGuard> {
        let reqs = self.requests()?;
        let members = acquire_all(
            self.options.warden,
            reqs,
            self.options.wait,
            self.options.auto_renew,
            false,
        )
        .await?;
        Ok(GroupGuard {
            lost: members[0].shared.lost.clone(),
            members,
            released: false,
        })
    }

    /// Tries once without waiting; `Ok(None)` if any member is held by others.
    pub async fn try_acquire(self) -> Result<Option<GroupGuard>> {
        match self.wait(Duration::ZERO).acquire().await {
            Ok(g) => Ok(Some(g)),
            Err(Error::Timeout { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Acquires bare leases, in the global order, with no guard: nothing renews or releases them once
    /// granted (for the service, which hands the group id to its caller).
    pub async fn acquire_leases(self) -> Result<Vec<LeaseInfo>> {
        let reqs = self.requests()?;
        let members = acquire_all(self.options.warden, reqs, self.options.wait, true, true).await?;
        Ok(members.into_iter().map(LockGuard::into_lease).collect())
    }
}

/// Grants every request (sorted) or none: see the module's comment.
async fn acquire_all(
    warden: &Warden,
    reqs: Vec<AcquireRequest>,
    wait: Duration,
    auto_renew: bool,
    claim_now: bool,
) -> Result<Vec<LockGuard>> {
    let start = Instant::now();
    let deadline = start + wait;
    let lost = CancellationToken::new();
    let one = |req: AcquireRequest, wait: Duration| {
        let lost = lost.clone();
        async move {
            let (sent, mut grant) = wait_for_grant(warden, &req, wait, claim_now).await?;
            let mut req = req;
            if let Some(id) = grant.lock_id.take() {
                req.lock_id = id;
            }
            Ok::<_, Error>(LockGuard::start(warden, req, sent, grant, auto_renew, lost))
        }
    };
    // The first member (in the global order) waits in its queue from its first attempt, so that groups that
    // start with the same resource are served in arrival order; the others are only tried meanwhile (no deadlock
    // can come of a try).
    let mut first = Box::pin(one(reqs[0].clone(), wait));
    let mut tries = std::pin::pin!(join_all(reqs[1..].iter().cloned().map(|r| one(r, Duration::ZERO))));
    let (first_now, tried) = if wait.is_zero() {
        // A try of the whole group: the first member is only tried too, and nobody waits, so what the other
        // tries took is kept whichever answer comes first.
        let (f, t) = tokio::join!(&mut first, &mut tries);
        (Some(f), t)
    } else {
        tokio::select! {
            biased;
            f = &mut first => (Some(f), (&mut tries).await),
            t = &mut tries => (first.as_mut().now_or_never(), t),
        }
    };
    let first_waits = first_now.is_none();
    let mut held = Vec::with_capacity(reqs.len());
    // Granted after a member that is not held yet: let go, so that nothing held sorts after what is waited for.
    let mut surplus = Vec::new();
    let mut failure = None;
    match first_now {
        Some(Ok(g)) => held.push(g),
        Some(Err(e)) => failure = Some(e),
        None => {}
    }
    keep_prefix(&mut held, 1, tried, &mut surplus, &mut failure);
    if first_waits && failure.is_none() {
        // Everything the tries took sorts after the first member, which is still waited for: let go of it now.
        let (f, ()) = tokio::join!(first, release_all(std::mem::take(&mut surplus)));
        match f {
            Ok(g) => held.push(g),
            Err(e) => failure = Some(e),
        }
    }
    // From the first member not held on: wait for it in its queue, then try every later member at once again,
    // and so on. Everything held sorts before what is waited for. Re-attempts take fresh lock ids: a tried one
    // may have been granted and let go, and a backend may already have handed what it named to another lease.
    let fresh = |r: &AcquireRequest| AcquireRequest {
        lock_id: warden.backend.new_lock_id(&r.resource),
        ..r.clone()
    };
    loop {
        let next = held.len();
        if failure.is_none() && next < reqs.len() && wait.is_zero() {
            failure = Some(Error::Timeout {
                resource: reqs[next].resource.clone(),
                waited: Duration::ZERO,
            });
        }
        if let Some(e) = failure {
            held.append(&mut surplus);
            release_all(held).await;
            return Err(match e {
                Error::Timeout { resource, .. } => Error::Timeout {
                    resource,
                    waited: start.elapsed(),
                },
                e => e,
            });
        }
        release_all(std::mem::take(&mut surplus)).await;
        if next == reqs.len() {
            break;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match one(fresh(&reqs[next]), left).await {
            Ok(g) => held.push(g),
            Err(e) => {
                failure = Some(e);
                continue;
            }
        }
        let tried = join_all(reqs[next + 1..].iter().map(|r| one(fresh(r), Duration::ZERO))).await;
        keep_prefix(&mut held, next + 1, tried, &mut surplus, &mut failure);
    }
    // A member lost while a later one was waited for: the group was never whole.
    if let Some(gone) = held.iter().find(|g| g.is_lost()) {
        let e = gone.lost_error();
        release_all(held).await;
        return Err(e);
    }
    Ok(held)
}

/// Sorts the outcomes of tries of members `from..`: a grant that continues `held` without a gap joins it, any
/// other goes to `surplus`; a refusal other than "held by others" is the group's `failure`.
fn keep_prefix(
    held: &mut Vec<LockGuard>,
    from: usize,
    tried: Vec<Result<LockGuard>>,
    surplus: &mut Vec<LockGuard>,
    failure: &mut Option<Error>,
) {
    for (i, t) in tried.into_iter().enumerate().map(|(i, t)| (i + from, t)) {
        match t {
            Ok(g) if held.len() == i => held.push(g),
            Ok(g) => surplus.push(g),
            Err(Error::Timeout { .. }) => {}
            Err(e) => *failure = failure.take().or(Some(e)),
        }
    }
}

/// Releases `guards` at once, before their group was whole; what the backend could not take is retried in the
/// background.
async fn release_all(guards: Vec<LockGuard>) {
    join_all(guards.into_iter().map(LockGuard::let_go)).await;
}

/// A held group: one lease per member, renewed, lost and released together. A member lost (expired or taken
/// over) fires the group's lost signal. Dropped without [`GroupGuard::release`], it releases in the background.
#[derive(Debug)]
pub struct GroupGuard {
    members: Vec<LockGuard>,
    lost: CancellationToken,
    released: bool,
}

impl GroupGuard {
    /// The members' guards, in the global order (by resource name).
    pub fn members(&self) -> &[LockGuard] {
        &self.members
    }
    /// The fencing token of `resource`'s lease, if it is a member: pass it to that resource with every write.
    pub fn fencing_token(&self, resource: &str) -> Option<u64> {
        self.members
            .iter()
            .find(|m| m.resource() == resource)
            .map(|m| m.fencing_token())
    }
    /// The group's secret id: every member's lock id, in the global order, joined by `.`. With the client id
    /// it releases and renews the whole group ([`Warden::release_group`], [`Warden::renew_group`]).
    pub fn group_id(&self) -> String {
        group_id(self.members.iter().map(|m| m.lock_id()))
    }
    /// Whether a member's lease can no longer be trusted.
    pub fn is_lost(&self) -> bool {
        self.lost.is_cancelled()
    }
    /// Resolves when a member's lease can no longer be trusted. Select on it in the critical section.
    pub async fn lost(&self) {
        self.lost.cancelled().await
    }
    /// A token that is cancelled when a member's lease is lost (to hand to other tasks).
    pub fn lost_token(&self) -> CancellationToken {
        self.lost.child_token()
    }
    /// The earliest trusted validity among the members (zero once lost).
    pub fn remaining(&self) -> Duration {
        self.members.iter().map(LockGuard::remaining).min().unwrap_or_default()
    }

    /// Renews every member for `ttl` from now. Fails with the first member's error; a refusal marks the
    /// group lost.
    pub async fn renew(&self, ttl: Duration) -> Result<()> {
        let outcomes = join_all(self.members.iter().map(|m| m.renew(ttl))).await;
        outcomes.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }

    /// Releases every member and reports the outcome (the first member's error, after every member was
    /// released). Idempotent.
    pub async fn release(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        let outcomes = join_all(self.members.iter_mut().map(|m| m.release())).await;
        outcomes.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
    }
}

/// Joins the members' lock ids, in the global order, into a group id (the form [`GroupGuard::group_id`] and the
/// REST API's `groupId` take).
pub fn group_id<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.collect::<Vec<_>>().join(".")
}

/// Splits a group id into its members' lock ids, each checked.
pub fn group_lock_ids(group_id: &str) -> Result<Vec<&str>> {
    let ids: Vec<&str> = group_id.split('.').collect();
    if ids.len() > MAX_GROUP_MEMBERS || ids.iter().any(|id| validate::lock_id(id).is_err()) {
        return Err(Error::invalid(
            "groupId",
            format!("must be 1..={MAX_GROUP_MEMBERS} lock ids joined by `.`, as the group's acquire returned it"),
        ));
    }
    Ok(ids)
}

impl Warden {
    /// Starts building a group of `resources` in exclusive mode; add members in other modes with
    /// [`GroupBuilder::shared`], [`GroupBuilder::semaphore`] or [`GroupBuilder::member`].
    pub fn group<I, S>(&self, resources: I) -> GroupBuilder<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        resources
            .into_iter()
            .fold(GroupBuilder::new(self), |g, r| g.exclusive(r))
    }

    /// Releases every lease of a group by its id ([`GroupGuard::group_id`]); every member is tried, and the
    /// first member's error is returned.
    pub async fn release_group(&self, group_id: &str, client_id: Option<&str>) -> Result<Vec<Released>> {
        let ids = group_lock_ids(group_id)?;
        let outcomes = join_all(ids.into_iter().map(|id| self.backend.release(id, client_id))).await;
        outcomes.into_iter().collect()
    }

    /// Renews every lease of a group for `ttl` from now (`None`: each lease's own ttl); every member is tried,
    /// and the first member's error is returned.
    pub async fn renew_group(
        &self,
        group_id: &str,
        ttl: Option<Duration>,
        client_id: Option<&str>,
    ) -> Result<Vec<Renewal>> {
        let ids = group_lock_ids(group_id)?;
        if let Some(t) = ttl {
            validate::ttl(t)?;
        }
        let outcomes = join_all(ids.into_iter().map(|id| self.backend.renew(id, ttl, client_id))).await;
        outcomes.into_iter().collect()
    }
}
