//! The `etcd://` URL: endpoints, credentials and warden's options, and an address safe to print.

use crate::error::{Error, Result};
use crate::validate::url_number as ranged;
use std::time::Duration;

/// What an `etcd://user:password@h1:2379,h2:2379/?prefix=warden/&timeout_ms=2000&session_ttl=10s` URL says.
#[derive(Clone)]
pub(crate) struct Options {
    /// `http://host:port` of every member given.
    pub endpoints: Vec<String>,
    /// `etcd://h1:2379,h2:2379`, without credentials: what errors and views show.
    pub address: String,
    /// etcd user and password (etcd's own authentication), if the URL names a user.
    pub user: Option<(String, String)>,
    /// Prepended to every key (`prefix`, default `warden/`), so applications sharing a cluster stay apart.
    pub prefix: String,
    /// Bound on every call (`timeout_ms`, default 2000).
    pub timeout: Duration,
    /// The etcd lease every key of this process hangs on (`session_ttl`, default 10s, whole seconds): when
    /// the process dies or loses etcd, its holders and waiters are gone at most this long after.
    pub session_ttl: Duration,
    /// TLS to every member: the CA that signed their certificates (`ca=/path/ca.pem`) and, for a cluster that
    /// checks client certificates, this client's certificate and key in one PEM file (`identity=/path/client.pem`).
    pub tls: Option<Tls>,
    /// Record every grant, so that conditional acquires are offered (`conditions=on`; see `super::records`).
    pub conditions: bool,
    /// How long a grant record outlives its grant at least (`retain_ms`, default 60000).
    pub retain: Duration,
}

/// Where the TLS files are.
#[derive(Clone, Debug)]
pub(crate) struct Tls {
    pub ca: String,
    pub identity: Option<String>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

const USAGE: &str = "use etcd://host:2379[,host:2379...][/?prefix=warden/&timeout_ms=2000&session_ttl=10s\
                     &conditions=on&retain_ms=60000&ca=/path/ca.pem]";

/// Parses an `etcd://` URL. Errors never repeat the URL (it may hold a password).
pub(crate) fn parse_url(url: &str) -> Result<Options> {
    let rest = url
        .strip_prefix("etcd://")
        .ok_or_else(|| Error::invalid("backend", USAGE))?;
    let (authority, query) = match rest.split_once('?') {
        Some((a, q)) => (a, q),
        None => (rest, ""),
    };
    let authority = authority.trim_end_matches('/');
    if authority.contains('/') {
        return Err(Error::invalid("backend", format!("etcd URLs take no path; {USAGE}")));
    }
    let (user, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            let (name, password) = u.split_once(':').unwrap_or((u, ""));
            let decode = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            (Some((decode(name), decode(password))), h)
        }
        None => (None, authority),
    };
    let mut endpoints = Vec::new();
    for host in hosts.split(',') {
        let Some((h, p)) = host.rsplit_once(':') else {
            return Err(Error::invalid(
                "backend",
                format!("`{}` names no port; {USAGE}", shown(host)),
            ));
        };
        if h.is_empty() || p.parse::<u16>().map_or(true, |p| p == 0) {
            return Err(Error::invalid(
                "backend",
                format!("`{}` is not host:port; {USAGE}", shown(host)),
            ));
        }
        endpoints.push(format!("{h}:{p}"));
    }
    let mut opts = Options {
        address: format!("etcd://{hosts}"),
        endpoints,
        user,
        prefix: "warden/".into(),
        timeout: Duration::from_millis(2000),
        session_ttl: Duration::from_secs(10),
        tls: None,
        conditions: false,
        retain: Duration::from_millis(60_000),
    };
    let (mut ca, mut identity): (Option<String>, Option<String>) = (None, None);
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "prefix" => opts.prefix = valid_prefix(&v)?,
            "timeout_ms" => {
                opts.timeout = Duration::from_millis(ranged("timeout_ms", &v, 10..=60_000)?);
            }
            "session_ttl" => {
                let d = humantime::parse_duration(&v)
                    .map_err(|_| Error::invalid("session_ttl", "must be a duration in whole seconds, e.g. 10s"))?;
                if d.subsec_nanos() != 0 || !(2..=3600).contains(&d.as_secs()) {
                    return Err(Error::invalid("session_ttl", "must be whole seconds from 2s to 1h"));
                }
                opts.session_ttl = d;
            }
            "conditions" => opts.conditions = crate::validate::url_switch("conditions", &v)?,
            "retain_ms" => opts.retain = Duration::from_millis(ranged("retain_ms", &v, 1000..=86_400_000)?),
            "ca" => ca = Some(v.into_owned()),
            "identity" => identity = Some(v.into_owned()),
            other => {
                return Err(Error::invalid(
                    "backend",
                    format!(
                        "unknown etcd option `{}`; known: prefix, timeout_ms, session_ttl, conditions, retain_ms, ca, identity",
                        shown(other)
                    ),
                ))
            }
        }
    }
    opts.tls = match (ca, identity) {
        (Some(ca), identity) => Some(Tls { ca, identity }),
        (None, None) => None,
        (None, Some(_)) => {
            return Err(Error::invalid(
                "identity",
                "a client certificate needs TLS: add ca=/path/ca.pem, the CA that signed the members' certificates",
            ))
        }
    };
    let scheme = if opts.tls.is_some() { "https" } else { "http" };
    opts.endpoints = opts.endpoints.iter().map(|h| format!("{scheme}://{h}")).collect();
    Ok(opts)
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

fn valid_prefix(v: &str) -> Result<String> {
    if v.is_empty() || v.len() > 64 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "prefix",
            "must be 1..=64 printable ASCII characters, e.g. warden/",
        ));
    }
    Ok(v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o = parse_url("etcd://a:1,b:2/?prefix=app/&timeout_ms=300&session_ttl=5s").expect("parse");
        assert_eq!(o.endpoints, ["http://a:1", "http://b:2"]);
        assert_eq!(
            (o.prefix.as_str(), o.timeout.as_millis(), o.session_ttl.as_secs()),
            ("app/", 300, 5)
        );
        assert!(!o.conditions);
        let o = parse_url("etcd://a:1/?conditions=on&retain_ms=5000").expect("parse");
        assert_eq!((o.conditions, o.retain.as_millis()), (true, 5000));
        let o = parse_url("etcd://me:s%40cret@a:1").expect("parse");
        assert_eq!(o.user, Some(("me".into(), "s@cret".into())));
        assert_eq!(o.address, "etcd://a:1");
        for bad in [
            "etcd://a",
            "etcd://a:1/x",
            "etcd://a:1?x=1",
            "etcd://a:1?session_ttl=500ms",
            "etcd://a:1?conditions=maybe",
            "etcd://a:1?retain_ms=5",
            "etcd://:1",
        ] {
            let e = parse_url(bad).expect_err(bad).to_string();
            assert!(!e.contains("cret"), "{e}");
        }
    }
}
