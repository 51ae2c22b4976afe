//! Leader election on top of the lock: a candidate campaigns by waiting, in FIFO order, for an exclusive
//! auto-renewed lease on the election's resource; the holder is the leader.
//!
//! - `resign()` (or a graceful stop) releases the lease, and the release notification hands leadership to the
//!   next candidate at once: no polling interval.
//! - A leader that dies silently stops renewing; the next candidate is woken at its lease's expiry (TTL).
//! - A leader whose renewal fails learns it through [`Leadership::lost`] before its lease's validity ends,
//!   and must stop acting as leader; the fencing token of the leadership lets the resources it writes to
//!   reject a deposed leader.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! use std::time::Duration;
//! let warden = warden::Warden::connect("memory://").await?;
//! let election = warden.election("queue-consumer").ttl(Duration::from_secs(5));
//! let leadership = election.campaign("worker-1").await?;
//! assert_eq!(election.leader().await?.map(|l| l.candidate_id), Some("worker-1".to_string()));
//! leadership.resign().await?;
//! assert!(election.leader().await?.is_none());
//! # Ok::<(), warden::Error>(())
//! # }).unwrap();
//! ```

use crate::error::{Error, Result};
use crate::lock::{LockGuard, Warden};
use crate::validate;
use futures::{Stream, StreamExt};
use std::time::{Duration, SystemTime};
use tokio_util::sync::CancellationToken;

/// The resource an election named `name` locks.
pub fn election_resource(name: &str) -> String {
    format!("election:{name}")
}

/// An election: who leads `name`, and the means to campaign for it.
#[derive(Debug, Clone)]
pub struct Election {
    warden: Warden,
    name: String,
    ttl: Duration,
    observe_every: Duration,
}

/// Who leads an election now.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LeaderInfo {
    /// The leader's candidate id.
    pub candidate_id: String,
    /// The fencing token of its leadership (strictly increases with every new term).
    pub fencing_token: u64,
    /// The non-secret handle of the leadership's lease (its lock id is the leader's secret).
    pub lease_handle: String,
    /// When its current term began.
    pub since: SystemTime,
    /// When its lease ends unless renewed.
    pub expires_at: SystemTime,
}

impl Warden {
    /// An election named `name` (default TTL 10 s). See [`Election`].
    pub fn election(&self, name: impl Into<String>) -> Election {
        Election {
            warden: self.clone(),
            name: name.into(),
            ttl: Duration::from_secs(10),
            observe_every: Duration::from_millis(100),
        }
    }
}

impl Election {
    /// The leadership lease's TTL: how long a leader that died silently keeps the election blocked.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How often [`Election::observe`] looks at the leader (default 100 ms): over a warden server (`http://`) only
    /// the fallback, since the server notifies changes; the other backends notify waiters, not bystanders, so
    /// there observing polls. Handing over leadership never polls.
    pub fn observe_every(mut self, every: Duration) -> Self {
        self.observe_every = every.max(Duration::from_millis(5));
        self
    }

