//! Notifications of one resource's changes from the server's `GET /api/locks/watch` stream (Server-Sent
//! Events), for bystanders such as an election's observers: each event means "look again".

use super::HttpBackend;
use futures::stream::{BoxStream, StreamExt};

/// How often the server looks for changes made through its other instances (its own show at once).
const SERVER_INTERVAL_MS: &str = "1000";

/// The stream's state: the server's answer not yet asked, or its body and the bytes of an event not yet whole.
enum State {
    Start(Box<reqwest::RequestBuilder>),
    Reading(BoxStream<'static, reqwest::Result<bytes::Bytes>>, Vec<u8>),
}

impl HttpBackend {
    /// One item per event the server streams about `resource`; ends when the stream breaks or is refused.
    pub(super) fn change_stream(&self, resource: &str) -> BoxStream<'static, ()> {
        let mut rb = self
            .client
            .get(format!("{}/api/locks/watch", self.base))
            .query(&[("resource", resource), ("interval", SERVER_INTERVAL_MS)]);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        futures::stream::unfold(State::Start(Box::new(rb)), |state| async move {
            let (mut body, mut buf) = match state {
                State::Start(rb) => match rb.send().await {
                    Ok(resp) if resp.status().is_success() => (resp.bytes_stream().boxed(), Vec::new()),
                    _ => return None,
                },
                State::Reading(body, buf) => (body, buf),
            };
            loop {
                // An event ends with an empty line.
                if let Some(end) = buf.windows(2).position(|w| w == b"\n\n") {
                    buf.drain(..end + 2);
                    return Some(((), State::Reading(body, buf)));
                }
                match body.next().await {
                    Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                    _ => return None,
                }
            }
        })
        .boxed()
    }
}
