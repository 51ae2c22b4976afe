//! The `warden` command.
//!
//! Exit codes: 0 success; 1 failure (one line on stderr says what to do next); 2 usage error; 69 backend
//! (or warden server) unreachable; 70 the lease or leadership was lost while the command ran; 75 the lock
//! was not acquired in time, or its `--if-*` condition does not hold (`--skip-if-held` makes that 0); 126 / 127 the command cannot be run / was not
//! found. `run` and `elect` otherwise exit with the command's own code (128 + signal if a signal ended it).

mod analytics;
#[cfg(feature = "bench")]
mod bench_cmd;
mod child;
mod common;
mod config;
mod elect;
mod group_cmd;
mod keygen;
mod leader;
mod oneshot;
mod run;
mod serve;
mod watch;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser, Debug)]
#[command(
    name = "warden",
    version,
    about = "Distributed locks: serve the lock service, run commands under a lock or only while leader",
    after_help = "Exit codes: 0 ok, 1 failure, 2 usage, 69 backend unreachable, 70 lease lost, 75 lock not \
                  acquired, 126/127 command not runnable/not found; run/elect: the command's own code.\n\
                  --backend defaults to $WARDEN_BACKEND, else http://127.0.0.1:7070 (a local `warden serve`)."
)]
struct Cli {
    /// API key for a warden server that requires one (sent as a bearer token, never printed).
    #[arg(long, global = true, env = "WARDEN_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the lock service (REST API, /metrics, /openapi.json).
    Serve(serve::ServeArgs),
    /// Run a command while holding a lock; renew while it runs, release when it exits.
    Run(run::RunArgs),
    /// Campaign for leadership; run a command only while leader.
    Elect(elect::ElectArgs),
    /// Acquire a lease and print its lock id (nothing renews it).
    Acquire(oneshot::AcquireArgs),
    /// Release a lease by lock id.
    Release(oneshot::ReleaseArgs),
    /// Renew a lease by lock id.
    Renew(oneshot::RenewArgs),
    /// Show a lease by lock id.
    Status(oneshot::StatusArgs),
    /// List the leases a client holds.
    Held(oneshot::HeldArgs),
    /// Show who holds a resource and who waits for it.
    Queue(oneshot::QueueArgs),
    /// Show cluster-wide statistics.
    Stats(oneshot::StatsArgs),
    /// Show the hottest and most contended resources a warden server has served.
    Analytics(analytics::AnalyticsArgs),
    /// Show who leads an election; with --follow, every change of leader.
    Leader(leader::LeaderArgs),
    /// Print a resource's grants, lease ends and queue changes as they happen (`PREFIX*`: a server's events).
    Watch(watch::WatchArgs),
    /// Benchmark a backend (uniform, hot or handoff workload).
    #[cfg(feature = "bench")]
    Bench(bench_cmd::BenchArgs),
    /// A build without the benchmark says how to get one.
    #[cfg(not(feature = "bench"))]
    #[command(hide = true, disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Make a new API key and print it with the entry for `warden serve --auth-file`.
    Keygen(keygen::KeygenArgs),
    /// Print a shell completion script: `warden completions bash > /etc/bash_completion.d/warden`.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `warden man > warden.1 && man ./warden.1`.
    Man,
}

fn main() -> ExitCode {
    let cli = match config::with_config_file(Cli::command(), std::env::args_os().collect())
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    if let Some(t) = cli.token.filter(|t| !t.is_empty()) {
        common::set_token(t);
    }
    // The service logs; the other commands speak in their own one-line messages (RUST_LOG shows more).
    let default_filter = match cli.command {
        Command::Serve(_) => "warn,warden_server=info",
        _ => "error",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the async runtime: {e}");
            return ExitCode::from(common::EXIT_FAILURE);
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(a) => serve::serve(a).await,
            Command::Run(a) => run::run(a).await,
            Command::Elect(a) => elect::elect(a).await,
            Command::Acquire(a) => oneshot::acquire(a).await,
            Command::Release(a) => oneshot::release(a).await,
            Command::Renew(a) => oneshot::renew(a).await,
            Command::Status(a) => oneshot::status(a).await,
            Command::Held(a) => oneshot::held(a).await,
            Command::Queue(a) => oneshot::queue(a).await,
            Command::Stats(a) => oneshot::stats(a).await,
            Command::Analytics(a) => analytics::analytics(a).await,
            Command::Leader(a) => leader::leader(a).await,
            Command::Watch(a) => watch::watch(a).await,
            #[cfg(feature = "bench")]
            Command::Bench(a) => bench_cmd::bench(a).await,
            #[cfg(not(feature = "bench"))]
            Command::Bench { .. } => Err(common::CliError::new(
                common::EXIT_USAGE,
                "this warden was built without the benchmark (a Cargo feature): build one with \
                 `cargo build --release -p warden-cli --features bench`",
            )),
            Command::Keygen(a) => keygen::keygen(a),
            Command::Completions { shell } => {
                clap_complete::generate(shell, &mut Cli::command(), "warden", &mut std::io::stdout());
                Ok(0)
            }
            Command::Man => clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .map(|_| 0)
                .map_err(|e| common::CliError::new(common::EXIT_FAILURE, format!("cannot print the man page: {e}"))),
        }
    });
    // Do not wait for background clean-ups (a dropped waiter's queue exit) longer than a moment.
    rt.shutdown_timeout(std::time::Duration::from_millis(200));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("warden: {}", e.message);
            ExitCode::from(e.code)
        }
    }
}
