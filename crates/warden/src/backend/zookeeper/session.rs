//! The connection and the session: one ZooKeeper session per process, which every node it creates is
//! ephemeral to. The client keeps it alive and moves to another server when one goes; a session the ensemble
//! expired is replaced by a new one (its nodes are gone, so the leases on them are reported lost). No grant is
//! trusted past what is left of the session as this process last confirmed it.

use super::options::Options;
use crate::error::{Error, Result};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::time::Instant;
use zookeeper_client::{Acls, Client, CreateMode, SessionState};

/// What a ZooKeeper call answers.
pub(crate) type ZkResult<T> = std::result::Result<T, zookeeper_client::Error>;

/// The client and what every call needs.
pub(crate) struct Zk {
    client: RwLock<Client>,
    /// Bumped whenever the session was lost and a new one taken.
    epoch: AtomicU64,
    pub opts: Options,
    link: Mutex<Link>,
    reopened: tokio::sync::Notify,
}

/// The connection as the client last reported it.
#[derive(Debug, Clone, Copy)]
enum Link {
    Up,
    /// Lost at this instant; the session lives on in the ensemble for a while.
    Down(Instant),
    /// The session is gone; a new one is being taken.
    Expired,
}

impl Zk {
    /// Connects, creates the chroot if missing and opens a session, all within the timeout.
    pub async fn connect(opts: Options) -> Result<Arc<Self>> {
        let client = open(&opts).await?;
        Ok(Arc::new(Zk {
            client: RwLock::new(client),
            epoch: AtomicU64::new(0),
            opts,
            link: Mutex::new(Link::Up),
            reopened: tokio::sync::Notify::new(),
        }))
    }

    /// The current client.
    pub fn client(&self) -> Client {
        match self.client.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The current session's number.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// ACLs for the nodes this process creates: its digest user's only, if the URL names one.
    pub fn acls(&self) -> Acls<'static> {
        if self.opts.digest.is_some() {
            Acls::creator_all()
        } else {
            Acls::anyone_all()
        }
    }

    fn link(&self) -> Link {
        self.link.lock().map(|l| *l).unwrap_or(Link::Expired)
    }

    fn set_link(&self, to: Link) {
        if let Ok(mut l) = self.link.lock() {
            *l = match (*l, to) {
                // The first loss counts; later reports do not move it.
                (Link::Down(t), Link::Down(_)) => Link::Down(t),
                _ => to,
            };
        }
    }

    /// How long a grant made now can be trusted at most. The ensemble expires a session it has not heard from
    /// for its timeout; the client notices a silent connection after 2/5 of it, so while connected 3/5 of the
    /// timeout is sure to be left, and less by the time since the connection was lost.
    pub fn session_left(&self) -> Result<Duration> {
        let sure = self.client().session_timeout() * 3 / 5;
        let left = match self.link() {
            Link::Up => sure,
            Link::Down(since) => sure.saturating_sub(since.elapsed()),
            Link::Expired => Duration::ZERO,
        };
        if left < Duration::from_millis(10) {
            return Err(unavailable(
                &self.opts.address,
                "this process's ZooKeeper session is not confirmed alive",
            ));
        }
        Ok(left)
    }

    /// Runs `f` on the current client within the timeout; on a lost connection it waits for the client to
    /// reconnect (or a new session) and runs it again while time is left. The flag says whether it ran more
    /// than once: a write then may have been applied by a try whose answer was lost.
    pub async fn run_counted<T, Fut>(&self, f: impl Fn(Client) -> Fut) -> Result<(T, bool)>
    where
        Fut: Future<Output = ZkResult<T>>,
    {
        let deadline = Instant::now() + self.opts.timeout;
        let mut tries = 0;
        loop {
            tries += 1;
            let client = self.client();
            let e = match tokio::time::timeout_at(deadline, f(client.clone())).await {
                Err(_) => return Err(self.no_answer()),
                Ok(Ok(v)) => return Ok((v, tries > 1)),
                Ok(Err(e)) => e,
            };
            use zookeeper_client::Error as Z;
            match e {
                Z::ConnectionLoss | Z::Timeout => {
                    self.set_link(Link::Down(Instant::now()));
                    let reconnected = async {
                        let mut w = client.state_watcher();
                        while !matches!(client.state(), SessionState::SyncConnected) {
                            if w.changed().await.is_terminated() {
                                self.reopened.notified().await;
                                break;
                            }
                        }
                    };
                    if tokio::time::timeout_at(deadline, reconnected).await.is_err() {
                        return Err(unavailable(
                            &self.opts.address,
                            "lost the connection and found no server",
                        ));
                    }
                }
                Z::SessionExpired | Z::ClientClosed => {
                    let waiting = self.reopened.notified();
                    if self.epoch_of(&client) != self.epoch() {
                        continue;
                    }
                    if tokio::time::timeout_at(deadline, waiting).await.is_err() {
                        return Err(unavailable(&self.opts.address, "the session expired; taking a new one"));
                    }
                }
                other => return Err(failed(&self.opts.address, other)),
            }
        }
    }

