//! The failure envelope `{"success": false, "error": "...", "code": "..."}` and how library errors map onto it.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use warden::wire::{ErrorBody, ErrorCode};

/// An error answered to a client: HTTP status, machine code and a sentence naming what was wrong.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Machine-readable code from the API's error table.
    pub code: ErrorCode,
    /// Human sentence naming the field or condition.
    pub message: String,
    /// The backend node an unavailability names (for the metrics' `node` label).
    pub node: Option<String>,
    /// The request field that was wrong (`invalid_request`), sent as data beside the sentence.
    pub field: Option<String>,
}

impl ApiError {
    /// 400 `invalid_request`.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: ErrorCode::InvalidRequest,
            message: message.into(),
            node: None,
            field: None,
        }
    }

    /// 400 `invalid_request` naming `field`.
    pub fn invalid_field(field: &str, message: impl Into<String>) -> Self {
        ApiError {
            field: Some(field.to_string()),
            ..ApiError::invalid(message)
        }
    }

    /// 404 `not_found` for a lock id.
    pub fn not_found(lock_id: &str) -> Self {
        let shown: String = lock_id.chars().take(80).collect();
        ApiError {
            status: StatusCode::NOT_FOUND,
            code: ErrorCode::NotFound,
            message: format!("no lease with lockId `{shown}`: it never existed, was released, or expired"),
            node: None,
            field: None,
        }
    }

    /// 429 `too_many_waiters`.
    pub fn too_many_waiters(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: ErrorCode::TooManyWaiters,
            message: message.into(),
            node: None,
            field: None,
        }
    }
}

impl From<warden::Error> for ApiError {
    fn from(e: warden::Error) -> Self {
        use warden::Error as E;
        let (status, code) = match &e {
            E::InvalidArgument { .. } | E::Unsupported { .. } => (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest),
            E::Timeout { .. } => (StatusCode::CONFLICT, ErrorCode::LockTimeout),
            E::NotFound { lock_id } => return ApiError::not_found(lock_id),
            E::NotOwner { .. } => (StatusCode::CONFLICT, ErrorCode::NotOwner),
            E::LeaseLost { .. } => (StatusCode::CONFLICT, ErrorCode::LeaseLost),
            E::LimitExceeded { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::TooManyWaiters),
            E::Conflict { .. } => (StatusCode::CONFLICT, ErrorCode::Conflict),
            E::ConditionFailed { .. } => (StatusCode::PRECONDITION_FAILED, ErrorCode::ConditionFailed),
            E::BackendUnavailable { .. }
            | E::ServerBackendUnavailable { .. }
            | E::QuorumUnavailable { .. }
            | E::Protocol(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BackendUnavailable),
            E::ShuttingDown(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::ShuttingDown),
            // This server's own backend is a warden server that refused this server's key.
            E::Unauthorized { .. } | E::Forbidden { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::BackendUnavailable)
            }
            _ => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        };
        let node = match &e {
            E::BackendUnavailable { address, .. } => Some(address.clone()),
            E::ServerBackendUnavailable { server, .. } => Some(server.clone()),
            E::QuorumUnavailable { unreachable, .. } => Some(unreachable.clone()),
            _ => None,
        };
        let field = match &e {
            E::InvalidArgument { field, .. } => Some(field.to_string()),
            _ => None,
        };
        let message = match e {
            // The code already says "shutting down"; the client's error adds those words again.
            E::ShuttingDown(why) => why,
            // The resource is in the request; the reason is the sentence (the client adds the resource back).
            E::Conflict { reason, .. } | E::ConditionFailed { reason, .. } => reason,
            other => other.to_string(),
        };
        ApiError {
            status,
            code,
            message,
            node,
            field,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            let code = self.code.as_str();
            tracing::warn!(code, error = %self.message, "request failed");
            let node = self.node.clone().unwrap_or_else(|| "-".into());
            metrics::counter!("warden_backend_errors_total", "code" => code, "node" => node).increment(1);
        } else {
            // Not the sentence: it may quote the caller's lock id, which no log may show.
            tracing::debug!(
                code = self.code.as_str(),
                status = self.status.as_u16(),
                "request refused"
            );
        }
        let body = ErrorBody {
            success: false,
            error: self.message,
            code: self.code,
            field: self.field,
        };
        (self.status, Json(body)).into_response()
    }
}
