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
use std::sync::Arc;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

/// Query of `GET /api/events`.
#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    /// Only events on resources starting with this.
    prefix: Option<String>,
}

impl EventsQuery {
    /// The events on resources starting with `prefix`.
    pub fn with_prefix(prefix: String) -> Self {
        EventsQuery { prefix: Some(prefix) }
    }
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
    let stream = reader(state.audit().subscribe(), visible).map(|frame| {
        Ok::<_, Infallible>(match frame {
            Frame::Event(p) => SseEvent::default().data(p.json.as_str()),
            Frame::Dropped(n) => SseEvent::default().event("dropped").data(format!(
                "{{\"reason\":\"this reader fell {n} events behind; reconnect\"}}"
            )),
        })
    });
    let stop = state.shutdown_token().clone().cancelled_owned();
    Sse::new(stream.take_until(stop))
        .keep_alive(KeepAlive::default())
        .into_response()
}

/// What a live reader gets.
#[derive(Debug)]
enum Frame {
    /// An event it may see.
    Event(Arc<Published>),
    /// It fell this many events behind; nothing follows.
    Dropped(u64),
}

/// The events `visible` lets through, until the reader falls a ring behind (one [`Frame::Dropped`], then the
/// end) or the trail closes.
fn reader(
    rx: broadcast::Receiver<Arc<Published>>,
    visible: impl Fn(&Published) -> bool + Clone + Send + 'static,
) -> impl futures::Stream<Item = Frame> + Send {
    futures::stream::unfold((rx, Reader::new(), false), move |(mut rx, reader, done)| {
        let visible = visible.clone();
        async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(p) if visible(&p) => return Some((Frame::Event(p), (rx, reader, false))),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        metrics::counter!("warden_event_readers_dropped_total").increment(1);
                        return Some((Frame::Dropped(n), (rx, reader, true)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{Audit, Event, STREAM_BUFFER};

    fn event(resource: &str) -> Event {
        let mut e = Event::new("grant", "-");
        e.resource = Some(resource.into());
        e
    }

    #[tokio::test]
    async fn a_reader_a_ring_behind_is_told_and_dropped() {
        let audit = Audit::off();
        let slow = reader(audit.subscribe(), |_| true);
        for i in 0..STREAM_BUFFER + 10 {
            audit.emit(event(&format!("r{i}")));
        }
        let frames: Vec<Frame> = slow.collect().await;
        assert!(
            matches!(frames.as_slice(), [Frame::Dropped(n)] if *n >= 10),
            "{frames:?}"
        );
    }

    #[tokio::test]
    async fn a_reader_sees_what_it_may_in_order() {
        let audit = Audit::off();
        let mut only_a = Box::pin(reader(audit.subscribe(), |p| {
            p.resource.as_deref().is_some_and(|r| r.starts_with("a:"))
        }));
        for r in ["a:1", "b:1", "a:2"] {
            audit.emit(event(r));
        }
        for want in ["a:1", "a:2"] {
            match only_a.next().await {
                Some(Frame::Event(p)) => assert_eq!(p.resource.as_deref(), Some(want)),
                other => panic!("expected {want}, got {other:?}"),
            }
        }
    }
}
