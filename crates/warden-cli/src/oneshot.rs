//! One-shot operations: acquire, release, renew, status, held, queue, stats. Human-readable output by
//! default, JSON (the REST API's shapes) with `--json`.

use crate::common::*;
use clap::Args;
use std::time::{Duration, SystemTime};
use warden::LeaseInfo;
use warden_server::dto::{rfc3339, Lock, StatsDto};

/// Where to connect and how to print.
#[derive(Args, Debug)]
pub struct Conn {
    /// Backend URL.
    #[arg(long, env = "WARDEN_BACKEND", default_value = DEFAULT_BACKEND)]
    pub backend: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `warden acquire`.
#[derive(Args, Debug)]
pub struct AcquireArgs {
    /// The resource to lock.
    pub name: String,
    /// Lease TTL (nothing renews it: renew or release it yourself).
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub ttl: Duration,
    /// How long to wait (0 = try once).
    #[arg(long, default_value = "5s", value_parser = duration)]
    pub wait: Duration,
    /// Shared (read) instead of exclusive.
    #[arg(long)]
    pub shared: bool,
    /// One of N permits of a semaphore instead of a lock (every caller of NAME must pass the same N).
    #[arg(long, value_name = "N", conflicts_with = "shared", value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub permits: Option<u32>,
    /// Hold this lock too, in the same mode, all or nothing with NAME (repeatable): stdout is then the group id,
    /// which `warden release` and `warden renew` take like a lock id.
    #[arg(long = "with", value_name = "NAME", conflicts_with = "permits")]
    pub with: Vec<String>,
    /// Client id recorded with the lease (default: host name).
    #[arg(long, env = "WARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub condition: ConditionArgs,
    #[command(flatten)]
    pub priority: PriorityArg,
    #[command(flatten)]
    pub conn: Conn,
}

/// Arguments of `warden release`.
#[derive(Args, Debug)]
pub struct ReleaseArgs {
    /// The lease's lock id.
    pub lock_id: String,
    /// The client id it was granted to (default: host name).
    #[arg(long, env = "WARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// Arguments of `warden renew`.
#[derive(Args, Debug)]
pub struct RenewArgs {
    /// The lease's lock id.
    pub lock_id: String,
    /// New lease length from now.
    #[arg(long, default_value = "30s", value_parser = duration)]
    pub ttl: Duration,
    /// The client id it was granted to (default: host name).
    #[arg(long, env = "WARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// Arguments of `warden status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The lease's lock id.
    pub lock_id: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Arguments of `warden held`.
#[derive(Args, Debug)]
pub struct HeldArgs {
    /// The client id (default: host name).
    #[arg(long, env = "WARDEN_CLIENT_ID")]
    pub client_id: Option<String>,
    #[command(flatten)]
    pub conn: Conn,
}

/// Arguments of `warden queue`.
#[derive(Args, Debug)]
pub struct QueueArgs {
    /// The resource.
    pub name: String,
    #[command(flatten)]
    pub conn: Conn,
}

/// Arguments of `warden stats`.
#[derive(Args, Debug)]
pub struct StatsArgs {
    #[command(flatten)]
    pub conn: Conn,
}

/// Prints `v` as the REST API answers it: `{"success": true, "data": v}`.
pub(crate) fn print_json(v: &impl serde::Serialize) -> CliResult<u8> {
    print_raw(&serde_json::json!({"success": true, "data": v}))
}

fn print_raw(v: &impl serde::Serialize) -> CliResult<u8> {
    let s = serde_json::to_string(v).map_err(|e| CliError::new(EXIT_FAILURE, format!("cannot print JSON: {e}")))?;
    println!("{s}");
    Ok(0)
}

fn describe(l: &LeaseInfo) -> String {
    let left = l
        .expires_at
        .duration_since(SystemTime::now())
        .map(|d| format!("in {}", human(Duration::from_millis(d.as_millis() as u64))))
        .unwrap_or_else(|_| "expired".into());
    format!(
        "{}  {}  {:<9} client={}  fence={}  expires {} ({left})  renewals={}",
        // A warden server withholds lock ids from this view; then the handle names the lease.
        if l.lock_id.is_empty() {
            &l.lease_handle
        } else {
            &l.lock_id
        },
        l.resource,
        l.kind.as_str(),
        l.client_id,
        l.fencing_token,
        rfc3339(l.expires_at),
        l.renewal_count
    )
}

pub async fn acquire(a: AcquireArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let client = a.client_id.clone().unwrap_or_else(hostname);
    if !a.with.is_empty() {
        return crate::group_cmd::acquire(&warden, &a, &client).await;
    }
    let r = mode(warden.lock(a.name.as_str()), a.shared, a.permits)
        .ttl(a.ttl)
        .wait(a.wait)
        .client_id(client.as_str())
        .condition(a.condition.condition())
        .priority(a.priority.priority)
        .acquire_lease()
        .await;
    let l = match r {
        Ok(l) => l,
        Err(warden::Error::Timeout { .. }) => {
            return Err(CliError::new(
                EXIT_NOT_ACQUIRED,
                format!(
                    "{}; not acquired within {}",
                    held_by_others(&a.name, a.permits),
                    human(a.wait)
                ),
            ))
        }
        Err(e @ warden::Error::ConditionFailed { .. }) => return Err(CliError::new(EXIT_NOT_ACQUIRED, e.to_string())),
        Err(e) => return Err(explain(&a.conn.backend, e)),
    };
    if a.conn.json {
        return print_json(&Lock::owned(&l));
    }
    // Only the lock id on stdout, so that `ID=$(warden acquire NAME)` works; the rest is for the person.
    println!("{}", l.lock_id);
    eprintln!("acquired `{}`", l.resource);
    eprintln!("  fencing token: {}", l.fencing_token);
    eprintln!("  expires:       {} (nothing renews it)", rfc3339(l.expires_at));
    eprintln!("  release with:  warden release $ID --client-id {client}");
    Ok(0)
}

pub async fn release(a: ReleaseArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let client = a.client_id.unwrap_or_else(hostname);
    if crate::group_cmd::is_group(&a.lock_id) {
        warden
            .release_group(&a.lock_id, Some(&client))
            .await
            .map_err(|e| explain(&a.conn.backend, e))?;
    } else {
        warden
            .release(&a.lock_id, Some(&client))
            .await
            .map_err(|e| explain(&a.conn.backend, e))?;
    }
    if a.conn.json {
        return print_raw(&serde_json::json!({"success": true, "message": "Lock released successfully"}));
    }
    eprintln!("released");
    Ok(0)
}

pub async fn renew(a: RenewArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let client = a.client_id.clone().unwrap_or_else(hostname);
    if crate::group_cmd::is_group(&a.lock_id) {
        return crate::group_cmd::renew(&warden, &a, &client).await;
    }
    let r = warden
        .renew(&a.lock_id, a.ttl, Some(&client))
        .await
        .map_err(|e| explain(&a.conn.backend, e))?;
    match r {
        warden::Renewal::Renewed { lease, .. } => {
            if a.conn.json {
                return print_json(&Lock::owned(&lease));
            }
            // The new expiry on stdout; the sentence for the person.
            println!("{}", rfc3339(lease.expires_at));
            eprintln!("renewed: expires {}", rfc3339(lease.expires_at));
            Ok(0)
        }
        _ => Err(CliError::new(
            EXIT_FAILURE,
            format!(
                "lease {} reached its renewal cap and was not extended: release and acquire again",
                a.lock_id
            ),
        )),
    }
}

pub async fn status(a: StatusArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    match warden
        .lease(&a.lock_id)
        .await
        .map_err(|e| explain(&a.conn.backend, e))?
    {
        Some(l) => {
            if a.conn.json {
                return print_json(&warden_server::dto::LockStatus::owned(&l));
            }
            println!("{}", describe(&l));
            Ok(0)
        }
        None => Err(CliError::new(
            EXIT_FAILURE,
            format!(
                "no lease with lock id `{}` (it never existed, was released, or expired)",
                a.lock_id
            ),
        )),
    }
}

pub async fn held(a: HeldArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let client = a.client_id.unwrap_or_else(hostname);
    let leases = warden.held(&client).await.map_err(|e| explain(&a.conn.backend, e))?;
    if a.conn.json {
        return print_json(&leases.iter().map(Lock::owned).collect::<Vec<_>>());
    }
    if leases.is_empty() {
        println!("client `{client}` holds no leases");
    }
    for l in &leases {
        println!("{}", describe(l));
    }
    Ok(0)
}

pub async fn queue(a: QueueArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let info = warden.inspect(&a.name).await.map_err(|e| explain(&a.conn.backend, e))?;
    if a.conn.json {
        return print_json(&warden_server::dto::QueueDto::from(&info));
    }
    if info.holders.is_empty() && !info.foreign_holder {
        println!("`{}` is free", a.name);
    }
    for h in &info.holders {
        println!("held: {}", describe(h));
    }
    if info.foreign_holder {
        println!("held by a non-warden client (a plain SET NX key)");
    }
    println!("{} waiting", info.queue.len());
    for (i, w) in info.queue.iter().enumerate() {
        println!(
            "  {:>3}. {}  {}  ttl={}",
            i + 1,
            w.client_id,
            w.kind.as_str(),
            human(w.ttl)
        );
    }
    Ok(0)
}

pub async fn stats(a: StatsArgs) -> CliResult<u8> {
    let warden = connect(&a.conn.backend).await?;
    let s = warden.stats().await.map_err(|e| explain(&a.conn.backend, e))?;
    let dto = StatsDto::from(s);
    if a.conn.json {
        return print_json(&dto);
    }
    println!("grants ever:      {}", dto.total_locks);
    println!(
        "held now:         {} (exclusive {}, shared {}, read-write {})",
        dto.active_locks, dto.lock_types.exclusive, dto.lock_types.shared, dto.lock_types.read_write
    );
    println!("ended by expiry:  {}", dto.expired_locks);
    println!("average hold:     {} ms", dto.average_hold_time);
    if !dto.top_resources.is_empty() {
        println!("top resources:");
        for t in &dto.top_resources {
            println!("  {:>8}  {}", t.locks, t.resource);
        }
    }
    Ok(0)
}
