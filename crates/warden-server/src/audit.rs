//! The audit trail: one event per grant, release, refused renewal, expiry, force-release and refused request,
//! written as JSON lines (a file or stdout) and fanned out to live `GET /api/events` readers.
//!
//! Nothing here can slow the lock path: an event is built only when someone listens, handed to a broadcast
//! ring (readers that fall a ring behind are dropped) and to a bounded queue for the writer task (events that
//! find it full are counted in `warden_audit_dropped_total`, never waited for).

use serde::Serialize;
use std::sync::Arc;
use tokio::io::AsyncWriteExt;
use tokio::sync::{broadcast, mpsc};

/// Events held for live readers; a reader this far behind is dropped.
pub const STREAM_BUFFER: usize = 4096;
/// Events queued for the audit log writer before new ones are dropped (and counted).
const WRITER_QUEUE: usize = 65_536;

/// One audit event. Lease handles only: never a lock id, never a key.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Event {
    /// RFC 3339 UTC with milliseconds.
    pub time: String,
    /// `grant`, `release`, `renew_refused`, `expiry`, `force_release` or `auth_failure`.
    pub kind: &'static str,
    /// The principal that acted (`-` without auth; for an expiry, the holder's).
    pub principal: String,
    /// The client id as stored (bound to its principal under auth).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The resource.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// The lease's handle.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease_handle: Option<String>,
    /// The lease's fencing token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fence: Option<u64>,
    /// `ok`, or the refusal's code / reason (`not_owner`, `missing_key`, `forbidden`, ...).
    pub outcome: String,
    /// The reason an admin gave, or the refused path.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Event {
    /// An event of `kind` by `principal` with outcome `ok`, stamped now.
    pub fn new(kind: &'static str, principal: &str) -> Self {
        Event {
            time: crate::dto::rfc3339(std::time::SystemTime::now()),
            kind,
            principal: principal.to_string(),
            client_id: None,
            resource: None,
            lease_handle: None,
            fence: None,
            outcome: "ok".into(),
            detail: None,
        }
    }

    /// With the lease's fields.
    pub fn lease(mut self, l: &warden::LeaseInfo) -> Self {
        self.client_id = Some(l.client_id.clone());
        self.resource = Some(l.resource.clone());
        self.lease_handle = Some(l.lease_handle.clone());
        self.fence = Some(l.fencing_token);
        self
    }

    /// With an outcome other than `ok`.
    pub fn outcome(mut self, outcome: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self
    }

    /// With a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// An event on its way to live readers: its resource (for filtering) and its JSON.
#[derive(Debug)]
pub struct Published {
    /// The event's resource, if any.
    pub resource: Option<String>,
    /// The principal that acted.
    pub principal: String,
    /// The event as one JSON object.
    pub json: String,
}

/// Where events go.
#[derive(Debug)]
pub struct Audit {
    stream: broadcast::Sender<Arc<Published>>,
    log: Option<mpsc::Sender<Arc<Published>>>,
}

/// Where the audit log goes.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuditLog {
    /// No log; live readers only.
    Off,
    /// JSON lines on stdout.
    Stdout,
    /// JSON lines appended to this file.
    File(std::path::PathBuf),
}

impl Audit {
    /// Live readers only.
    pub fn off() -> Self {
        Audit {
            stream: broadcast::channel(STREAM_BUFFER).0,
            log: None,
        }
    }

    /// The trail, with its writer task (needs a Tokio runtime when `log` is not [`AuditLog::Off`]).
    pub fn start(log: &AuditLog) -> std::io::Result<Self> {
        let log = match log {
            AuditLog::Off => return Ok(Audit::off()),
            AuditLog::Stdout => Some(spawn_writer(Box::new(tokio::io::stdout()))),
            AuditLog::File(path) => {
                let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
                Some(spawn_writer(Box::new(tokio::fs::File::from_std(file))))
            }
        };
        Ok(Audit {
            stream: broadcast::channel(STREAM_BUFFER).0,
            log,
        })
    }

    /// Whether anyone listens: callers skip building events otherwise.
    pub fn active(&self) -> bool {
        self.log.is_some() || self.stream.receiver_count() > 0
    }

    /// Hands `event` on without waiting.
    pub fn emit(&self, event: Event) {
        if !self.active() {
            return;
        }
        let json = match serde_json::to_string(&event) {
            Ok(j) => j,
            Err(_) => return, // plain strings and numbers always serialise
        };
        let p = Arc::new(Published {
            resource: event.resource,
            principal: event.principal,
            json,
        });
        if let Some(log) = &self.log {
            if log.try_send(p.clone()).is_err() {
                metrics::counter!("warden_audit_dropped_total").increment(1);
            }
        }
        let _ = self.stream.send(p);
    }

    /// A new live reader.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        self.stream.subscribe()
    }
}

fn spawn_writer(mut out: Box<dyn tokio::io::AsyncWrite + Send + Unpin>) -> mpsc::Sender<Arc<Published>> {
    let (tx, mut rx) = mpsc::channel::<Arc<Published>>(WRITER_QUEUE);
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(first) = rx.recv().await {
            buf.clear();
            buf.extend_from_slice(first.json.as_bytes());
            buf.push(b'\n');
            // Whatever else is queued goes out in the same write.
            while let Ok(next) = rx.try_recv() {
                buf.extend_from_slice(next.json.as_bytes());
                buf.push(b'\n');
                if buf.len() > 60 * 1024 {
                    break;
                }
            }
            if let Err(e) = async {
                out.write_all(&buf).await?;
                out.flush().await
            }
            .await
            {
                tracing::error!(error = %e, "cannot write the audit log; events are being dropped");
                metrics::counter!("warden_audit_dropped_total").increment(1);
            }
        }
    });
    tx
}
