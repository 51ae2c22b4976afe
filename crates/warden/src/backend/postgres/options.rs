//! The `postgres://` URL: what the driver reads, warden's own options, and an address safe to print.

use super::tls::Tls;
use crate::backend::sql_common::{ranged, valid_prefix};
use crate::error::{Error, Result};
use std::time::Duration;

/// Options read from the URL's query string (the rest goes to tokio-postgres).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Prepended to every table and function name (`prefix`, default `warden_`): lowercase letters, digits
    /// and `_`, starting with a letter.
    pub prefix: String,
    /// Bound on every call, including waiting for a pooled connection and connecting (`timeout_ms`, default
    /// 2000).
    pub timeout: Duration,
    /// Most connections in the pool (`pool_size`, default 16), besides the one that listens for wake-ups.
    pub pool_size: usize,
    /// Batch calls in flight at once (`inflight`, default 2), one per lane of resources: operations that arrive
    /// meanwhile go together in their lane's next call, one transaction for all.
    pub inflight: usize,
    /// How often the housekeeping sweep runs (`sweep_ms`, default 5000).
    pub sweep_every: Duration,
    /// Plain (`sslmode=disable`, the default) or TLS checking the server's certificate against the CA file of
    /// `sslrootcert` and its name against the host (`sslmode=verify-full`).
    pub tls: Tls,
    /// How long expired leases and idle resources are kept before the sweep forgets them (`retain_ms`,
    /// default 60000).
    pub retain: Duration,
}

/// Splits a `postgres://` URL into the driver's configuration, a printable address without credentials and
/// warden's options.
pub(crate) fn parse_url(url: &str) -> Result<(tokio_postgres::Config, String, Options)> {
    let mut u = url::Url::parse(url).map_err(|e| Error::invalid("backend", format!("not a valid URL: {e}")))?;
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(Error::invalid(
            "backend",
            "names no host; use postgres://user:password@host:port/database",
        ));
    }
    let address = format!(
        "postgres://{}:{}{}",
        u.host_str().unwrap_or_default(),
        u.port().unwrap_or(5432),
        u.path()
    );
    let mut opts = Options {
        prefix: "warden_".into(),
        timeout: Duration::from_millis(2000),
        pool_size: 16,
        inflight: 2,
        sweep_every: Duration::from_secs(5),
        retain: Duration::from_secs(60),
        tls: Tls::Off,
    };
    let mut sslmode = String::from("disable");
    let mut root: Option<String> = None;
    let mut passthrough = Vec::new();
    for (k, v) in u.query_pairs() {
        match &*k {
            "prefix" => opts.prefix = valid_prefix(&v)?,
            "timeout_ms" => opts.timeout = Duration::from_millis(ranged("timeout_ms", &v, 10..=60_000)?),
            "pool_size" => opts.pool_size = ranged("pool_size", &v, 1..=1000)? as usize,
            "inflight" => opts.inflight = ranged("inflight", &v, 1..=64)? as usize,
            "sweep_ms" => opts.sweep_every = Duration::from_millis(ranged("sweep_ms", &v, 10..=3_600_000)?),
            "retain_ms" => opts.retain = Duration::from_millis(ranged("retain_ms", &v, 100..=86_400_000)?),
            "sslmode" => sslmode = v.into_owned(),
            "sslrootcert" => root = Some(v.into_owned()),
            _ => passthrough.push((k.into_owned(), v.into_owned())),
        }
    }
    opts.tls =
        match (sslmode.as_str(), root) {
            ("disable", None) => Tls::Off,
            ("verify-full", Some(path)) => Tls::verify_full(&path)?,
            ("verify-full", None) => return Err(Error::invalid(
                "sslrootcert",
                "sslmode=verify-full needs sslrootcert=/path/to/ca.pem (the CA that signed the server's certificate)",
            )),
            ("disable", Some(_)) => {
                return Err(Error::invalid(
                    "sslmode",
                    "sslrootcert is given: use sslmode=verify-full",
                ))
            }
            (other, _) => {
                return Err(Error::invalid(
                    "sslmode",
                    format!(
                        "`{other}` is not offered: use disable (plain, for a trusted network) or verify-full \
                     with sslrootcert=/path/to/ca.pem (TLS, the server's certificate and name checked)"
                    ),
                ))
            }
        };
    if passthrough.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(passthrough);
        // Form encoding writes a space as `+`, which the driver does not decode (a `+` itself is `%2B`).
        let query = u.query().map(|q| q.replace('+', "%20"));
        u.set_query(query.as_deref());
    }
    // Not the URL in the message: it may hold a password.
    let mut config: tokio_postgres::Config = u
        .as_str()
        .parse()
        .map_err(|e| Error::invalid("backend", format!("{address}: {e}")))?;
    config.connect_timeout(opts.timeout);
    if matches!(opts.tls, Tls::On(_)) {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
    }
    if config.get_application_name().is_none() {
        config.application_name("warden");
    }
    // The functions' plans are cached per connection. Planned while a table is new and small, a lookup by key
    // could be cached as a sequential scan and stay one as the table grows: warden's statements always have an
    // index to use, and the planner is told to prefer it. No JIT: the few statements that do read a table
    // through (the sweep) would look expensive enough to be compiled, which costs more than they do.
    const SESSION: &str = "-c enable_seqscan=off -c jit=off";
    let options = match config.get_options() {
        Some(o) => format!("{o} {SESSION}"),
        None => SESSION.to_string(),
    };
    config.options(&options);
    Ok((config, address, opts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_from_the_driver_url_and_the_password_never_shows() {
        let (cfg, address, opts) =
            parse_url("postgres://app:s3cret@db.example:6543/locks?prefix=app_&timeout_ms=300&pool_size=4").unwrap();
        assert_eq!(address, "postgres://db.example:6543/locks");
        assert_eq!(opts.prefix, "app_");
        assert_eq!(opts.timeout, Duration::from_millis(300));
        assert_eq!(opts.pool_size, 4);
        assert_eq!(cfg.get_user(), Some("app"));
        assert_eq!(cfg.get_dbname(), Some("locks"));
        let e = parse_url("postgres://app:s3cret@db/x?prefix=Bad;DROP").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "prefix", .. }), "{e}");
        let e = parse_url("postgres://app:s3cret@db/x?connect_timeout=zz").unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(parse_url("postgres://app:s3cret@db/x?timeout_ms=0").is_err());
        let e = parse_url("postgres://db/x?sslmode=require").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "sslmode", .. }), "{e}");
        let e = parse_url("postgres://db/x?sslmode=verify-full").unwrap_err();
        assert!(
            matches!(
                e,
                Error::InvalidArgument {
                    field: "sslrootcert",
                    ..
                }
            ),
            "{e}"
        );
        let e = parse_url("postgres://db/x?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem").unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let (cfg, _, _) = parse_url("postgres://db/x?options=-c%20synchronous_commit%3Doff&prefix=a_").unwrap();
        assert_eq!(
            cfg.get_options(),
            Some("-c synchronous_commit=off -c enable_seqscan=off -c jit=off")
        );
    }
}
