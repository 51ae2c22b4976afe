//! Who is calling: the bearer key checked once per request, and what its principal may do.
//!
//! Without an auth file every caller is [`Caller::Open`] and may do anything (the server then listens on
//! loopback only, unless told otherwise). With one, each request must carry `Authorization: Bearer <key>`;
//! the key's principal acts only as its own clients: the server binds every `clientId` it is sent to
//! `principal/clientId`, so one tenant cannot release, renew or list another's leases even with a leaked lock
//! id, and strips the prefix again in the answers to that principal.

use crate::audit::Event;
use crate::auth::{Principal, Role};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use warden::wire::ErrorCode;

/// The caller of one request.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Caller {
    /// The server has no auth file: everyone may do everything.
    Open,
    /// A known key's principal.
    Key(Arc<Principal>),
}

/// Paths anyone may call also with auth on: load balancers' probes, the API document and the dashboard's assets
/// (the page holds no data; it asks its user for a key).
const PUBLIC: &[&str] = &["/health", "/livez", "/readyz", "/openapi.json"];

fn public(path: &str) -> bool {
    PUBLIC.contains(&path) || crate::dashboard::PATHS.contains(&path)
}

/// Middleware: checks the bearer key (when the server has an auth file) and hands the caller to handlers.
pub async fn authenticate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let caller = match state.auth() {
        None => Caller::Open,
        Some(_) if public(req.uri().path()) => return next.run(req).await,
        Some(auth) => {
            let key = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
                .map(str::trim);
            match key.map(|k| (k, auth.principal(k))) {
                Some((_, Some(p))) => Caller::Key(p),
                Some((_, None)) => return refuse(&state, "unknown_key", &req),
                None => return refuse(&state, "missing_key", &req),
            }
        }
    };
    if let (Caller::Key(p), Some(limit)) = (&caller, &state.config().rate_limit) {
        if let Err(wait) = limit.take(&p.name) {
            return rate_limited(&state, &p.name, wait, &req);
        }
    }
    let principal = caller.name().to_string();
    req.extensions_mut().insert(caller);
    let path = req.uri().path().to_string();
    let response = next.run(req).await;
    if response.status() == StatusCode::FORBIDDEN {
        // Counted and logged where it was refused; the trail gets it here, where the state is.
        state.audit().emit(
            Event::new("auth_failure", &principal)
                .outcome("forbidden")
                .detail(short(&path)),
        );
    }
    response
}

fn rate_limited(state: &AppState, principal: &str, wait: std::time::Duration, req: &Request) -> Response {
    metrics::counter!("warden_rate_limited_total").increment(1);
    state.audit().emit(
        Event::new("auth_failure", principal)
            .outcome("rate_limited")
            .detail(short(req.uri().path())),
    );
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut r = ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        code: ErrorCode::RateLimited,
        message: format!(
            "principal `{principal}` is over its request rate; retry in {} ms",
            wait.as_millis().max(1)
        ),
        node: None,
        field: None,
    }
    .into_response();
    if let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn short(path: &str) -> String {
    path.chars().take(100).collect()
}

fn refuse(state: &AppState, reason: &'static str, req: &Request) -> Response {
    auth_failure(reason, None, req.uri().path());
    state.audit().emit(
        Event::new("auth_failure", "-")
            .outcome(reason)
            .detail(short(req.uri().path())),
    );
    let status = StatusCode::UNAUTHORIZED;
    let message = match reason {
        "missing_key" => "this server requires an API key: send `Authorization: Bearer <key>` (the CLI and the \
                          http backend take it from WARDEN_TOKEN or --token)"
            .to_string(),
        _ => "the API key is not known to this server (revoked, mistyped, or meant for another server)".to_string(),
    };
    ApiError {
        status,
        code: ErrorCode::Unauthorized,
        message,
        node: None,
        field: None,
    }
    .into_response()
}

/// Counts and logs a refused request, never with its key.
fn auth_failure(reason: &'static str, principal: Option<&str>, path: &str) {
    metrics::counter!("warden_auth_failures_total", "reason" => reason).increment(1);
    let path: String = path.chars().take(100).collect();
    tracing::info!(reason, principal = principal.unwrap_or("-"), path = %path, "request refused by auth");
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The middleware runs on every route; a route without it would be a bug, refused rather than open.
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| ApiError {
            status: StatusCode::UNAUTHORIZED,
            code: ErrorCode::Unauthorized,
            message: "this request was not authenticated".into(),
            node: None,
            field: None,
        })
    }
}

