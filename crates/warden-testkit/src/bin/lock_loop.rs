//! Test helper: acquires and releases distinct resources on the backend at `argv[1]` in a loop, printing the
//! number of completed cycles after each one, until killed. Used to check what a SIGKILLed process's
//! statistics lose.

use std::io::Write;

#[tokio::main]
async fn main() {
    let Some(url) = std::env::args().nth(1) else {
        eprintln!("usage: lock_loop BACKEND_URL");
        std::process::exit(2);
    };
    let warden = match warden::Warden::connect(&url).await {
        Ok(w) => w,
        Err(e) => {
            eprintln!("lock_loop: {e}");
            std::process::exit(1);
        }
    };
    let mut out = std::io::stdout();
    for n in 1u64.. {
        match warden.lock(format!("loop:{n}")).auto_renew(false).acquire().await {
            Ok(mut g) => {
                if g.release().await.is_err() {
                    std::process::exit(1);
                }
            }
            Err(e) => {
                eprintln!("lock_loop: {e}");
                std::process::exit(1);
            }
        }
        if writeln!(out, "{n}").and_then(|_| out.flush()).is_err() {
            return;
        }
    }
}
