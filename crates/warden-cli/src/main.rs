//! The `warden` command. Exit codes: 0 success; 1 error (one line on stderr says what to do); 2 usage error;
//! 69 backend unavailable; 75 lock not acquired in time (`--skip-if-held` makes that 0); for `run` and
//! `elect`, otherwise the command's own exit code.

mod serve;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit code: the backend (or warden server) cannot be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit code: the lock was not acquired before the wait ran out.
pub const EXIT_NOT_ACQUIRED: u8 = 75;

#[derive(Parser, Debug)]
#[command(
    name = "warden",
    version,
    about = "Distributed locks: serve the lock service, run commands under a lock"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the lock service (REST API, /metrics, /openapi.json).
    Serve(serve::ServeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,warden_server=info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::serve(a).await,
        }
    });
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(1)
        }
    }
}
