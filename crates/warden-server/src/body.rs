//! Request bodies are read in full, within a deadline and a size limit, before any handler runs.
//!
//! hyper's header timeout covers request heads only: a client that sends a body one byte at a time would
//! otherwise hold its connection (and a slot under the connection cap) for as long as it likes. A
//! `Content-Length` above the limit is refused before a byte of the body is read.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Duration;
use warden::wire::ErrorCode;

/// The limits [`read_body`] applies.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Largest body accepted (bytes).
    pub max_bytes: usize,
    /// Time allowed to receive the whole body, from the end of the request head.
    pub deadline: Duration,
}

/// An error answer after which the connection is closed (its unread body makes it unusable).
fn closing(e: ApiError) -> Response {
    let mut r = e.into_response();
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

fn too_large(limit: usize) -> Response {
    closing(ApiError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: ErrorCode::InvalidRequest,
        message: format!("request body is larger than the limit of {limit} bytes"),
        node: None,
        field: None,
    })
}

/// Middleware: buffers the body within [`BodyLimits`], then hands the request on.
pub async fn read_body(State(limits): State<BodyLimits>, req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limits.max_bytes as u64) {
        return too_large(limits.max_bytes);
    }
    if declared == Some(0) {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, limits.max_bytes);
    match tokio::time::timeout(limits.deadline, read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
        Ok(Err(e)) => {
            let over = std::error::Error::source(&e).is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if over {
                too_large(limits.max_bytes)
            } else {
                closing(ApiError::invalid(
                    "could not read the request body: the connection failed",
                ))
            }
        }
        Err(_) => {
            metrics::counter!("warden_slow_bodies_total").increment(1);
            closing(ApiError {
                status: StatusCode::REQUEST_TIMEOUT,
                code: ErrorCode::RequestTimeout,
                message: format!(
                    "the request body did not arrive within {} ms; send it in one go",
                    limits.deadline.as_millis()
                ),
                node: None,
                field: None,
            })
        }
    }
}
