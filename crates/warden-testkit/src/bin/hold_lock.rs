//! Test helper: takes the lock `argv[2]` on the backend at `argv[1]` with a ttl of `argv[3]` ms (renewed),
//! prints `held FENCE`, then holds it until its lost signal fires, prints `lost` and exits. Tests SIGKILL or
//! SIGSTOP it to play a holder that dies or stalls.

use std::io::Write;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(url), Some(name), Some(ttl)) = (args.get(1), args.get(2), args.get(3).and_then(|t| t.parse().ok()))
    else {
        eprintln!("usage: hold_lock BACKEND_URL RESOURCE TTL_MS");
        std::process::exit(2);
    };
    let guard = match warden::Warden::connect(url).await {
        Ok(w) => w.lock(name.as_str()).ttl(Duration::from_millis(ttl)).acquire().await,
        Err(e) => Err(e),
    };
    let guard = match guard {
        Ok(g) => g,
        Err(e) => {
            eprintln!("hold_lock: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "held {}", guard.fencing_token()).and_then(|_| out.flush());
    guard.lost().await;
    let _ = writeln!(out, "lost").and_then(|_| out.flush());
}