    /// Like [`Zk::run_counted`], without the flag.
    pub async fn run<T, Fut>(&self, f: impl Fn(Client) -> Fut) -> Result<T>
    where
        Fut: Future<Output = ZkResult<T>>,
    {
        Ok(self.run_counted(f).await?.0)
    }

    /// A node's data and stat through [`Zk::run`], or `None` if it is gone.
    pub async fn data(&self, path: &str) -> Result<Option<(Vec<u8>, zookeeper_client::Stat)>> {
        self.run(|c| async move {
            match c.get_data(path).await {
                Ok(d) => Ok(Some(d)),
                Err(zookeeper_client::Error::NoNode) => Ok(None),
                Err(e) => Err(e),
            }
        })
        .await
    }

    fn epoch_of(&self, client: &Client) -> u64 {
        if client.session_id() == self.client().session_id() {
            self.epoch()
        } else {
            u64::MAX
        }
    }

    fn no_answer(&self) -> Error {
        unavailable(
            &self.opts.address,
            format!("no answer within {} ms", self.opts.timeout.as_millis()),
        )
    }

    /// Follows the session's state; takes a new session when the ensemble expired the old one. Runs for the
    /// backend's life.
    pub async fn follow(self: Arc<Self>) {
        loop {
            let client = self.client();
            let mut w = client.state_watcher();
            loop {
                match w.changed().await {
                    SessionState::SyncConnected => self.set_link(Link::Up),
                    SessionState::Disconnected | SessionState::ConnectedReadOnly => {
                        self.set_link(Link::Down(Instant::now()))
                    }
                    s if s.is_terminated() => break,
                    _ => {}
                }
            }
            self.set_link(Link::Expired);
            tracing::warn!(address = %self.opts.address, "ZooKeeper session expired; taking a new one");
            let fresh = loop {
                match open(&self.opts).await {
                    Ok(c) => break c,
                    Err(e) => {
                        tracing::debug!(error = %e, "no new ZooKeeper session yet");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            };
            if let Ok(mut c) = self.client.write() {
                *c = fresh;
            }
            self.epoch.fetch_add(1, Ordering::SeqCst);
            self.set_link(Link::Up);
            self.reopened.notify_waiters();
        }
    }
}

/// A session on the ensemble with the chroot and warden's directories in place.
async fn open(opts: &Options) -> Result<Client> {
    let started = async {
        let mut connector = Client::connector()
            .with_session_timeout(opts.session_timeout)
            .with_fail_eagerly();
        if let Some(digest) = &opts.digest {
            connector = connector.with_auth("digest", digest.as_bytes());
        }
        let root = connector.connect(&opts.hosts.join(",")).await?;
        let acls = if opts.digest.is_some() {
            Acls::creator_all()
        } else {
            Acls::anyone_all()
        };
        let dir = CreateMode::Persistent.with_acls(acls);
        root.mkdir(&opts.chroot, &dir).await?;
        let client = root
            .chroot(opts.chroot.clone())
            .map_err(|_| zookeeper_client::Error::BadArguments(&"chroot"))?;
        for d in [super::names::LOCKS, super::names::COUNTS] {
            match client.create(d, b"", &dir).await {
                Ok(_) | Err(zookeeper_client::Error::NodeExists) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(client)
    };
    match tokio::time::timeout(opts.timeout, started).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(failed(&opts.address, e)),
        Err(_) => Err(unavailable(
            &opts.address,
            format!("no answer within {} ms", opts.timeout.as_millis()),
        )),
    }
}

pub(crate) fn unavailable(address: &str, reason: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

/// A ZooKeeper error as warden's, said so that the reader knows what to do.
fn failed(address: &str, e: zookeeper_client::Error) -> Error {
    use zookeeper_client::Error as Z;
    let reason = match e {
        Z::NoHosts | Z::ConnectionLoss => "no server could be reached".to_string(),
        Z::NoAuth | Z::AuthFailed => {
            "not authorized: give the digest user that owns the chroot as zk://user:password@...".to_string()
        }
        Z::Throttled => "the ensemble is overloaded and throttled the call".to_string(),
        Z::SessionExpired => "the session expired".to_string(),
        other => format!("ZooKeeper said: {other}"),
    };
    unavailable(address, reason)
}
