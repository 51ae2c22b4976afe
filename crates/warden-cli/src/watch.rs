//! `warden watch NAME`: one line per grant, lease end and queue change of a resource, until interrupted
//! (`warden watch 'PREFIX*'`: a warden server's audit events on every resource under the prefix).

use crate::common::*;
use crate::oneshot::Conn;
use clap::Args;
use futures::StreamExt;
use std::time::{Duration, SystemTime};
use warden::watch::Change;
use warden::{LeaseInfo, QueueEntry};
use warden_server::dto::rfc3339;

/// Arguments of `warden watch`.
#[derive(Args, Debug)]
pub struct WatchArgs {
    /// The resource to watch, or `PREFIX*` for every resource under a prefix (needs a warden server).
    pub name: String,
    /// How often to look for changes (those made through the warden server the CLI talks to show at once).
    #[arg(long, default_value = "250ms", value_parser = duration)]
    pub interval: Duration,
    #[command(flatten)]
    pub conn: Conn,
}

fn lease(l: &LeaseInfo) -> String {
    format!(
        "client={}  {}  fence={}  {}",
        l.client_id,
        l.kind.as_str(),
        l.fencing_token,
        l.lease_handle
    )
}

fn waiters(q: &[QueueEntry]) -> String {
    if q.is_empty() {
        return "nobody waiting".into();
    }
    let each: Vec<String> = q
        .iter()
        .map(|w| format!("{} ({})", w.client_id, w.kind.as_str()))
        .collect();
    format!("{} waiting: {}", q.len(), each.join(", "))
}

fn text(name: &str, c: &Change) -> String {
    match c {
        Change::Snapshot(info) => {
            let held: Vec<String> = info.holders.iter().map(lease).collect();
            let held = if held.is_empty() {
                "free".to_string()
            } else {
                format!("held by {}", held.join("; "))
            };
            format!("now      {name}  {held}; {}", waiters(&info.queue))
        }
        Change::Granted(l) => format!("granted  {name}  {}", lease(l)),
        Change::Ended(l) => format!("ended    {name}  {}", lease(l)),
        Change::Queue(q) => format!("queue    {name}  {}", waiters(q)),
        _ => format!("changed  {name}"),
    }
}

fn json(c: &Change) -> serde_json::Value {
    let (event, data) = warden::wire::watch_change(c);
    serde_json::json!({"time": rfc3339(SystemTime::now()), "event": event, "data": data})
}

pub async fn watch(a: WatchArgs) -> CliResult<u8> {
    if let Some(prefix) = a.name.strip_suffix('*') {
        return watch_prefix(&a, prefix).await;
    }
    warden::validate::resource(&a.name).map_err(|e| explain(&a.conn.backend, e))?;
    let warden = connect(&a.conn.backend).await?;
    let mut changes = Box::pin(warden.watch(&a.name, a.interval, None));
    while let Some(c) = changes.next().await {
        match c {
            Ok(c) if a.conn.json => println!("{}", json(&c)),
            Ok(c) => println!("{}  {}", rfc3339(SystemTime::now()), text(&a.name, &c)),
            // The backend went away for a moment: say so once per failure, and keep watching.
            Err(e) => eprintln!("warden: {}", explain(&a.conn.backend, e).message),
        }
    }
    Ok(0)
}

/// The server's audit events under `prefix`, read from its `GET /api/events?prefix=` stream.
async fn watch_prefix(a: &WatchArgs, prefix: &str) -> CliResult<u8> {
    let base = a.conn.backend.trim_end_matches('/');
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(CliError::new(
            EXIT_USAGE,
            "watching a prefix needs a warden server: pass --backend http://host:port (a local `warden serve`)",
        ));
    }
    let base = base.split('?').next().unwrap_or(base);
    let mut url = url::Url::parse(&format!("{base}/api/events"))
        .map_err(|e| CliError::new(EXIT_USAGE, format!("`{base}` is not a URL: {e}")))?;
    url.query_pairs_mut().append_pair("prefix", prefix);
    let mut req = reqwest::Client::new().get(url);
    if let Some(t) = token() {
        req = req.bearer_auth(t);
    }
    let unreachable = |e: reqwest::Error| {
        CliError::new(
            EXIT_UNAVAILABLE,
            format!("cannot reach the warden server at {base}: {e}"),
        )
    };
    let resp = req.send().await.map_err(unreachable)?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        return Err(CliError::new(
            EXIT_FAILURE,
            format!("the server answered {status}: {}", body.trim()),
        ));
    }
    let mut body = resp.bytes_stream();
    let mut buf = String::new();
    while let Some(chunk) = body.next().await {
        buf.push_str(&String::from_utf8_lossy(&chunk.map_err(unreachable)?));
        while let Some(i) = buf.find('\n') {
            let line: String = buf.drain(..=i).collect();
            let Some(data) = line.trim_end().strip_prefix("data:") else {
                continue;
            };
            let data = data.trim();
            if a.conn.json {
                println!("{data}");
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(data).unwrap_or_default();
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("-").to_string();
            println!(
                "{}  {:<8} {}  client={}  {}{}",
                field("time"),
                field("kind"),
                field("resource"),
                field("clientId"),
                field("leaseHandle"),
                v.get("fence").map(|f| format!("  fence={f}")).unwrap_or_default()
            );
        }
    }
    Ok(0)
}
