//! A watched resource's change on the wire: the event name and its JSON, as `GET /api/locks/watch` streams it
//! and `warden watch --json` prints it. Leases appear as the views show them (by handle, never the lock id).

use super::{Lock, QueueDto};
use crate::types::ResourceInfo;
use crate::watch::Change;

/// The event name and JSON body of one change.
pub fn change(c: &Change) -> (&'static str, serde_json::Value) {
    let value = |v: Result<serde_json::Value, serde_json::Error>| v.unwrap_or_default();
    match c {
        Change::Snapshot(info) => ("snapshot", value(serde_json::to_value(QueueDto::from(info)))),
        Change::Granted(l) => ("granted", value(serde_json::to_value(Lock::seen(l)))),
        Change::Ended(l) => ("ended", value(serde_json::to_value(Lock::seen(l)))),
        Change::Queue(queue) => {
            let info = ResourceInfo {
                queue: queue.clone(),
                ..ResourceInfo::default()
            };
            let q = QueueDto::from(&info);
            (
                "queue",
                serde_json::json!({"waitingClients": q.waiting_clients, "queue": q.queue}),
            )
        }
    }
}
