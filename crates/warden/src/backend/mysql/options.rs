//! The `mysql://` URL: the driver's connection options, warden's own options, and an address safe to print.

use crate::backend::sql_common::{ranged, valid_prefix};
use crate::error::{Error, Result};
use mysql_async::{OptsBuilder, PoolConstraints, PoolOpts, SslOpts};
use std::time::Duration;

/// Options read from the URL's query string.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Prepended to every table and procedure name (`prefix`, default `warden_`): lowercase letters, digits
    /// and `_`, starting with a letter.
    pub prefix: String,
    /// Bound on every call, including waiting for a pooled connection and connecting (`timeout_ms`, default
    /// 2000).
    pub timeout: Duration,
    /// Most connections in the pool (`pool_size`, default 16), besides the one that listens for wake-ups.
    pub pool_size: usize,
    /// How often the housekeeping sweep runs (`sweep_ms`, default 5000).
    pub sweep_every: Duration,
    /// How long expired leases and idle resources are kept before the sweep forgets them (`retain_ms`,
    /// default 60000).
    pub retain: Duration,
}

/// Splits a `mysql://` (or `mariadb://`) URL into the driver's options (without a pool), a printable address
/// without credentials and warden's options.
pub(crate) fn parse_url(url: &str) -> Result<(OptsBuilder, String, Options)> {
    let u = url::Url::parse(url).map_err(|e| Error::invalid("backend", format!("not a valid URL: {e}")))?;
    let usage = "use mysql://user:password@host:port/database";
    let host = u
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::invalid("backend", format!("names no host; {usage}")))?;
    let db = u.path().trim_start_matches('/');
    if db.is_empty() || db.contains('/') {
        return Err(Error::invalid("backend", format!("names no database; {usage}")));
    }
    let port = u.port().unwrap_or(3306);
    let address = format!("mysql://{host}:{port}/{db}");
    let mut opts = Options {
        prefix: "warden_".into(),
        timeout: Duration::from_millis(2000),
        pool_size: 16,
        sweep_every: Duration::from_secs(5),
        retain: Duration::from_secs(60),
    };
    let mut ssl_mode = String::from("DISABLED");
    let mut ssl_ca: Option<String> = None;
    for (k, v) in u.query_pairs() {
        match &*k {
            "ssl-mode" => ssl_mode = v.to_ascii_uppercase(),
            "ssl-ca" => ssl_ca = Some(v.into_owned()),
            "prefix" => opts.prefix = valid_prefix(&v)?,
            "timeout_ms" => opts.timeout = Duration::from_millis(ranged("timeout_ms", &v, 10..=60_000)?),
            "pool_size" => opts.pool_size = ranged("pool_size", &v, 1..=1000)? as usize,
            "sweep_ms" => opts.sweep_every = Duration::from_millis(ranged("sweep_ms", &v, 10..=3_600_000)?),
            "retain_ms" => opts.retain = Duration::from_millis(ranged("retain_ms", &v, 100..=86_400_000)?),
            other => {
                return Err(Error::invalid(
                    "backend",
                    format!(
                    "{address}: unknown option `{other}`; known: prefix, timeout_ms, pool_size, sweep_ms, retain_ms"
                ),
                ))
            }
        }
    }
    let ssl = tls(&ssl_mode, ssl_ca.as_deref())?;
    let decode = |s: &str| {
        percent_decode(s)
            .ok_or_else(|| Error::invalid("backend", format!("{address}: the credentials are not valid UTF-8")))
    };
    let user = decode(u.username())?;
    let password = u.password().map(decode).transpose()?;
    let db = decode(db)?;
    let builder = OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user((!user.is_empty()).then_some(user))
        .pass(password)
        .db_name(Some(db))
        // Stay on TCP: the driver would otherwise move to the server's socket when it runs on this host.
        .prefer_socket(false)
        .ssl_opts(ssl)
        // Every session on UTC (the database's clock is read as a Unix time), assigning an UPDATE's columns
        // left to right whatever the server's default (MariaDB's SIMULTANEOUS_ASSIGNMENT would give a grant's
        // record the fence before it; procedures keep the mode they were created in), and reading committed rows.
        .init(vec![
            "SET time_zone = '+00:00', sql_mode = TRIM(BOTH ',' FROM \
             REPLACE(CONCAT(',', @@sql_mode, ','), ',SIMULTANEOUS_ASSIGNMENT,', ','))"
                .to_string(),
            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED".to_string(),
        ]);
    Ok((builder, address, opts))
}

