//! `warden acquire NAME --with OTHER…`: several locks as one lease, all or nothing; and `warden release` /
//! `warden renew` given the group id it printed.

use crate::common::*;
use crate::oneshot::{print_json, AcquireArgs, RenewArgs};
use warden::wire::{Group, Lock};
use warden::{LeaseInfo, Renewal, Warden};
use warden_server::dto::rfc3339;

/// Whether `id` names a group (its members' lock ids joined by `.`) rather than one lease.
pub fn is_group(id: &str) -> bool {
    id.contains('.')
}

fn wire(leases: &[LeaseInfo]) -> Group {
    Group {
        group_id: warden::lock::group_id(leases.iter().map(|l| l.lock_id.as_str())),
        locks: leases.iter().map(Lock::owned).collect(),
    }
}

pub async fn acquire(warden: &Warden, a: &AcquireArgs, client: &str) -> CliResult<u8> {
    let (kind, permits) = kind(a.shared, a.permits);
    let names: Vec<&String> = std::iter::once(&a.name).chain(&a.with).collect();
    let r = names
        .iter()
        .fold(warden.group(Vec::<String>::new()), |g, n| {
            g.member(n.as_str(), kind, permits)
        })
        .ttl(a.ttl)
        .wait(a.wait)
        .client_id(client)
        .condition(a.condition.condition())
        .priority(a.priority.priority)
        .acquire_leases()
        .await;
    let leases = match r {
        Ok(l) => l,
        Err(warden::Error::Timeout { resource, .. }) => {
            return Err(CliError::new(
                EXIT_NOT_ACQUIRED,
                format!(
                    "`{resource}` is held by someone else; none of the locks was acquired within {}",
                    human(a.wait)
                ),
            ))
        }
        Err(e) => return Err(explain(&a.conn.backend, e)),
    };
    let group = wire(&leases);
    if a.conn.json {
        return print_json(&group);
    }
    // Only the group id on stdout, so that `ID=$(warden acquire A --with B)` works; the rest is for the person.
    println!("{}", group.group_id);
    for l in &leases {
        eprintln!("acquired `{}`: fencing token {}", l.resource, l.fencing_token);
    }
    if let Some(first) = leases.iter().map(|l| l.expires_at).min() {
        eprintln!("  expires:       {} (nothing renews it)", rfc3339(first));
    }
    eprintln!("  release with:  warden release $ID --client-id {client}");
    Ok(0)
}

pub async fn renew(warden: &Warden, a: &RenewArgs, client: &str) -> CliResult<u8> {
    let renewed = warden
        .renew_group(&a.lock_id, Some(a.ttl), Some(client))
        .await
        .map_err(|e| explain(&a.conn.backend, e))?;
    let mut leases = Vec::with_capacity(renewed.len());
    for r in renewed {
        match r {
            Renewal::Renewed { lease, .. } => leases.push(lease),
            _ => {
                return Err(CliError::new(
                    EXIT_FAILURE,
                    "a member reached its renewal or hold-time cap and was not extended (the others were): release \
                     the group and acquire it again",
                ))
            }
        }
    }
    if a.conn.json {
        return print_json(&wire(&leases));
    }
    let first = leases
        .iter()
        .map(|l| l.expires_at)
        .min()
        .map(rfc3339)
        .unwrap_or_default();
    println!("{first}");
    eprintln!("renewed {} locks: the first expires {first}", leases.len());
    Ok(0)
}