    /// The election's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits (without limit) to become leader as `candidate_id`. Candidates are served in arrival order.
    /// Cancel-safe: dropping the future leaves the queue.
    pub async fn campaign(&self, candidate_id: &str) -> Result<Leadership> {
        validate::client_id(candidate_id)?;
        validate::ttl(self.ttl)?;
        let resource = election_resource(&self.name);
        validate::resource(&resource)?;
        loop {
            let r = self
                .warden
                .lock(resource.as_str())
                .ttl(self.ttl)
                .client_id(candidate_id)
                .wait(validate::MAX_WAIT)
                .acquire()
                .await;
            match r {
                Ok(guard) => {
                    tracing::debug!(election = %self.name, candidate = candidate_id, fence = guard.fencing_token(),
                        "became leader");
                    return Ok(Leadership {
                        guard,
                        name: self.name.clone(),
                        candidate_id: candidate_id.to_string(),
                    });
                }
                // Still not leader after the longest single wait: keep our place by queueing again.
                Err(Error::Timeout { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Tries once to become leader; `Ok(None)` if someone else leads.
    pub async fn try_campaign(&self, candidate_id: &str) -> Result<Option<Leadership>> {
        validate::client_id(candidate_id)?;
        let r = self
            .warden
            .lock(election_resource(&self.name))
            .ttl(self.ttl)
            .client_id(candidate_id)
            .try_acquire()
            .await?;
        Ok(r.map(|guard| Leadership {
            guard,
            name: self.name.clone(),
            candidate_id: candidate_id.to_string(),
        }))
    }

    /// Who leads now, if anyone.
    pub async fn leader(&self) -> Result<Option<LeaderInfo>> {
        let info = self.warden.inspect(&election_resource(&self.name)).await?;
        Ok(info.holders.into_iter().find(|h| !h.expired).map(|h| LeaderInfo {
            candidate_id: h.client_id,
            fencing_token: h.fencing_token,
            lease_handle: h.lease_handle,
            since: h.acquired_at,
            expires_at: h.expires_at,
        }))
    }

    /// Every change of leader, starting with the current one (`None` = nobody leads). A new term of the same
    /// candidate (new fencing token) counts as a change. The stream ends after the first error.
    ///
    /// Where the backend notifies bystanders (a warden server, `http://`: its `GET /api/locks/watch` stream),
    /// each notification makes it look at once and [`Election::observe_every`] is only the fallback; a broken
    /// stream is reopened at the next look. Elsewhere it looks every `observe_every`.
    pub fn observe(&self) -> impl Stream<Item = Result<Option<LeaderInfo>>> + Send + 'static {
        let resource = election_resource(&self.name);
        let changes = self.warden.backend().changes(&resource);
        let state = Observing {
            election: self.clone(),
            resource,
            changes,
            last: None,
            done: false,
        };
        futures::stream::unfold(state, |mut st| async move {
            if st.done {
                return None;
            }
            let mut first = st.last.is_none();
            loop {
                if !first {
                    st.wait_for_news().await;
                }
                first = false;
                match st.election.leader().await {
                    Ok(now) => {
                        let key = now.as_ref().map(|l| l.fencing_token);
                        if st.last != Some(key) {
                            st.last = Some(key);
                            return Some((Ok(now), st));
                        }
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        })
    }
}

/// What [`Election::observe`] carries from one look to the next.
struct Observing {
    election: Election,
    resource: String,
    changes: Option<futures::stream::BoxStream<'static, ()>>,
    /// The last leader's fencing token reported (`Some(None)`: nobody led).
    last: Option<Option<u64>>,
    done: bool,
}

impl Observing {
    /// Until the backend notifies a change or `observe_every` passes.
    async fn wait_for_news(&mut self) {
        let every = self.election.observe_every;
        let Some(changes) = self.changes.as_mut() else {
            tokio::time::sleep(every).await;
            self.changes = self.election.warden.backend().changes(&self.resource);
            return;
        };
        let ended = tokio::select! {
            n = changes.next() => n.is_none(),
            _ = tokio::time::sleep(every) => false,
        };
        if ended {
            self.changes = None;
            tokio::time::sleep(every).await;
            self.changes = self.election.warden.backend().changes(&self.resource);
        }
    }
}

/// Being the leader. Renews itself; [`Leadership::lost`] fires when leadership can no longer be trusted.
/// Dropping it resigns in the background; [`Leadership::resign`] resigns and reports the outcome.
#[derive(Debug)]
pub struct Leadership {
    guard: LockGuard,
    name: String,
    candidate_id: String,
}

impl Leadership {
    /// The election's name.
    pub fn election(&self) -> &str {
        &self.name
    }
    /// This leader's candidate id.
    pub fn candidate_id(&self) -> &str {
        &self.candidate_id
    }
    /// The fencing token of this term: hand it to whatever the leader writes to.
    pub fn fencing_token(&self) -> u64 {
        self.guard.fencing_token()
    }
    /// The lease id of this term.
    pub fn lock_id(&self) -> &str {
        self.guard.lock_id()
    }
    /// Resolves when leadership can no longer be trusted (renewal refused or not confirmed in time).
    pub async fn lost(&self) {
        self.guard.lost().await
    }
    /// Whether leadership is already lost.
    pub fn is_lost(&self) -> bool {
        self.guard.is_lost()
    }
    /// A token cancelled when leadership is lost.
    pub fn lost_token(&self) -> CancellationToken {
        self.guard.lost_token()
    }
    /// Steps down now; the next candidate takes over at once.
    pub async fn resign(mut self) -> Result<()> {
        tracing::debug!(election = %self.name, candidate = %self.candidate_id, "resigning");
        self.guard.release().await
    }
}
