//! `warden serve`: the lock service over a backend URL.

use anyhow::Context;
use clap::Args;
use std::time::Duration;

/// Arguments of `warden serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Settings from a TOML file, one key per flag (`listen = "0.0.0.0:7070"`, `header-timeout = "30s"`);
    /// flags and environment variables win over it.
    #[arg(long, env = "WARDEN_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, env = "WARDEN_LISTEN", default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Backend URL: memory://, redis://host:port/db (rediss:// over TLS), redlock://h1,h2,h3,
    /// postgres://user:password@host:port/db, mysql://user:password@host:port/db, http://host:port, ...
    #[arg(long, env = "WARDEN_BACKEND", default_value = "memory://")]
    pub backend: String,
    /// Waiters parked at once on this instance, over all resources.
    #[arg(long, default_value_t = 10_000)]
    pub max_waiters: usize,
    /// Waiters parked at once on this instance for one resource.
    #[arg(long, default_value_t = 1_000)]
    pub max_waiters_per_resource: usize,
    /// Connections served at once; more wait in the listen backlog.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: u64,
    /// How long a connection may take to send a request head, or sit idle between requests, before it is
    /// closed (1ms..=1h).
    #[arg(long, default_value = "30s", value_parser = |s: &str| bounded(s, Duration::from_millis(1), Duration::from_secs(3600)))]
    pub header_timeout: Duration,
    /// How long a request body may take to arrive after its head; slower ones get 408 and are closed
    /// (1ms..=1h).
    #[arg(long, default_value = "10s", value_parser = |s: &str| bounded(s, Duration::from_millis(1), Duration::from_secs(3600)))]
    pub body_timeout: Duration,
    /// How long a parked waiter's place in a queue lasts without a heartbeat (renewed every third of it):
    /// after this instance dies, its waiters stop blocking queues on other instances within it (30ms..=60s).
    #[arg(long, default_value = "3s", value_parser = |s: &str| bounded(s, Duration::from_millis(30), Duration::from_secs(60)))]
    pub waiter_lease: Duration,
    /// API keys (TOML, see `warden keygen`): every request but /health and /openapi.json then needs
    /// `Authorization: Bearer <key>`. Reloaded on SIGHUP; held locks are kept.
    #[arg(long, env = "WARDEN_AUTH_FILE")]
    pub auth_file: Option<std::path::PathBuf>,
    /// Serve without an auth file on an address other than loopback: anyone who reaches it can take,
    /// release and inspect every lock.
    #[arg(long)]
    pub insecure_no_auth: bool,
    /// Serve HTTPS: the certificate chain (PEM, leaf first). Needs --tls-key.
    #[arg(long, env = "WARDEN_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, env = "WARDEN_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,
    /// Require client certificates signed by this CA (PEM): mutual TLS.
    #[arg(long, env = "WARDEN_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<std::path::PathBuf>,
    /// Append the audit trail (grants, releases, refused renewals, expiries, force-releases, refused
    /// requests) as JSON lines to this file; `-` for stdout. Live readers: GET /api/events.
    #[arg(long, env = "WARDEN_AUDIT_LOG")]
    pub audit_log: Option<String>,
    /// Requests per second each principal (API key) may make on average; more get 429 with Retry-After.
    #[arg(long, requires = "auth_file", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_limit: Option<u32>,
    /// Requests a principal may make at once above its rate (default: one second's worth).
    #[arg(long, requires = "rate_limit", value_parser = clap::value_parser!(u32).range(1..))]
    pub rate_burst: Option<u32>,
}

/// Shows a URL without its password.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

pub async fn serve(a: ServeArgs) -> crate::common::CliResult<u8> {
    serve_inner(a)
        .await
        .map_err(|e| crate::common::CliError::new(crate::common::EXIT_FAILURE, format!("{e:#}")))
}

