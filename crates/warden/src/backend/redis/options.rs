//! The `redis://` URL: what redis-rs reads, warden's own options, and an address safe to print.

use crate::error::{Error, Result};
use crate::validate::url_number as ranged;
use std::time::Duration;

/// Options read from the `redis://` URL's query string (the rest goes to redis-rs).
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// Prepended to every lock key and internal key (`prefix`, default none).
    pub prefix: String,
    /// Bound on every call to the node (`timeout_ms`, default 1000).
    pub timeout: Duration,
    /// How often the background sweep visits a share of the slots to count expired leases (`sweep_ms`,
    /// default 1000; every slot is visited once per 16 sweeps).
    pub sweep_every: Duration,
    /// How long fence counters and lease records outlive the last lease of a resource (`retain_ms`, default
    /// 60000). After that a resource leaves nothing behind; its next fence is re-seeded from the server clock.
    pub retain: Duration,
    /// Script calls in flight at once on the connection; operations that arrive meanwhile go out together in
    /// the next call (`inflight`, default 2).
    pub inflight: usize,
    /// Replicas that must acknowledge every operation's writes before it counts (`replicas`, default 0: none):
    /// each script call is followed by `WAIT replicas wait_ms` on the same connection, and a call that fewer
    /// replicas acknowledged in time fails (retryable) even though the primary applied it.
    pub replicas: u32,
    /// How long `WAIT` may take (`wait_ms`, default 50).
    pub wait: Duration,
    /// For `rediss://`: the CA certificates (PEM) the server's certificate must chain to (`ca=/path/ca.pem`);
    /// without it, the system's roots.
    pub ca: Option<Vec<u8>>,
}

/// Splits a `redis://` URL into what redis-rs reads, warden's own options and a printable address without
/// credentials.
pub(crate) fn parse_url(url: &str) -> Result<(String, String, Options)> {
    // Not the URL in the message: it may hold a password.
    let mut u = url::Url::parse(url).map_err(|e| Error::invalid("backend", format!("not a valid URL: {e}")))?;
    if u.host_str().is_none_or(|h| h.is_empty()) {
        return Err(Error::invalid(
            "backend",
            format!("`{}` names no host; use redis://host:port/db", redact(&u)),
        ));
    }
    let mut opts = Options {
        prefix: String::new(),
        timeout: Duration::from_millis(1000),
        sweep_every: Duration::from_secs(1),
        retain: Duration::from_secs(60),
        inflight: 2,
        replicas: 0,
        wait: Duration::from_millis(50),
        ca: None,
    };
    let tls = u.scheme() == "rediss";
    if u.fragment().is_some() {
        return Err(Error::invalid(
            "backend",
            format!(
                "`{}`: a URL fragment (such as #insecure, which would skip checking the server's certificate) is \
                 refused; for a private CA give ca=/path/ca.pem",
                redact(&u)
            ),
        ));
    }
    let mut passthrough = Vec::new();
    for (k, v) in u.query_pairs() {
        match &*k {
            "prefix" => {
                if v.chars().any(char::is_control) || v.len() > 128 {
                    return Err(Error::invalid(
                        "prefix",
                        "must be at most 128 bytes without control characters",
                    ));
                }
                opts.prefix = v.into_owned()
            }
            "timeout_ms" => opts.timeout = Duration::from_millis(ranged("timeout_ms", &v, 10..=60_000)?),
            "sweep_ms" => opts.sweep_every = Duration::from_millis(ranged("sweep_ms", &v, 10..=3_600_000)?),
            "retain_ms" => opts.retain = Duration::from_millis(ranged("retain_ms", &v, 100..=86_400_000)?),
            "inflight" => opts.inflight = ranged("inflight", &v, 1..=64)? as usize,
            "replicas" => opts.replicas = ranged("replicas", &v, 0..=16)? as u32,
            "wait_ms" => opts.wait = Duration::from_millis(ranged("wait_ms", &v, 1..=60_000)?),
            "ca" if !tls => {
                return Err(Error::invalid(
                    "ca",
                    "a CA checks a TLS server's certificate: use rediss:// (or drop ca=)",
                ))
            }
            "ca" => {
                let pem = std::fs::read(&*v).map_err(|e| Error::invalid("ca", format!("cannot read `{v}`: {e}")))?;
                opts.ca = Some(pem);
            }
            _ => passthrough.push((k.into_owned(), v.into_owned())),
        }
    }
    if passthrough.is_empty() {
        u.set_query(None);
    } else {
        u.query_pairs_mut().clear().extend_pairs(passthrough);
    }
    Ok((u.to_string(), redact(&u), opts))
}

/// `redis://host:port/db` (or `rediss://`), without user, password or query.
fn redact(u: &url::Url) -> String {
    format!(
        "{}://{}:{}{}",
        if u.scheme() == "rediss" { "rediss" } else { "redis" },
        u.host_str().unwrap_or_default(),
        u.port().unwrap_or(6379),
        if u.path().len() > 1 { u.path() } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_options_are_split_off() {
        let (u, addr, o) = parse_url("redis://127.0.0.1:7000/2?prefix=app:&timeout_ms=250&retain_ms=500").unwrap();
        assert_eq!(u, "redis://127.0.0.1:7000/2");
        assert_eq!(addr, "redis://127.0.0.1:7000/2");
        assert_eq!(o.prefix, "app:");
        assert_eq!(o.timeout, Duration::from_millis(250));
        assert_eq!(o.retain, Duration::from_millis(500));
        assert!(matches!(
            parse_url("redis://h:1?timeout_ms=5"),
            Err(Error::InvalidArgument {
                field: "timeout_ms",
                ..
            })
        ));
        assert!(matches!(
            parse_url("redis://h:1?prefix=a%01b"),
            Err(Error::InvalidArgument { field: "prefix", .. })
        ));
        assert!(matches!(
            parse_url("redis://"),
            Err(Error::InvalidArgument { field: "backend", .. })
        ));
        let (_, addr, _) = parse_url("redis://user:secret@10.0.0.1:6380").unwrap();
        assert!(!addr.contains("secret"));
        let e = parse_url("rediss://user:secret@10.0.0.1:6380#insecure").unwrap_err();
        assert!(
            e.to_string().contains("#insecure") && !e.to_string().contains("secret"),
            "{e}"
        );
        let e = parse_url("redis://10.0.0.1:6380?ca=/tmp/ca.pem").unwrap_err();
        assert!(matches!(e, Error::InvalidArgument { field: "ca", .. }), "{e}");
        let e = parse_url("rediss://10.0.0.1:6380?ca=/nonexistent/ca.pem").unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");
        let (_, _, o) = parse_url("redis://h:1?replicas=1&wait_ms=20").unwrap();
        assert_eq!((o.replicas, o.wait), (1, Duration::from_millis(20)));
        assert!(matches!(
            parse_url("redis://h:1?replicas=99"),
            Err(Error::InvalidArgument { field: "replicas", .. })
        ));
        let (u, addr, _) = parse_url("rediss://:pw@10.0.0.1:6380/1?prefix=a:").unwrap();
        assert_eq!(
            (u.as_str(), addr.as_str()),
            ("rediss://:pw@10.0.0.1:6380/1", "rediss://10.0.0.1:6380/1")
        );
    }
}
