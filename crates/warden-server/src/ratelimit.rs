//! Requests per principal: a token bucket each, refilled continuously. Over the limit: 429 `rate_limited`
//! with `Retry-After`. Only callers with a key are limited (an open server has no principals to tell apart).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most principals tracked; beyond it the idlest buckets (full ones) are forgotten.
const MAX_PRINCIPALS: usize = 100_000;

/// Per-principal token buckets.
#[derive(Debug)]
pub struct RateLimit {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimit {
    /// `per_second` requests per second on average, `burst` at once (both at least 1).
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimit {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `principal`; `Err(wait)` when there is none: retry after `wait`.
    pub fn take(&self, principal: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if b.len() >= MAX_PRINCIPALS && !b.contains_key(principal) {
            let (rate, burst) = (self.per_second, self.burst);
            b.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = b.entry(principal.to_string()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.per_second).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_rate() {
        let r = RateLimit::new(10, 3);
        for _ in 0..3 {
            assert!(r.take("a").is_ok());
        }
        let wait = r.take("a").expect_err("over the burst");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.take("b").is_ok(), "one principal's use limited another");
    }
}
