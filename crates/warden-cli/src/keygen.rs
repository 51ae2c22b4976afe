//! `warden keygen`: a new API key and the auth-file entry that admits it.

use crate::common::{CliError, CliResult};
use clap::Args;
use warden_server::auth::{new_key, Role};

/// Arguments of `warden keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// Who the key acts as (1..=64 of A-Z a-z 0-9 _ . -); its clients become `PRINCIPAL/clientId`.
    #[arg(long)]
    pub principal: String,
    /// client (lock its namespaces), observer (read views and metrics) or admin (also force-release).
    #[arg(long, default_value = "client", value_parser = ["client", "observer", "admin"])]
    pub role: String,
    /// A resource the key may lock: an exact name or a prefix ending in `*` (repeat for more).
    #[arg(long = "namespace")]
    pub namespaces: Vec<String>,
}

pub fn keygen(a: KeygenArgs) -> CliResult<u8> {
    let role = match a.role.as_str() {
        "observer" => Role::Observer,
        "admin" => Role::Admin,
        _ => Role::Client,
    };
    if role != Role::Observer && a.namespaces.is_empty() {
        return Err(CliError::new(
            2,
            "give at least one --namespace for a client or admin key, e.g. --namespace 'orders:*'",
        ));
    }
    let (key, hash) = new_key();
    let namespaces: Vec<String> = a.namespaces.iter().map(|n| format!("{n:?}")).collect();
    // The key on stderr, shown once; the entry (its hash only) on stdout, so `warden keygen ... >> auth.toml`
    // appends the entry and never writes the key into the file.
    eprintln!(
        "API key for `{}` (shown once; give it to the client as WARDEN_TOKEN): {key}",
        a.principal
    );
    println!("[[key]]");
    println!("principal = {:?}", a.principal);
    println!("role = {:?}", role.as_str());
    println!("namespaces = [{}]", namespaces.join(", "));
    println!("sha256 = {hash:?}");
    Ok(0)
}
