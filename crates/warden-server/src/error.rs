//! The failure envelope `{"success": false, "error": "...", "code": "..."}` and how library errors map onto it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answered to a client: HTTP status, machine code and a sentence naming what was wrong.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code from the API's error table.
    pub code: &'static str,
    /// Human sentence naming the field or condition.
    pub message: String,
    /// The backend node an unavailability names (for the metrics' `node` label).
    pub node: Option<String>,
}

impl ApiError {
    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
            node: None,
        }
    }

    /// 404 `not_found` for a lock id.
    pub fn not_found(lock_id: &str) -> Self {
        let shown: String = lock_id.chars().take(80).collect();
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: "not_found",
            message: format!("no lease with lockId `{shown}`: it never existed, was released, or expired"),
            node: None,
        }
    }

    /// 429 `too_many_waiters`.
    pub fn too_many_waiters(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: "too_many_waiters",
            message: message.into(),
            node: None,
        }
    }
}

impl From<warden::Error> for ApiError {
    fn from(e: warden::Error) -> Self {
        use warden::Error as E;
        let (status, code) = match &e {
            E::InvalidArgument { .. } | E::Unsupported { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
            E::Timeout { .. } => (StatusCode::CONFLICT, "lock_timeout"),
            E::NotFound { lock_id } => return ApiError::not_found(lock_id),
            E::NotOwner { .. } => (StatusCode::CONFLICT, "not_owner"),
            E::LeaseLost { .. } => (StatusCode::CONFLICT, "lease_lost"),
            E::LimitExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, "too_many_waiters"),
            E::BackendUnavailable { .. } | E::QuorumUnavailable { .. } | E::Protocol(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable")
            }
            E::ShuttingDown(_) => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            // This server's own backend is a warden server that refused this server's key.
            E::Unauthorized { .. } | E::Forbidden { .. } => (StatusCode::SERVICE_UNAVAILABLE, "backend_unavailable"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let node = match &e {
            E::BackendUnavailable { address, .. } => Some(address.clone()),
            E::QuorumUnavailable { unreachable, .. } => Some(unreachable.clone()),
            _ => None,
        };
        ApiError {
            status,
            code,
            message: e.to_string(),
            node,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(code = self.code, error = %self.message, "request failed");
            let node = self.node.clone().unwrap_or_else(|| "-".into());
            metrics::counter!("warden_backend_errors_total", "code" => self.code, "node" => node).increment(1);
        } else {
            // Not the sentence: it may quote the caller's lock id, which no log may show.
            tracing::debug!(code = self.code, status = self.status.as_u16(), "request refused");
        }
        let body = serde_json::json!({ "success": false, "error": self.message, "code": self.code });
        (self.status, Json(body)).into_response()
    }
}
