//! One request to the server: sending it, reading the success envelope, and mapping the failure envelope
//! to the library's errors by code and field.

#[allow(unused_imports)]
use super::*;

/// The lease a request named, and the client it named it for: what an error about it reports.
#[derive(Debug, Clone, Copy)]
pub(super) struct About<'a> {
    pub(super) lock_id: &'a str,
    pub(super) client_id: Option<&'a str>,
}

impl<'a> About<'a> {
    pub(super) fn lease(lock_id: &'a str) -> Self {
        About {
            lock_id,
            client_id: None,
        }
    }
}

impl HttpBackend {
    pub(super) fn unavailable(&self, e: reqwest::Error, timeout: Duration) -> Error {
        let reason = if e.is_timeout() {
            format!("no answer within {} ms", timeout.as_millis())
        } else if e.is_connect() && self.base.starts_with("https:") {
            // The causes name what failed (refused connection, unknown CA, wrong name, not TLS at all).
            format!("cannot connect over TLS: {}", causes(&e))
        } else if e.is_connect() && unresolved(&e) {
            "the host name could not be resolved (DNS): check the name in --backend".into()
        } else if e.is_connect() {
            "no warden server answers there: start one with `warden serve` or pass another --backend".into()
        } else {
            format!("request failed: {e}")
        };
        Error::BackendUnavailable {
            address: self.base.clone(),
            reason,
        }
    }

    /// Sends one request; answers the status and the body.
    pub(super) async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Vec<u8>>,
        timeout: Duration,
    ) -> Result<(u16, bytes::Bytes)> {
        let mut rb = self
            .client
            .request(method, format!("{}{}", self.base, path))
            .timeout(timeout);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.header(reqwest::header::CONTENT_TYPE, "application/json").body(b);
        }
        let resp = rb.send().await.map_err(|e| self.unavailable(e, timeout))?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| self.unavailable(e, timeout))?;
        Ok((status, bytes))
    }

    /// The success envelope's `data`.
    pub(super) fn data<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T> {
        serde_json::from_slice::<Success<T>>(bytes)
            .map(|s| s.data)
            .map_err(|e| Error::Protocol(format!("{} sent an answer this client cannot read: {e}", self.base)))
    }

    /// The lease in a success envelope.
    pub(super) fn lease_data(&self, bytes: &[u8], expired: Option<bool>) -> Result<LeaseInfo> {
        let lock: Lock = self.data(bytes)?;
        lock.to_lease(expired)
            .map_err(|e| Error::Protocol(format!("{} sent a lease this client cannot read: {e}", self.base)))
    }

    /// GETs `path` and answers the success envelope's `data`, or the error the failure envelope names.
    pub(super) async fn get_data<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let (status, bytes) = self.call(reqwest::Method::GET, path, None, self.timeout).await?;
        if status != 200 {
            return Err(self.failure(status, &bytes, None));
        }
        self.data(&bytes)
    }

    /// The library's error for a failure envelope; `about` is the lease (and client) the request named.
    pub(super) fn failure(&self, status: u16, bytes: &[u8], about: Option<About<'_>>) -> Error {
        match serde_json::from_slice::<ErrorBody>(bytes) {
            Ok(body) => self.error(status, body, about),
            Err(_) => Error::Protocol(format!(
                "{} answered {status} with a body that is not a warden error: is it a warden server?",
                self.base
            )),
        }
    }

    /// Maps the failure envelope back to the library's error, by its code and field.
    pub(super) fn error(&self, status: u16, body: ErrorBody, about: Option<About<'_>>) -> Error {
        let id = || about.map(|a| a.lock_id).unwrap_or_default().to_string();
        match body.code {
            ErrorCode::InvalidRequest => Error::InvalidArgument {
                field: known_field(body.field.as_deref()),
                reason: body.error,
            },
            ErrorCode::NotFound => Error::NotFound { lock_id: id() },
            ErrorCode::NotOwner => Error::NotOwner {
                lock_id: id(),
                client_id: about.and_then(|a| a.client_id).unwrap_or_default().to_string(),
            },
            ErrorCode::LeaseLost => Error::LeaseLost {
                lock_id: id(),
                resource: String::new(),
            },
            ErrorCode::TooManyWaiters | ErrorCode::RateLimited => Error::LimitExceeded { what: body.error },
            ErrorCode::BackendUnavailable => Error::ServerBackendUnavailable {
                server: self.base.clone(),
                reason: body.error,
            },
            ErrorCode::ShuttingDown => Error::ShuttingDown(body.error),
            ErrorCode::Unauthorized => Error::Unauthorized {
                address: self.base.clone(),
                reason: body.error,
            },
            ErrorCode::Forbidden => Error::Forbidden {
                address: self.base.clone(),
                reason: body.error,
            },
            code => Error::Protocol(format!("{} answered {status} {code}: {}", self.base, body.error)),
        }
    }

    pub(super) async fn acquire_call(&self, req: &AcquireRequest, wait: Duration) -> Result<Option<Grant>> {
        let (lock_type, mode) = req.kind.to_wire();
        let mut body = AcquireBody {
            resource: req.resource.clone(),
            lock_type: Some(lock_type.into()),
            mode: mode.map(Into::into),
            ttl: Some(req.ttl.as_millis() as u64),
            wait_timeout: Some(wait.as_millis() as u64),
            client_id: req.client_id.clone(),
            max_renewals: req.max_renewals,
            max_hold: req.max_hold.map(|h| h.as_millis() as u64),
            permits: (req.kind == crate::types::LockKind::Semaphore).then_some(req.permits),
            if_fencing_token: None,
            if_not_granted_within: None,
            priority: (req.priority != 0).then_some(req.priority),
        };
        body.set_condition(req.condition);
        let (status, bytes) = self
            .call(
                reqwest::Method::POST,
                "/api/locks/acquire",
                Some(to_json(&body)?),
                wait + self.timeout,
            )
            .await?;
        if status == 201 {
            let info = self.lease_data(&bytes, Some(false))?;
            let mut g = Grant::new(info.fencing_token, info.acquired_at, info.expires_at);
            g.lock_id = Some(info.lock_id);
            return Ok(Some(g));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) if b.code == ErrorCode::LockTimeout => Ok(None),
            Ok(b) if b.code == ErrorCode::Conflict => Err(Error::Conflict {
                resource: req.resource.clone(),
                reason: b.error,
            }),
            Ok(b) if b.code == ErrorCode::ConditionFailed => Err(Error::ConditionFailed {
                resource: req.resource.clone(),
                condition: req.condition.map(|c| c.describe()).unwrap_or_default(),
                reason: b.error,
            }),
            Ok(b) => Err(self.error(status, b, None)),
            Err(_) => Err(self.failure(status, &bytes, None)),
        }
    }

    /// The API authorises release and renew by lock id *and* client id. Guards always pass theirs; a caller
    /// holding only a lock id pays one status lookup.
    pub(super) async fn client_for(&self, lock_id: &str, client_id: Option<&str>) -> Result<String> {
        if let Some(c) = client_id {
            return Ok(c.to_string());
        }
        match self.lease(lock_id).await? {
            Some(l) => Ok(l.client_id),
            None => Err(Error::NotFound {
                lock_id: lock_id.to_string(),
            }),
        }
    }
}

