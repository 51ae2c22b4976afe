//! The `redis+sentinel://` URL: the sentinels, the primary's name, and what every data node URL carries.

use crate::backend::redis::options::{parse_url, Options};
use crate::error::{Error, Result};

/// What a `redis+sentinel://` URL names (its Debug shows the address only: the URL may hold passwords).
#[derive(Clone)]
pub(super) struct SentinelUrl {
    scheme: &'static str,
    /// `user:password@` of the data nodes, or empty.
    auth: String,
    /// `/db` or empty.
    db: String,
    /// The query every data node URL carries.
    query: String,
    /// `host:port` of each sentinel.
    pub sentinels: Vec<String>,
    /// The name the sentinels monitor the primary by.
    pub name: String,
    /// The password of the sentinels themselves (`sentinel_password=`), if they require one.
    sentinel_password: Option<String>,
    /// The options as one data node reads them.
    pub opts: Options,
    /// The URL without credentials or query, for messages.
    pub address: String,
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.address)
    }
}

impl SentinelUrl {
    /// `redis+sentinel://[user:password@]s1:26379,s2:26379/mymaster[/db][?options]` (`rediss+sentinel://` for
    /// TLS to the sentinels and the data nodes). The options are those of `redis://`, plus `sentinel_password`.
    pub fn parse(url: &str) -> Result<Self> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("redis+sentinel://") {
            ("redis", r)
        } else if let Some(r) = url.strip_prefix("rediss+sentinel://") {
            ("rediss", r)
        } else {
            return Err(Error::invalid("backend", "not a redis+sentinel:// URL"));
        };
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (auth, rest) = match main.rsplit_once('@') {
            Some((a, h)) => (format!("{a}@"), h),
            None => (String::new(), main),
        };
        let mut parts = rest.splitn(3, '/');
        let hosts = parts.next().unwrap_or_default();
        let name = parts.next().unwrap_or_default().to_string();
        let db = match parts.next() {
            Some(d) if !d.is_empty() => format!("/{d}"),
            _ => String::new(),
        };
        let sentinels: Vec<String> = hosts
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_string)
            .collect();
        if sentinels.is_empty() || name.is_empty() || name.chars().any(|c| c.is_control() || c == ' ') {
            return Err(Error::invalid(
                "backend",
                "use redis+sentinel://sentinel1:26379,sentinel2:26379/primary-name[/db]: the sentinels and the name \
                 they monitor the primary by",
            ));
        }
        let mut sentinel_password = None;
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("sentinel_password", v)) => sentinel_password = Some(v.to_string()),
                _ => kept.push(pair),
            }
        }
        let mut me = SentinelUrl {
            scheme: if scheme == "rediss" { "rediss" } else { "redis" },
            auth,
            db,
            query: kept.join("&"),
            address: format!("{scheme}+sentinel://{}/{name}", sentinels.join(",")),
            sentinels,
            name,
            sentinel_password,
            opts: parse_url("redis://127.0.0.1")?.2,
        };
        // Checks the options (the messages never echo the URL: it may hold a password).
        me.opts = parse_url(&me.node_url("127.0.0.1:6379"))?.2;
        Ok(me)
    }

    /// The `redis://` URL of the data node at `host:port`.
    pub fn node_url(&self, host_port: &str) -> String {
        let mut u = format!("{}://{}{}{}", self.scheme, self.auth, host_port, self.db);
        if !self.query.is_empty() {
            u.push('?');
            u.push_str(&self.query);
        }
        u
    }

    /// The URL redis-rs opens for the sentinel at `host:port` (TLS as the data nodes; no database).
    pub fn sentinel_url(&self, host_port: &str) -> String {
        match &self.sentinel_password {
            Some(p) => format!("{}://:{p}@{host_port}", self.scheme),
            None => format!("{}://{host_port}", self.scheme),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinels_name_db_and_options() {
        let u = SentinelUrl::parse("redis+sentinel://app:pw@s1:26379,s2:26380/main/2?prefix=x:&sentinel_password=sp")
            .unwrap();
        assert_eq!(u.sentinels, ["s1:26379", "s2:26380"]);
        assert_eq!(u.name, "main");
        assert_eq!(u.node_url("10.0.0.5:6379"), "redis://app:pw@10.0.0.5:6379/2?prefix=x:");
        assert_eq!(u.sentinel_url("s1:26379"), "redis://:sp@s1:26379");
        assert_eq!(u.opts.prefix, "x:");
        assert_eq!(u.address, "redis+sentinel://s1:26379,s2:26380/main");
        assert!(!format!("{u:?}").contains("pw"));
    }

    #[test]
    fn a_missing_name_or_bad_option_is_refused_without_echoing_the_password() {
        for bad in [
            "redis+sentinel://u:pw@s1:26379",
            "redis+sentinel://u:pw@/main",
            "redis+sentinel://u:pw@s1:1/main?timeout_ms=0",
        ] {
            let e = SentinelUrl::parse(bad).unwrap_err().to_string();
            assert!(!e.contains("pw"), "{e}");
        }
    }
}