/// The TLS a URL asks for: none (`ssl-mode=DISABLED`, the default, for a trusted network), or TLS with the
/// server's certificate checked against the CA file of `ssl-ca` (or, without it, the public roots) and its name
/// against the host (`ssl-mode=VERIFY_IDENTITY`). Modes that would accept an unchecked server are refused.
fn tls(mode: &str, ca: Option<&str>) -> Result<Option<SslOpts>> {
    match (mode, ca) {
        ("DISABLED", None) => Ok(None),
        ("DISABLED", Some(_)) => Err(Error::invalid(
            "ssl-mode",
            "ssl-ca is given: use ssl-mode=VERIFY_IDENTITY",
        )),
        ("VERIFY_IDENTITY", None) => Ok(Some(SslOpts::default())),
        ("VERIFY_IDENTITY", Some(path)) => {
            let pem =
                std::fs::read(path).map_err(|e| Error::invalid("ssl-ca", format!("cannot read `{path}`: {e}")))?;
            Ok(Some(
                SslOpts::default()
                    .with_root_certs(vec![pem.into()])
                    .with_disable_built_in_roots(true),
            ))
        }
        (other, _) => Err(Error::invalid(
            "ssl-mode",
            format!(
                "`{other}` is not offered: use DISABLED (plain, for a trusted network) or VERIFY_IDENTITY with \
                 ssl-ca=/path/to/ca.pem (TLS, the server's certificate and name checked)"
            ),
        )),
    }
}

impl Options {
    /// The pool's options: at most `pool_size` connections, kept while used (an idle one closes after a
    /// minute; without an idle time the driver keeps none and connects anew for every call), none reset when
    /// returned (warden leaves no session state behind; a reset would cost a round trip per call).
    pub(crate) fn pool(&self) -> PoolOpts {
        let constraints = PoolConstraints::new(0, self.pool_size).unwrap_or_default();
        PoolOpts::default()
            .with_constraints(constraints)
            .with_inactive_connection_ttl(Duration::from_secs(60))
            .with_reset_connection(false)
    }
}

/// Undoes the URL's percent-encoding of a user, password or database name (`url` leaves them encoded).
fn percent_decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut rest = s.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            out.push(b);
            rest = tail;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_are_split_from_the_driver_options_and_the_password_never_shows() {
        let (b, address, opts) =
            parse_url("mysql://app:s%40cret@db.example:3307/locks?prefix=app_&timeout_ms=300&pool_size=4").unwrap();
        assert_eq!(address, "mysql://db.example:3307/locks");
        assert_eq!(
            (opts.prefix.as_str(), opts.timeout, opts.pool_size),
            ("app_", Duration::from_millis(300), 4)
        );
        let o = mysql_async::Opts::from(b);
        assert_eq!(
            (o.user(), o.pass(), o.db_name()),
            (Some("app"), Some("s@cret"), Some("locks"))
        );
        let e = parse_url("mysql://app:s3cret@db/x?prefix=Bad;DROP").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "prefix", .. }), "{e}");
        let e = parse_url("mysql://app:s3cret@db/x?pool_max=3").unwrap_err();
        assert!(
            e.to_string().contains("pool_max") && !e.to_string().contains("s3cret"),
            "{e}"
        );
        let e = parse_url("mysql://app:s3cret@db").unwrap_err();
        assert!(
            e.to_string().contains("no database") && !e.to_string().contains("s3cret"),
            "{e}"
        );
        assert!(parse_url("mysql://db/x?timeout_ms=0").is_err());
        let e = parse_url("mysql://db/x?ssl-mode=REQUIRED").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "ssl-mode", .. }), "{e}");
        let e = parse_url("mysql://db/x?ssl-ca=/tmp/ca.pem").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "ssl-mode", .. }), "{e}");
        let e = parse_url("mysql://db/x?ssl-mode=VERIFY_IDENTITY&ssl-ca=/nonexistent/ca.pem").unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let (b, _, _) = parse_url("mysql://db/x?ssl-mode=verify_identity").unwrap();
        assert!(mysql_async::Opts::from(b).ssl_opts().is_some());
    }
}
