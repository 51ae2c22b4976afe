//! The `redlock://` URL: its nodes and options.

#[allow(unused_imports)]
use super::*;

pub(super) fn parse_url(url: &str) -> Result<(Vec<(String, String)>, Duration)> {
    let rest = url
        .strip_prefix("redlock://")
        .ok_or_else(|| Error::invalid("backend", "not a redlock:// URL"))?;
    let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (hosts, db) = main.split_once('/').unwrap_or((main, ""));
    let (auth, hosts) = match hosts.rsplit_once('@') {
        Some((a, h)) => (format!("{a}@"), h),
        None => (String::new(), hosts),
    };
    let mut timeout = DEFAULT_NODE_TIMEOUT;
    let mut pass_on = Vec::new();
    let mut tls = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "timeout_ms" => {
                let ms: u64 = v
                    .parse()
                    .ok()
                    .filter(|ms| (1..=60_000).contains(ms))
                    .ok_or_else(|| Error::invalid("timeout_ms", "must be 1..=60000"))?;
                timeout = Duration::from_millis(ms);
            }
            "prefix" | "retain_ms" | "sweep_ms" | "inflight" => pass_on.push(pair.to_string()),
            // TLS to every node (rediss://), checked against the system's roots or the CA file of `ca`.
            "tls" => tls = crate::validate::url_switch("tls", v)?,
            "ca" => {
                tls = true;
                pass_on.push(pair.to_string());
            }
            other => {
                // Not the URL in the message: it may hold a password.
                return Err(Error::invalid(
                    "backend",
                    format!(
                        "unknown option `{other}` in the redlock:// URL; known: timeout_ms, prefix, retain_ms, \
                         sweep_ms, inflight, tls, ca"
                    ),
                ));
            }
        }
    }
    pass_on.push(format!("timeout_ms={}", timeout.as_millis()));
    let query = pass_on.join("&");
    let nodes: Vec<(String, String)> = hosts
        .split(',')
        .filter(|h| !h.trim().is_empty())
        .map(|h| {
            let h = h.trim();
            let db = if db.is_empty() { String::new() } else { format!("/{db}") };
            let scheme = if tls { "rediss" } else { "redis" };
            (format!("{scheme}://{auth}{h}{db}?{query}"), h.to_string())
        })
        .collect();
    if nodes.len() < 3 || nodes.len() % 2 == 0 {
        return Err(Error::invalid(
            "backend",
            format!(
                "Redlock needs an odd number of nodes, at least 3 (redlock://h1:p1,h2:p2,h3:p3); got {}",
                nodes.len()
            ),
        ));
    }
    Ok((nodes, timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn url_lists_odd_nodes() {
        let (nodes, t) = parse_url("redlock://a:1,b:2,c:3/2?timeout_ms=50&prefix=x:").unwrap();
        assert_eq!(t, Duration::from_millis(50));
        assert_eq!(nodes[1].0, "redis://b:2/2?prefix=x:&timeout_ms=50");
        assert_eq!(nodes[2].1, "c:3");
        let (nodes, _) = parse_url("redlock://:pw@a:1,b:2,c:3?ca=/etc/ca.pem").unwrap();
        assert_eq!(nodes[0].0, "rediss://:pw@a:1?ca=/etc/ca.pem&timeout_ms=200");
        let (nodes, _) = parse_url("redlock://a:1,b:2,c:3?tls=true").unwrap();
        assert!(nodes[0].0.starts_with("rediss://a:1"));
        let e = parse_url("redlock://:secret@a:1,b:2,c:3?x=1").unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        for bad in [
            "redlock://a:1,b:2",
            "redlock://a:1",
            "redlock://a:1,b:2,c:3?x=1",
            "redis://a:1",
        ] {
            assert!(matches!(parse_url(bad), Err(Error::InvalidArgument { .. })), "{bad}");
        }
    }
}
