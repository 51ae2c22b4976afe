//! `GET /api/events`: the audit trail as a live Server-Sent Events stream.

use crate::audit::Published;
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
use tokio::sync::broadcast::error::RecvError;

/// Query of `GET /api/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events on resources starting with this.
    prefix: Option<String>,
}

/// Counts live readers in `warden_event_readers` for as long as the stream lives.
struct Reader;

impl Reader {
    fn new() -> Self {
        metrics::gauge!("warden_event_readers").increment(1.0);
        Reader
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        metrics::gauge!("warden_event_readers").decrement(1.0);
    }
}

/// Every grant, release, refused renewal, expiry, force-release and refused request from now on, one JSON
/// object per `data:` line (lease handles, never lock ids). Observers and admins see everything; a client
/// sees the events on resources in its namespaces. A reader that falls more than
/// [`crate::audit::STREAM_BUFFER`] events behind gets one `dropped` event and is disconnected: it never
/// slows the lock path.
#[utoipa::path(get, path = "/api/events", tag = "monitoring",
    params(("prefix" = Option<String>, Query, description = "Only events on resources starting with this")),
    responses((status = 200, description = "text/event-stream of audit events", body = String, content_type = "text/event-stream"),
              (status = 401, description = "unauthorized", body = crate::dto::ErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    q: Result<Query<EventsQuery>, QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return ApiError::invalid("invalid query string: the only parameter is `prefix`").into_response();
    };
    if let Some(p) = &q.prefix {
        if let Err(e) = warden::validate::resource(p) {
            return ApiError::from(e).into_response();
        }
    }
    let visible = move |p: &Published| -> bool {
        let in_prefix = match (&q.prefix, &p.resource) {
            (None, _) => true,
            (Some(pre), Some(r)) => r.starts_with(pre.as_str()),
            (Some(_), None) => false,
        };
        in_prefix
            && match (&caller, &p.resource) {
                (c, _) if c.sees_all() => true,
                (Caller::Key(k), Some(r)) => k.owns(r),
                _ => false,
            }
    };
    let rx = state.audit().subscribe();
    let stream = futures::stream::unfold((rx, Reader::new(), false), move |(mut rx, reader, done)| {
        let visible = visible.clone();
        async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(p) if visible(&p) => {
                        let ev = SseEvent::default().data(p.json.as_str());
                        return Some((Ok::<_, Infallible>(ev), (rx, reader, false)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        metrics::counter!("warden_event_readers_dropped_total").increment(1);
                        let ev = SseEvent::default().event("dropped").data(format!(
                            "{{\"reason\":\"this reader fell {n} events behind; reconnect\"}}"
                        ));
                        return Some((Ok(ev), (rx, reader, true)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    });
    let stop = state.shutdown_token().clone().cancelled_owned();
    Sse::new(stream.take_until(stop))
        .keep_alive(KeepAlive::default())
        .into_response()
}
