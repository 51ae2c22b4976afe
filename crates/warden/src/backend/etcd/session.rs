//! The connection and the session: one etcd lease per process that every key it writes hangs on, kept alive
//! in the background. A process that dies or loses etcd loses its keys when the lease runs out; until then,
//! no grant of this process may be trusted past the lease's confirmed end.

use super::options::Options;
use crate::error::{Error, Result};
use etcd_client::{Client, ConnectOptions};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// The clients and what every call needs.
///
/// One client per member rather than one balanced over all: a balanced channel keeps sending some calls to a
/// member that died. Calls go to the current member; one that cannot be reached or has no leader moves every
/// call on to the next member, and the call is tried there within its time budget.
pub(crate) struct Etcd {
    clients: Vec<Client>,
    current: AtomicUsize,
    pub opts: Options,
    session: Mutex<Session>,
}

/// This process's etcd lease.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Session {
    pub id: i64,
    /// Until when etcd keeps it at least: the send time of the last confirmed keep-alive plus its ttl.
    pub until: Instant,
    /// Bumped whenever the lease was lost and a new one taken.
    pub epoch: u64,
}

impl Etcd {
    /// Connects, checks that the cluster answers and takes a session lease, all within the timeout.
    pub async fn connect(opts: Options) -> Result<Arc<Self>> {
        let mut co = ConnectOptions::new()
            .with_connect_timeout(opts.timeout / 2)
            .with_timeout(opts.timeout)
            .with_keep_alive(Duration::from_secs(2), opts.timeout)
            .with_require_leader(true);
        if let Some((user, password)) = &opts.user {
            co = co.with_user(user.clone(), password.clone());
        }
        if let Some(tls) = &opts.tls {
            co = co.with_tls(tls_options(tls)?);
        }
        let address = opts.address.clone();
        let timeout = opts.timeout;
        let opts_tls = opts.tls.clone();
        let first_endpoint = opts.endpoints.first().cloned().unwrap_or_default();
        let started = async {
            let mut clients = Vec::new();
            for ep in &opts.endpoints {
                // Connects lazily: a member down now is tried when a call gets to it.
                clients.push(
                    Client::connect([ep], Some(co.clone()))
                        .await
                        .map_err(|e| failed(&address, e))?,
                );
            }
            let etcd = Etcd {
                clients,
                current: AtomicUsize::new(0),
                session: Mutex::new(Session {
                    id: 0,
                    until: Instant::now(),
                    epoch: 0,
                }),
                opts,
            };
            etcd.new_session().await?;
            Ok::<_, Error>(etcd)
        };
        let tls = opts_tls.clone();
        let first = first_endpoint.clone();
        match tokio::time::timeout(timeout, started).await {
            Ok(Ok(etcd)) => Ok(Arc::new(etcd)),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                // The client retries connections quietly; a TLS failure is told by connecting once ourselves.
                let why = match tls {
                    Some(tls) => handshake_failure(&first, &tls, timeout).await,
                    None => None,
                };
                Err(unavailable(
                    &address,
                    why.unwrap_or_else(|| format!("no answer within {} ms", timeout.as_millis())),
                ))
            }
        }
    }

    /// The current session.
    pub fn session(&self) -> Session {
        self.session.lock().map(|s| *s).unwrap_or(Session {
            id: 0,
            until: Instant::now(),
            epoch: 0,
        })
    }

    /// How long a grant made now can be trusted at most: what is left of the session.
    pub fn session_left(&self) -> Result<(i64, Duration)> {
        let s = self.session();
        let left = s.until.saturating_duration_since(Instant::now());
        if left < Duration::from_millis(10) {
            return Err(unavailable(
                &self.opts.address,
                "this process's etcd session lease is not confirmed alive",
            ));
        }
        Ok((s.id, left))
    }

    /// Takes a fresh session lease (at connect, and when etcd says the old one is gone).
    async fn new_session(&self) -> Result<()> {
        let sent = Instant::now();
        let ttl = self.opts.session_ttl.as_secs() as i64;
        let r = self
            .call(|c| async move { c.lease_client().grant(ttl, None).await })
            .await?;
        if let Ok(mut s) = self.session.lock() {
            *s = Session {
                id: r.id(),
                until: sent + Duration::from_secs(r.ttl().max(0) as u64),
                epoch: s.epoch + 1,
            };
        }
        Ok(())
    }

    /// Keeps the session alive every third of its ttl; takes a new one if etcd dropped it (this process's
    /// keys went with it). Runs until the backend is dropped.
    pub async fn keep_alive(self: Arc<Self>) {
        let every = self.opts.session_ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            let s = self.session();
            let sent = Instant::now();
            match self.keep_alive_once(s.id).await {
                Ok(ttl) if ttl > 0 => {
                    if let Ok(mut cur) = self.session.lock() {
                        if cur.id == s.id {
                            cur.until = sent + Duration::from_secs(ttl as u64);
                        }
                    }
                }
                Ok(_) => {
                    tracing::warn!(address = %self.opts.address, "etcd session lease expired; its locks are gone, taking a new one");
                    if let Err(e) = self.new_session().await {
                        tracing::warn!(error = %e, "could not take a new etcd session lease");
                    }
                }
                Err(e) => tracing::debug!(error = %e, "etcd session keep-alive failed"),
            }
        }
    }

    async fn keep_alive_once(&self, id: i64) -> Result<i64> {
        self.call(|c| async move {
            let (mut keeper, mut stream) = c.lease_client().keep_alive(id).await?;
            keeper.keep_alive().await?;
            Ok::<_, etcd_client::Error>(stream.message().await?.map_or(0, |r| r.ttl()))
        })
        .await
    }

    /// The client of the member calls go to now.
    pub fn client(&self) -> Client {
        let i = self.current.load(Ordering::Relaxed) % self.clients.len();
        self.clients[i].clone()
    }

    /// Moves calls on from the current member (a stream through it broke).
    pub fn move_on_from_current(&self) {
        self.move_on(self.current.load(Ordering::Relaxed) % self.clients.len());
    }

    /// Moves calls on from member `i` (it failed), unless another call did already.
    fn move_on(&self, from: usize) {
        let _ = self.current.compare_exchange(
            from,
            (from + 1) % self.clients.len(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Runs one etcd call within the timeout, on the current member, and on the next ones while a member
    /// cannot be reached or has no leader (every call warden makes is safe to repeat: each is conditional on
    /// revisions, and an attempt finds its own key if a first try went through). Failure is
    /// [`Error::BackendUnavailable`] naming the cluster.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        self.call_counted(f).await.map(|(v, _)| v)
    }

    /// [`Etcd::call`], also saying whether the answer came from a repeat after a try whose outcome is unknown
    /// (the first may have been applied).
    pub async fn call_counted<T, F, Fut>(&self, f: F) -> Result<(T, bool)>
    where
        F: Fn(Client) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
    {
        let deadline = Instant::now() + self.opts.timeout;
        let mut last = None;
        let members = self.clients.len();
        for n in 1usize.. {
            if Instant::now() >= deadline {
                break;
            }
            if n > members && n % members == 1 {
                // Every member said it cannot answer (an election under way): wait a moment, within budget.
                tokio::time::sleep_until((Instant::now() + Duration::from_millis(25)).min(deadline)).await;
            }
            let i = self.current.load(Ordering::Relaxed) % members;
            // Half of what is left when other members could answer: a member that died mid-call (its
            // connection not yet known broken) costs part of the budget, not all of it.
            let now = Instant::now();
            let left = deadline.saturating_duration_since(now);
            let until = if members > 1 && left > Duration::from_millis(100) {
                now + left / 2
            } else {
                deadline
            };
            match tokio::time::timeout_at(until, f(self.clients[i].clone())).await {
                Ok(Ok(v)) => return Ok((v, n > 1)),
                Ok(Err(e)) if elsewhere(&e) => {
                    self.move_on(i);
                    last = Some(e);
                }
                Ok(Err(e)) => return Err(failed(&self.opts.address, e)),
                Err(_) => {
                    // A member that stalls: this call and the next ones go to another one.
                    self.move_on(i);
                }
            }
        }
        Err(match last {
            Some(e) => failed(&self.opts.address, e),
            None => unavailable(
                &self.opts.address,
                format!("no answer within {} ms", self.opts.timeout.as_millis()),
            ),
        })
    }

    /// A read through [`Etcd::call`].
    pub async fn get(
        &self,
        key: impl Into<Vec<u8>>,
        opts: Option<etcd_client::GetOptions>,
    ) -> Result<etcd_client::GetResponse> {
        let key = key.into();
        self.call(|c| {
            let (key, opts) = (key.clone(), opts.clone());
            async move { c.kv_client().get(key, opts).await }
        })
        .await
    }

    /// A transaction through [`Etcd::call`].
    pub async fn txn(&self, txn: etcd_client::Txn) -> Result<etcd_client::TxnResponse> {
        self.txn_counted(txn).await.map(|(r, _)| r)
    }

    /// A transaction through [`Etcd::call_counted`].
    pub async fn txn_counted(&self, txn: etcd_client::Txn) -> Result<(etcd_client::TxnResponse, bool)> {
        self.call_counted(|c| {
            let txn = txn.clone();
            async move { c.kv_client().txn(txn).await }
        })
        .await
    }

    /// Revokes the session at shutdown, so this process's keys go at once rather than at its end.
    pub async fn close(&self) {
        let id = self.session().id;
        let _ = self.call(|c| async move { c.lease_client().revoke(id).await }).await;
    }
}

/// Connects once to `endpoint` with the TLS settings, and says why the handshake failed, if it did.
async fn handshake_failure(endpoint: &str, tls: &super::options::Tls, timeout: Duration) -> Option<String> {
    let config = tls_options(tls).ok()?;
    let ep = tonic::transport::Endpoint::from_shared(endpoint.to_string())
        .ok()?
        .tls_config(config)
        .ok()?
        .connect_timeout(timeout);
    let e = ep.connect().await.err()?;
    tls_failure(&e).map(|why| format!("TLS handshake failed: {why} (check ca= and identity=)"))
}

/// The client's TLS settings: the members' CA, and its own certificate and key if given.
fn tls_options(tls: &super::options::Tls) -> Result<etcd_client::TlsOptions> {
    let read = |field: &'static str, path: &str| {
        std::fs::read(path).map_err(|e| Error::invalid(field, format!("cannot read {path}: {e}")))
    };
    let mut o = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(read("ca", &tls.ca)?));
    if let Some(path) = &tls.identity {
        // One PEM file with both: the certificate blocks are read as the certificate, the key block as the key.
        let pem = read("identity", path)?;
        o = o.identity(etcd_client::Identity::from_pem(&pem, &pem));
    }
    Ok(o)
}

