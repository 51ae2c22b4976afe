//! The `zk://` URL: servers, the chroot, credentials and warden's options, and an address safe to print.

use crate::error::{Error, Result};
use crate::validate::url_number as ranged;
use std::time::Duration;

/// What a `zk://user:password@h1:2181,h2:2181/warden?timeout_ms=2000&session_timeout=10s` URL says.
#[derive(Clone)]
pub(crate) struct Options {
    /// `h1:2181,h2:2181`: ZooKeeper's connect string, without the chroot.
    pub hosts: Vec<String>,
    /// `zk://h1:2181,h2:2181/warden`, without credentials: what errors and views show.
    pub address: String,
    /// Every node warden writes lives under this path (default `/warden`), created if missing.
    pub chroot: String,
    /// ZooKeeper digest credentials (`user:password`): nodes are then readable and writable by this user only.
    pub digest: Option<String>,
    /// Bound on every call (`timeout_ms`, default 2000).
    pub timeout: Duration,
    /// The session timeout asked of the ensemble (`session_timeout`, default 10s; the servers bound it to
    /// 2..20 ticks): a process that dies or loses the ensemble loses its holders and waiters at most this long
    /// after.
    pub session_timeout: Duration,
    /// Record every grant, so that conditional acquires are offered (`conditions=on`; see `super::records`).
    pub conditions: bool,
    /// How long a grant record outlives its grant at least (`retain_ms`, default 60000).
    pub retain: Duration,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

const USAGE: &str =
    "use zk://host:2181[,host:2181...][/chroot][?timeout_ms=2000&session_timeout=10s&conditions=on&retain_ms=60000]";

/// Parses a `zk://` URL. Errors never repeat the URL (it may hold a password).
pub(crate) fn parse_url(url: &str) -> Result<Options> {
    let rest = url
        .strip_prefix("zk://")
        .or_else(|| url.strip_prefix("zookeeper://"))
        .ok_or_else(|| Error::invalid("backend", USAGE))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let (digest, hosts) = match authority.rsplit_once('@') {
        Some((u, h)) => {
            let decoded = url::form_urlencoded::parse(format!("x={u}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            if !decoded.contains(':') {
                return Err(Error::invalid("backend", "credentials must be user:password"));
            }
            (Some(decoded), h)
        }
        None => (None, authority),
    };
    let mut list = Vec::new();
    for host in hosts.split(',') {
        let valid = host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok_and(|p| p != 0));
        if !valid {
            return Err(Error::invalid(
                "backend",
                format!("`{}` is not host:port; {USAGE}", shown(host)),
            ));
        }
        list.push(host.to_string());
    }
    let chroot = match path.trim_end_matches('/') {
        "" => "/warden".to_string(),
        p => valid_chroot(p)?,
    };
    let mut opts = Options {
        address: format!("zk://{hosts}{chroot}"),
        hosts: list,
        chroot,
        digest,
        timeout: Duration::from_millis(2000),
        session_timeout: Duration::from_secs(10),
        conditions: false,
        retain: Duration::from_millis(60_000),
    };
    for (k, v) in url::form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "timeout_ms" => opts.timeout = Duration::from_millis(ranged("timeout_ms", &v, 10..=60_000)?),
            "session_timeout" => {
                let d = humantime::parse_duration(&v)
                    .map_err(|_| Error::invalid("session_timeout", "must be a duration, e.g. 10s"))?;
                if !(Duration::from_millis(500)..=Duration::from_secs(600)).contains(&d) {
                    return Err(Error::invalid("session_timeout", "must be from 500ms to 10m"));
                }
                opts.session_timeout = d;
            }
            "conditions" => opts.conditions = crate::validate::url_switch("conditions", &v)?,
            "retain_ms" => opts.retain = Duration::from_millis(ranged("retain_ms", &v, 1000..=86_400_000)?),
            other => {
                return Err(Error::invalid(
                    "backend",
                    format!(
                        "unknown ZooKeeper option `{}`; known: timeout_ms, session_timeout, conditions, retain_ms",
                        shown(other)
                    ),
                ))
            }
        }
    }
    Ok(opts)
}

fn shown(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A chroot: `/`-separated names of `[A-Za-z0-9._-]`, none of them `.` or `..`, at most 128 characters.
fn valid_chroot(p: &str) -> Result<String> {
    let names_ok = p.len() <= 128
        && p[1..].split('/').all(|n| {
            !n.is_empty()
                && n != "."
                && n != ".."
                && n.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        });
    if !names_ok {
        return Err(Error::invalid(
            "backend",
            "the chroot must be a path like /warden or /apps/locks (letters, digits, . _ -)",
        ));
    }
    Ok(p.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let o = parse_url("zk://a:1,b:2/apps/locks?timeout_ms=300&session_timeout=4s").expect("parse");
        assert_eq!(o.hosts, ["a:1", "b:2"]);
        assert_eq!(o.chroot, "/apps/locks");
        assert_eq!((o.timeout.as_millis(), o.session_timeout.as_secs()), (300, 4));
        let o = parse_url("zk://me:s%40cret@a:1").expect("parse");
        assert_eq!(o.digest.as_deref(), Some("me:s@cret"));
        assert_eq!((o.address.as_str(), o.chroot.as_str()), ("zk://a:1/warden", "/warden"));
        for bad in [
            "zk://a",
            "zk://a:1/x/../y",
            "zk://a:1?x=1",
            "zk://a:1?session_timeout=1ms",
            "zk://:1",
            "zk://me@a:1",
            "zk://me:s%40cret@a:1?what=1",
        ] {
            let e = parse_url(bad).expect_err(bad).to_string();
            assert!(!e.contains("cret"), "{e}");
        }
    }
}
