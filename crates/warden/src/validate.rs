//! Input validation shared by the library and the service: every limit lives here, once.

use crate::error::{Error, Result};
use std::time::Duration;

/// Longest resource name, in bytes.
pub const MAX_RESOURCE_BYTES: usize = 512;
/// Longest client id, in bytes.
pub const MAX_CLIENT_ID_BYTES: usize = 256;
/// Shortest lease.
pub const MIN_TTL: Duration = Duration::from_millis(10);
/// Longest lease (24 hours).
pub const MAX_TTL: Duration = Duration::from_millis(86_400_000);
/// Longest wait for a lock (10 minutes).
pub const MAX_WAIT: Duration = Duration::from_millis(600_000);
/// Most permits a semaphore can have.
pub const MAX_PERMITS: u32 = 1000;
/// The highest waiter priority (and minus the lowest).
pub const MAX_PRIORITY: i32 = 100;
/// How much earlier a waiter queues per level of priority. A waiter is overtaken only by waiters of a higher
/// priority that arrive within (their priority - its priority) × this after it: so its effective priority rises
/// by one level per step it waits, and none starves.
pub const PRIORITY_STEP: Duration = Duration::from_millis(100);
/// Most resources in one lock group.
pub const MAX_GROUP_MEMBERS: usize = 32;

/// Parses a duration a person typed: `10s`, `500ms`, `2m`, `1h30m` (humantime's forms) or `0`, up to 24 h. A
/// number without a unit is refused: seconds on a command line and milliseconds in the REST API would differ by
/// 1000×.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(warden::validate::parse_duration("1m30s"), Ok(Duration::from_secs(90)));
/// assert!(warden::validate::parse_duration("30000").unwrap_err().contains("add a unit"));
/// ```
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("`{s}`: add a unit, e.g. {s}s or {s}ms"));
    }
    let d =
        humantime::parse_duration(s).map_err(|e| format!("`{s}` is not a duration like 30s, 500ms or 1h30m: {e}"))?;
    if d > Duration::from_secs(86_400) {
        return Err(format!("`{s}` is out of range (0..=24h)"));
    }
    Ok(d)
}

/// Checks a resource name: 1..=512 bytes of UTF-8 without control characters.
pub fn resource(name: &str) -> Result<()> {
    text("resource", name, MAX_RESOURCE_BYTES)
}

/// Checks a client id: 1..=256 bytes of UTF-8 without control characters.
pub fn client_id(id: &str) -> Result<()> {
    text("clientId", id, MAX_CLIENT_ID_BYTES)
}

fn text(field: &'static str, s: &str, max: usize) -> Result<()> {
    if s.is_empty() {
        return Err(Error::invalid(
            field,
            format!("must be 1..={max} bytes, got an empty string"),
        ));
    }
    if s.len() > max {
        return Err(Error::invalid(
            field,
            format!("must be 1..={max} bytes, got {} bytes", s.len()),
        ));
    }
    if let Some(c) = s.chars().find(|c| c.is_control()) {
        return Err(Error::invalid(
            field,
            format!("must not contain control characters, found U+{:04X}", c as u32),
        ));
    }
    Ok(())
}

/// Checks a lease length: 10 ms ..= 24 h.
pub fn ttl(ttl: Duration) -> Result<()> {
    if ttl < MIN_TTL || ttl > MAX_TTL {
        return Err(Error::invalid(
            "ttl",
            format!("must be 10..=86400000 ms, got {} ms", ttl.as_millis()),
        ));
    }
    Ok(())
}

/// Checks a semaphore's permit count: 1..=[`MAX_PERMITS`].
///
/// ```
/// assert!(warden::validate::permits(3).is_ok());
/// assert!(warden::validate::permits(0).is_err());
/// ```
pub fn permits(n: u32) -> Result<()> {
    if n == 0 || n > MAX_PERMITS {
        return Err(Error::invalid("permits", format!("must be 1..={MAX_PERMITS}, got {n}")));
    }
    Ok(())
}

