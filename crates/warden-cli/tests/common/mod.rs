//! Shared by the CLI tests: `warden serve` instances as child processes.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Runs the `warden` binary with `args`, without the environment's backend or client id.
#[allow(dead_code)] // not every test binary that shares this module runs one-shot commands
pub fn warden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warden"))
        .env_remove("WARDEN_BACKEND")
        .env_remove("WARDEN_CLIENT_ID")
        .args(args)
        .output()
        .expect("run warden")
}

/// The instances' waiter lease.
pub const WAITER_LEASE: Duration = Duration::from_millis(600);

/// A `warden serve` child on a free port; killed on drop.
pub struct Instance {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Instance {
    /// Starts `warden serve --backend BACKEND` with the default test waiter lease.
    pub fn start(backend: &str) -> Self {
        let port = warden_testkit::free_port().expect("free port");
        let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--backend",
                backend,
                "--waiter-lease",
                &format!("{}ms", WAITER_LEASE.as_millis()),
            ])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warden serve");
        let out = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(out).read_line(&mut line).expect("read the banner");
        assert!(line.contains("warden listening on"), "unexpected banner: {line:?}");
        Instance {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}