pub(crate) fn unavailable(address: &str, reason: impl std::fmt::Display) -> Error {
    Error::BackendUnavailable {
        address: address.to_string(),
        reason: reason.to_string(),
    }
}

/// Whether another member may answer what this one could not: it is unreachable, or has no leader.
fn elsewhere(e: &etcd_client::Error) -> bool {
    match e {
        etcd_client::Error::GRpcStatus(s) => s.code() == tonic_code::Unavailable,
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        _ => false,
    }
}

/// A failed etcd call. gRPC errors are classified by their status code, TLS failures by the type of their
/// cause, never by their text.
fn failed(address: &str, e: etcd_client::Error) -> Error {
    let cause: Option<&(dyn std::error::Error + 'static)> = match &e {
        etcd_client::Error::GRpcStatus(s) => Some(s),
        etcd_client::Error::TransportError(t) => Some(t),
        etcd_client::Error::IoError(io) => Some(io),
        _ => None,
    };
    if let Some(why) = cause.and_then(tls_failure) {
        return unavailable(
            address,
            format!("TLS handshake failed: {why} (check ca= and identity=)"),
        );
    }
    let reason = match &e {
        etcd_client::Error::GRpcStatus(s) => match s.code() {
            tonic_code::Unavailable => "unreachable or without a leader".to_string(),
            tonic_code::DeadlineExceeded => "timed out".to_string(),
            tonic_code::Unauthenticated | tonic_code::PermissionDenied => {
                "refused the credentials (check the URL's user and password)".to_string()
            }
            code => format!("failed: {code:?}"),
        },
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => {
            "unreachable (connection failed)".to_string()
        }
        other => format!("failed: {other}"),
    };
    unavailable(address, reason)
}

/// The TLS error somewhere in an error's chain of causes (found by type), as a sentence.
fn tls_failure(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(inner) = err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            if let Some(t) = inner.downcast_ref::<rustls::Error>() {
                return Some(t.to_string());
            }
        }
        cur = err.source();
    }
    None
}

/// The gRPC status codes, under a short name.
mod tonic_code {
    pub use tonic::Code::*;
}