/// The library's name for a request field the server named (anything else is the request as a whole).
pub(super) fn known_field(field: Option<&str>) -> &'static str {
    const FIELDS: &[&str] = &[
        "waitTimeout",
        "clientId",
        "lockId",
        "resource",
        "maxHold",
        "maxRenewals",
        "ttl",
        "type",
        "mode",
        "reason",
        "leaseHandle",
        "permits",
        "ifFencingToken",
        "ifNotGrantedWithin",
        "priority",
    ];
    field
        .and_then(|f| FIELDS.iter().find(|k| **k == f))
        .copied()
        .unwrap_or("request")
}

pub(super) fn to_json(body: &impl serde::Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::Protocol(format!("cannot encode a request: {e}")))
}

/// An error and its causes, joined: reqwest's own text stops at "error sending request".
pub(super) fn causes(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(s) = next {
        out.push_str(": ");
        out.push_str(&s.to_string());
        next = s.source();
    }
    out
}

/// Whether a connect error failed at the name lookup (hyper-util's resolver error in the cause chain). Read off
/// the error's type: a `std::io::Error` under a `reqwest` connect error means the socket failed, so this looks for
/// the resolver's own message only when no `io::Error` is there.
fn unresolved(e: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut io = false;
    let mut dns = false;
    while let Some(c) = cause {
        if let Some(ioe) = c.downcast_ref::<std::io::Error>() {
            io = true;
            // getaddrinfo failures reach us as io::Error of kind Other/Uncategorized with no OS code.
            dns |= ioe.raw_os_error().is_none() && ioe.kind() != std::io::ErrorKind::ConnectionRefused;
        }
        cause = c.source();
    }
    io && dns
}
