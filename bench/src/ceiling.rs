//! The ceilings of the same Redis, measured in the same run: `redis-benchmark` for the commands of a plain
//! lock cycle and a trivial script, and the server time warden's scripts took (`INFO commandstats`).

/// Ceiling figures from `redis-benchmark` against the same Redis, one connection with 50 requests in flight.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Ceiling {
    /// The command measured.
    pub command: String,
    /// Requests per second.
    pub rps: f64,
}

/// Runs `redis-benchmark -c 1 -P 50` for the commands of a plain lock cycle (SET NX PX + DEL) and for
/// warden's acquire script (EVALSHA) on fresh random resources.
pub fn redis_ceiling(host: &str, port: u16, requests: u64) -> anyhow::Result<Vec<Ceiling>> {
    let sha = redis_cli(host, port, &["SCRIPT", "LOAD", CEILING_SCRIPT])?
        .trim()
        .to_string();
    let cases: Vec<(String, Vec<String>)> = vec![
        (
            "SET key token NX PX 10000".into(),
            args(&["SET", "ceil:__rand_int__", "token", "NX", "PX", "10000"]),
        ),
        ("DEL key".into(), args(&["DEL", "ceil:__rand_int__"])),
        (
            "EVALSHA (a Lua SET NX PX)".into(),
            args(&["EVALSHA", &sha, "1", "ceilx:__rand_int__", "token"]),
        ),
    ];
    let mut out = Vec::new();
    for (name, cmd) in cases {
        let o = std::process::Command::new("redis-benchmark")
            .args([
                "-h",
                host,
                "-p",
                &port.to_string(),
                "-c",
                "1",
                "-P",
                "50",
                "-n",
                &requests.to_string(),
                "-r",
                "1000000",
                "-q",
            ])
            .args(&cmd)
            .output()
            .map_err(|e| anyhow::anyhow!("redis-benchmark not runnable ({e}): install redis-tools"))?;
        let text = String::from_utf8_lossy(&o.stdout).to_string();
        let rps = text
            .split_whitespace()
            .collect::<Vec<_>>()
            .windows(2)
            .filter(|w| w[1].starts_with("requests"))
            .filter_map(|w| w[0].parse::<f64>().ok())
            .next_back()
            .ok_or_else(|| anyhow::anyhow!("could not read redis-benchmark output: {text}"))?;
        out.push(Ceiling { command: name, rps });
    }
    Ok(out)
}

/// Resets Redis's command statistics (before a run whose server-side cost is wanted).
pub fn redis_reset_stats(host: &str, port: u16) -> anyhow::Result<()> {
    redis_cli(host, port, &["CONFIG", "RESETSTAT"]).map(|_| ())
}

/// Server-side microseconds spent in EVALSHA since the last reset, from `INFO commandstats`.
pub fn redis_evalsha_usec(host: &str, port: u16) -> anyhow::Result<f64> {
    let info = redis_cli(host, port, &["INFO", "commandstats"])?;
    info.lines()
        .find(|l| l.starts_with("cmdstat_evalsha:"))
        .and_then(|l| l.split(",usec=").nth(1))
        .and_then(|s| s.split(',').next())
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no EVALSHA in INFO commandstats"))
}

fn redis_cli(host: &str, port: u16, a: &[&str]) -> anyhow::Result<String> {
    let out = std::process::Command::new("redis-cli")
        .args(["-h", host, "-p", &port.to_string()])
        .args(a)
        .output()
        .map_err(|e| anyhow::anyhow!("redis-cli not runnable ({e}): install redis-tools"))?;
    Ok(String::from_utf8_lossy(&out.stdout).to_string())
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// A minimal Lua lock (SET NX PX in a script) to price script overhead in the ceiling.
const CEILING_SCRIPT: &str = "return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', 10000)";