/// Checks a waiter priority: -100..=100.
pub fn priority(p: i32) -> Result<()> {
    if !(-MAX_PRIORITY..=MAX_PRIORITY).contains(&p) {
        return Err(Error::invalid(
            "priority",
            format!("must be -{MAX_PRIORITY}..={MAX_PRIORITY} (0: plain FIFO), got {p}"),
        ));
    }
    Ok(())
}

/// Checks a conditional acquire's condition: a fencing token warden could have issued (at least 1), a window of
/// 1 ms ..= 24 h. (A backend also refuses a window longer than it remembers grants.)
pub fn condition(c: &crate::types::Condition) -> Result<()> {
    use crate::types::Condition;
    match c {
        Condition::FencingToken(0) => Err(Error::invalid(
            "ifFencingToken",
            "must be a fencing token warden issued (1 or more), got 0",
        )),
        Condition::NotGrantedWithin(d) if *d < Duration::from_millis(1) || *d > MAX_TTL => Err(Error::invalid(
            "ifNotGrantedWithin",
            format!("must be 1..=86400000 ms, got {} ms", d.as_millis()),
        )),
        _ => Ok(()),
    }
}

/// Checks a wait: 0 ..= 10 min (0 = try once).
pub fn wait(wait: Duration) -> Result<()> {
    if wait > MAX_WAIT {
        return Err(Error::invalid(
            "waitTimeout",
            format!("must be 0..=600000 ms, got {} ms", wait.as_millis()),
        ));
    }
    Ok(())
}

/// Checks a lock id's shape: 16..=64 characters of `[0-9a-zA-Z_-]`.
pub fn lock_id(id: &str) -> Result<()> {
    if id.len() < 16 || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(Error::invalid("lockId", "must be 16..=64 characters of [0-9a-zA-Z_-]"));
    }
    Ok(())
}

/// A number option of a backend URL (`timeout_ms=2000`) within `range`; the error names the option.
pub(crate) fn url_number(name: &'static str, v: &str, range: std::ops::RangeInclusive<u64>) -> Result<u64> {
    v.parse()
        .ok()
        .filter(|n| range.contains(n))
        .ok_or_else(|| Error::invalid(name, format!("must be {}..={}, got `{v}`", range.start(), range.end())))
}

/// A switch option of a backend URL (`conditions=on`, `tls=true`): on, true or 1; off, false or 0.
pub(crate) fn url_switch(name: &'static str, v: &str) -> Result<bool> {
    match v {
        "on" | "true" | "1" => Ok(true),
        "off" | "false" | "0" => Ok(false),
        _ => Err(Error::invalid(
            name,
            format!("must be on or off (true or false), got `{v}`"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_name_the_field() {
        assert!(matches!(
            resource(""),
            Err(Error::InvalidArgument { field: "resource", .. })
        ));
        assert!(resource(&"x".repeat(512)).is_ok());
        assert!(matches!(
            resource(&"x".repeat(513)),
            Err(Error::InvalidArgument { field: "resource", .. })
        ));
        assert!(matches!(
            resource("a\nb"),
            Err(Error::InvalidArgument { field: "resource", .. })
        ));
        assert!(matches!(
            client_id(&"c".repeat(257)),
            Err(Error::InvalidArgument { field: "clientId", .. })
        ));
        assert!(matches!(
            ttl(Duration::from_millis(9)),
            Err(Error::InvalidArgument { field: "ttl", .. })
        ));
        assert!(ttl(Duration::from_millis(10)).is_ok());
        assert!(matches!(
            ttl(MAX_TTL + Duration::from_millis(1)),
            Err(Error::InvalidArgument { field: "ttl", .. })
        ));
        assert!(wait(Duration::ZERO).is_ok());
        assert!(matches!(
            wait(MAX_WAIT + Duration::from_millis(1)),
            Err(Error::InvalidArgument {
                field: "waitTimeout",
                ..
            })
        ));
        assert!(lock_id("0123456789abcdef0123456789abcdef").is_ok());
        assert!(lock_id("short").is_err());
        assert!(lock_id("0123456789abcdef0123456789abcde!").is_err());
    }
}
