//! `warden leader NAME [--follow]`: who leads an election (as `etcdctl elect -l`).

use crate::common::*;
use crate::oneshot::Conn;
use clap::Args;
use futures::StreamExt;
use warden::LeaderInfo;
use warden_server::dto::rfc3339;

/// Arguments of `warden leader`.
#[derive(Args, Debug)]
pub struct LeaderArgs {
    /// The election's name.
    pub name: String,
    /// Keep printing: one line for every change of leader (a new term counts), until interrupted.
    #[arg(long)]
    pub follow: bool,
    #[command(flatten)]
    pub conn: Conn,
}

fn line(name: &str, l: &Option<LeaderInfo>) -> String {
    match l {
        Some(l) => format!(
            "{} leads `{name}`  fence={}  since {}  lease ends {}",
            l.candidate_id,
            l.fencing_token,
            rfc3339(l.since),
            rfc3339(l.expires_at)
        ),
        None => format!("nobody leads `{name}`"),
    }
}

fn json(l: &Option<LeaderInfo>) -> String {
    let data = l.as_ref().map(|l| {
        serde_json::json!({
            "candidateId": l.candidate_id,
            "fencingToken": l.fencing_token,
            "since": rfc3339(l.since),
            "expiresAt": rfc3339(l.expires_at),
        })
    });
    serde_json::json!({"success": true, "data": data}).to_string()
}

pub async fn leader(a: LeaderArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let election = warden.election(a.name.as_str());
    let show = |l: &Option<LeaderInfo>| {
        if a.conn.json {
            println!("{}", json(l));
        } else {
            println!("{}", line(&a.name, l));
        }
    };
    if !a.follow {
        let l = election.leader().await.map_err(|e| explain(&a.conn.backend, e))?;
        show(&l);
        return Ok(0);
    }
    let mut changes = Box::pin(election.observe());
    while let Some(change) = changes.next().await {
        show(&change.map_err(|e| explain(&a.conn.backend, e))?);
    }
    Ok(0)
}
