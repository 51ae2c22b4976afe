//! `GET /api/locks/watch?resource=`: one resource's grants, lease ends and queue changes as a live
//! Server-Sent Events stream (`?prefix=`: this instance's audit events on the resources under a prefix).

use crate::caller::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::Deserialize;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use warden::watch::Change;

/// Query of `GET /api/locks/watch`.
#[derive(Debug, Deserialize)]
pub struct WatchQuery {
    /// The resource to watch.
    resource: Option<String>,
    /// Or: every resource starting with this (this instance's audit events).
    prefix: Option<String>,
    /// How often to look for changes made through other instances, ms (50..=60000, default 1000).
    interval: Option<u64>,
}

/// Stops the task that nudges a watch when the watch's stream is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One SSE event per change: `snapshot` (the resource's view, as `GET /api/locks/queue`), then `granted` and
/// `ended` (a lease by its handle, as the views show it), `queue` (the waiters now) and `error` (the backend
/// did not answer; the watch goes on). Changes made through this instance show at once; those made through
/// other instances within `interval`.
#[utoipa::path(get, path = "/api/locks/watch", tag = "monitoring",
    params(("resource" = Option<String>, Query, description = "The resource to watch"),
           ("prefix" = Option<String>, Query, description = "Or: this instance's audit events on resources starting with this"),
           ("interval" = Option<u64>, Query, description = "How often to look for changes made through other instances, ms (50..=60000, default 1000)")),
    responses((status = 200, description = "text/event-stream of changes", body = String, content_type = "text/event-stream"),
              (status = 400, description = "invalid query", body = crate::dto::ErrorBody),
              (status = 403, description = "not in the caller's namespaces", body = crate::dto::ErrorBody)))]
pub async fn watch(state: State<AppState>, caller: Caller, q: Result<Query<WatchQuery>, QueryRejection>) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::invalid("invalid query string: use resource=NAME or prefix=PREFIX, and interval=MS")
            .into_response();
    };
    let interval = match q.interval {
        None => Duration::from_secs(1),
        Some(ms) if (50..=60_000).contains(&ms) => Duration::from_millis(ms),
        Some(_) => return ApiError::invalid_field("interval", "must be 50..=60000 ms").into_response(),
    };
    let resource = match (q.resource, q.prefix) {
        (Some(r), None) => r,
        (None, Some(p)) => {
            let query = Query(crate::events::EventsQuery::with_prefix(p));
            return crate::events::events(state, caller, Ok(query)).await;
        }
        _ => return ApiError::invalid("give either resource=NAME or prefix=PREFIX").into_response(),
    };
    if let Err(e) = warden::validate::resource(&resource) {
        return ApiError::from(e).into_response();
    }
    if let Err(e) = caller.may_inspect(&resource) {
        return e.into_response();
    }
    // This instance's own grants, releases and expiries on the resource: look again at once.
    let nudge = Arc::new(tokio::sync::Notify::new());
    let mut audit = state.audit().subscribe();
    let (n, r) = (nudge.clone(), resource.clone());
    let nudger = AbortOnDrop(tokio::spawn(async move {
        loop {
            match audit.recv().await {
                Ok(p) if p.resource.as_deref() == Some(r.as_str()) => n.notify_one(),
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            }
        }
    }));
    let changes = state.warden().watch(&resource, interval, Some(nudge));
    let stream = changes.map(move |c| {
        let _keep = &nudger;
        Ok::<_, Infallible>(frame(c))
    });
    let stop = state.shutdown_token().clone().cancelled_owned();
    Sse::new(stream.take_until(stop))
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn frame(c: warden::Result<Change>) -> SseEvent {
    match c {
        Ok(c) => {
            let (event, data) = warden::wire::watch_change(&c);
            SseEvent::default().event(event).data(data.to_string())
        }
        Err(e) => SseEvent::default()
            .event("error")
            .data(serde_json::json!({"error": e.to_string()}).to_string()),
    }
}