impl Caller {
    /// The principal's name, or `-` for an open server.
    pub fn name(&self) -> &str {
        match self {
            Caller::Open => "-",
            Caller::Key(p) => &p.name,
        }
    }

    fn forbid(&self, what: String) -> ApiError {
        auth_failure("forbidden", Some(self.name()), "-");
        ApiError {
            status: StatusCode::FORBIDDEN,
            code: ErrorCode::Forbidden,
            message: what,
            node: None,
            field: None,
        }
    }

    /// The client id the backend stores for `client_id` sent by this caller.
    pub fn bind(&self, client_id: &str) -> Result<String, ApiError> {
        warden::validate::client_id(client_id)?;
        match self {
            Caller::Open => Ok(client_id.to_string()),
            Caller::Key(p) => {
                let bound = format!("{}/{client_id}", p.name);
                let max = warden::validate::MAX_CLIENT_ID_BYTES - p.name.len() - 1;
                if bound.len() > warden::validate::MAX_CLIENT_ID_BYTES {
                    return Err(ApiError::invalid(format!(
                        "`clientId` must be 1..={max} bytes for principal `{}` (the server prefixes it with the \
                         principal), got {} bytes",
                        p.name,
                        client_id.len()
                    )));
                }
                Ok(bound)
            }
        }
    }

    /// A stored client id as this caller sent it: its own prefix removed.
    pub fn unbind<'a>(&self, stored: &'a str) -> &'a str {
        match self {
            Caller::Open => stored,
            Caller::Key(p) => stored
                .strip_prefix(p.name.as_str())
                .and_then(|s| s.strip_prefix('/'))
                .unwrap_or(stored),
        }
    }

    /// Whether a lease stored for `stored` client id is this caller's own.
    pub fn owns_client(&self, stored: &str) -> bool {
        match self {
            Caller::Open => false,
            Caller::Key(p) => stored.strip_prefix(p.name.as_str()).is_some_and(|s| s.starts_with('/')),
        }
    }

    /// May lock `resource` (acquire).
    pub fn may_lock(&self, resource: &str) -> Result<(), ApiError> {
        match self {
            Caller::Open => Ok(()),
            Caller::Key(p) if p.may_lock(resource) => Ok(()),
            Caller::Key(p) if p.role == Role::Observer => Err(self.forbid(format!(
                "principal `{}` is an observer: it may read views but not lock",
                p.name
            ))),
            Caller::Key(p) => Err(self.forbid(format!(
                "principal `{}` may not lock this resource: its namespaces are {}",
                p.name,
                p.namespaces.join(", ")
            ))),
        }
    }

    /// May release or renew its own leases.
    pub fn may_hold(&self) -> Result<(), ApiError> {
        match self {
            Caller::Key(p) if p.role == Role::Observer => Err(self.forbid(format!(
                "principal `{}` is an observer: it holds no leases to release or renew",
                p.name
            ))),
            _ => Ok(()),
        }
    }

    /// May read a resource's queue and holders.
    pub fn may_inspect(&self, resource: &str) -> Result<(), ApiError> {
        match self {
            Caller::Key(p) if !p.sees_all() && !p.owns(resource) => Err(self.forbid(format!(
                "principal `{}` may only inspect resources in its namespaces: {}",
                p.name,
                p.namespaces.join(", ")
            ))),
            _ => Ok(()),
        }
    }

    /// May read server-wide views (stats, metrics, events, other clients' leases).
    pub fn may_observe(&self) -> Result<(), ApiError> {
        match self {
            Caller::Key(p) if !p.sees_all() => Err(self.forbid(format!(
                "principal `{}` has role client: server-wide views need role observer or admin",
                p.name
            ))),
            _ => Ok(()),
        }
    }

    /// May end anyone's lease.
    pub fn may_force(&self) -> Result<(), ApiError> {
        match self {
            Caller::Key(p) if p.role != Role::Admin => Err(self.forbid(format!(
                "principal `{}` has role {}: force-release needs role admin",
                p.name,
                p.role.as_str()
            ))),
            _ => Ok(()),
        }
    }

    /// Whether this caller sees server-wide views with everyone's client ids (open servers, observers,
    /// admins).
    pub fn sees_all(&self) -> bool {
        match self {
            Caller::Open => true,
            Caller::Key(p) => p.sees_all(),
        }
    }
}