async fn serve_inner(a: ServeArgs) -> anyhow::Result<u8> {
    let shown = redact(&a.backend);
    let warden = warden::Warden::connect(&a.backend)
        .await
        .and_then(|w| w.with_waiter_lease(a.waiter_lease))
        .map_err(|e| anyhow::anyhow!("cannot use backend {shown}: {e}"))?;
    let health = warden.health().await;
    if matches!(health.status, warden::HealthStatus::Unhealthy) {
        let why: Vec<String> = health
            .nodes
            .iter()
            .filter(|n| !n.reachable)
            .map(|n| format!("{} ({})", n.address, n.error.clone().unwrap_or_default()))
            .collect();
        anyhow::bail!("backend {shown} is unreachable: {}", why.join(", "));
    }
    let listen: std::net::SocketAddr = match a.listen.parse() {
        Ok(addr) => addr,
        // A name (localhost:7070) is looked up; anything else is not an address.
        Err(_) => tokio::net::lookup_host(&a.listen)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .with_context(|| {
                format!(
                    "`{}` is not an address to listen on: use host:port, e.g. 127.0.0.1:7070 or 0.0.0.0:7070",
                    a.listen
                )
            })?,
    };
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::AddrInUse => {
            anyhow::anyhow!("cannot listen on {listen}: something already listens there (another warden serve?); pass another --listen")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            anyhow::anyhow!("cannot listen on {listen}: this machine has no such address; pass another --listen")
        }
        std::io::ErrorKind::PermissionDenied => {
            anyhow::anyhow!("cannot listen on {listen}: permission denied (ports below 1024 need privileges)")
        }
        _ => anyhow::anyhow!("cannot listen on {listen}: {e}"),
    })?;
    let addr = listener.local_addr().context("listener has no local address")?;
    let auth = match &a.auth_file {
        Some(path) => {
            let auth = warden_server::auth::Auth::load(path)?;
            if auth.is_empty() {
                tracing::warn!("the auth file lists no key: every request but /health will be refused");
            }
            Some(std::sync::Arc::new(auth))
        }
        // Client certificates authenticate too.
        None if !addr.ip().is_loopback() && !a.insecure_no_auth && a.tls_client_ca.is_none() => anyhow::bail!(
            "refusing to listen on {addr} without authentication: anyone who reaches it could release every \
             lock; pass --auth-file (see `warden keygen`), listen on 127.0.0.1, or pass --insecure-no-auth"
        ),
        None => None,
    };
    let tls = match (&a.tls_cert, &a.tls_key) {
        (Some(cert), Some(key)) => Some(warden_server::tls::server_config(
            cert,
            key,
            a.tls_client_ca.as_deref(),
        )?),
        _ => None,
    };
    let mode = match (&auth, &a.tls_client_ca) {
        (Some(_), Some(_)) => "API keys and client certificates required",
        (Some(_), None) => "API keys required",
        (None, Some(_)) => "client certificates required",
        (None, None) => "no auth",
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("warden listening on {scheme}://{addr} (backend {shown}; {mode})");
    let config = warden_server::ServerConfig::default()
        .with_waiter_limits(a.max_waiters, a.max_waiters_per_resource)
        .with_connection_limits(
            usize::try_from(a.max_connections).unwrap_or(usize::MAX),
            a.header_timeout,
        )
        .with_body_read_timeout(a.body_timeout);
    let config = match a.rate_limit {
        Some(rate) => config.with_rate_limit(rate, a.rate_burst.unwrap_or(rate)),
        None => config,
    };
    let config = match a.audit_log.as_deref() {
        None => config,
        Some(target) => {
            let log = match target {
                "-" => warden_server::audit::AuditLog::Stdout,
                path => warden_server::audit::AuditLog::File(path.into()),
            };
            let audit = warden_server::audit::Audit::start(&log)
                .with_context(|| format!("cannot open the audit log {target}"))?;
            config.with_audit(std::sync::Arc::new(audit))
        }
    };
    let config = match tls {
        Some(tls) => config.with_tls(tls),
        None => config,
    };
    let config = match auth {
        Some(auth) => {
            reload_on_hangup(auth.clone());
            config.with_auth(auth)
        }
        None => config,
    };
    warden_server::run(listener, warden, config, shutdown_signal())
        .await
        .context("server failed")?;
    Ok(0)
}

/// Reads the auth file again on every SIGHUP; a bad file keeps the keys in force.
fn reload_on_hangup(auth: std::sync::Arc<warden_server::auth::Auth>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP: the auth file will not be reloaded");
            return;
        };
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                match auth.reload() {
                    Ok(n) => tracing::info!(keys = n, "auth file reloaded"),
                    Err(e) => tracing::error!(error = %e, "auth file not reloaded; the previous keys stay in force"),
                }
            }
        });
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// A duration flag within `min..=max`.
fn bounded(s: &str, min: Duration, max: Duration) -> Result<Duration, String> {
    let d = crate::common::duration(s)?;
    if d < min || d > max {
        return Err(format!(
            "`{s}` is out of range ({}..={})",
            crate::common::human(min),
            crate::common::human(max)
        ));
    }
    Ok(d)
}
