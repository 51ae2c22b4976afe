//! Test helper for the chaos suite: a client process that contends for one lock on the backend at
//! `argv[1]` and, inside each hold, writes its fencing token to a fence-checking store on the Redis at
//! `argv[2]` (a Lua script refuses a token below the highest it accepted). Prints one line per hold,
//! `start_ns end_ns fence accepted`, on the system-wide monotonic clock, so the parent can check the
//! history while it SIGSTOPs and SIGCONTs this process.

use std::io::Write;
use std::time::Duration;
use tokio::time::Instant;

/// The store: accepts a token not below the highest so far, appending it to the accepted list.
const STORE: &str = r"
local h = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) < h then redis.call('INCR', KEYS[3]) return 0 end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1";

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(store)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: fenced_client BACKEND_URL STORE_REDIS_URL");
        std::process::exit(2);
    };
    let warden = match warden::Warden::connect(url).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("fenced_client: {e}");
            std::process::exit(1);
        }
    };
    let store = match redis::Client::open(store.as_str()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fenced_client: {e}");
            std::process::exit(1);
        }
    };
    let mut conn = match store.get_multiplexed_async_connection().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fenced_client: {e}");
            std::process::exit(1);
        }
    };
    let script = redis::Script::new(STORE);
    // Instant -> shared clock: the offset between the two, taken once.
    let (i0, n0) = (Instant::now(), warden_testkit::mono_ns());
    let ns = |t: Instant| n0 + t.saturating_duration_since(i0).as_nanos();
    let mut out = std::io::stdout();
    loop {
        let mut g = match warden
            .lock("chaos:procs")
            .ttl(Duration::from_millis(300))
            .wait(Duration::from_secs(10))
            .acquire()
            .await
        {
            Ok(g) => g,
            Err(_) => continue,
        };
        let start = Instant::now();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let accepted: i64 = script
            .key("chaos:store:highest")
            .key("chaos:store:accepted")
            .key("chaos:store:refused")
            .arg(g.fencing_token())
            .invoke_async(&mut conn)
            .await
            .unwrap_or(-1);
        let end = Instant::now().min(g.valid_until());
        let _ = g.release().await;
        if writeln!(out, "{} {} {} {accepted}", ns(start), ns(end), g.fencing_token())
            .and_then(|_| out.flush())
            .is_err()
        {
            return;
        }
    }
}
