//! `warden watch NAME` prints a resource's changes as they happen; `warden watch 'PREFIX*'` a server's events
//! under a prefix; a prefix without a server is a usage error that says what to pass.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

fn warden() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.env_remove("WARDEN_BACKEND").env_remove("WARDEN_CLIENT_ID");
    c
}

/// A `warden watch` child and its stdout lines, read on a thread.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Watch {
    fn start(args: &[&str]) -> Watch {
        let mut child = warden()
            .arg("watch")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn warden watch");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Watch { child, lines }
    }

    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(5))
            .expect("a line within 5 s")
    }

    /// The next line about `resource`, skipping others.
    fn next_on(&self, resource: &str) -> String {
        loop {
            let line = self.next();
            if line.contains(&format!(" {resource} ")) {
                return line;
            }
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cli(args: &[&str]) -> String {
    let out = warden().args(args).output().expect("run warden");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn watch_prints_grants_and_ends_of_a_resource_and_a_prefix() {
    let server = common::Instance::start("memory://");
    let url = server.url.as_str();
    let json = Watch::start(&["jobs", "--backend", url, "--json", "--interval", "50ms"]);
    let snapshot: serde_json::Value = serde_json::from_str(&json.next()).expect("JSON line");
    assert_eq!(snapshot["event"], "snapshot");
    let prefix = Watch::start(&["jo*", "--backend", url]);
    let text = Watch::start(&["jobs", "--backend", url, "--interval", "50ms"]);
    assert!(text.next().contains("now      jobs  free; nobody waiting"));
    // The prefix stream prints nothing until an event: lock `jo:sync` until it shows one, so it is subscribed.
    let subscribed = (0..100).any(|_| {
        let id = cli(&[
            "acquire",
            "jo:sync",
            "--backend",
            url,
            "--client-id",
            "sync",
            "--ttl",
            "30s",
        ]);
        cli(&["release", &id, "--backend", url, "--client-id", "sync"]);
        prefix.lines.recv_timeout(Duration::from_millis(100)).is_ok()
    });
    assert!(subscribed, "the prefix watch printed nothing");
    let id = cli(&[
        "acquire",
        "jobs",
        "--backend",
        url,
        "--client-id",
        "cli-test",
        "--ttl",
        "30s",
    ]);
    let granted: serde_json::Value = serde_json::from_str(&json.next()).expect("JSON line");
    assert_eq!(granted["event"], "granted");
    assert_eq!(granted["data"]["clientId"], "cli-test");
    let line = text.next();
    assert!(
        line.contains("granted  jobs  client=cli-test  exclusive  fence="),
        "{line}"
    );
    let line = prefix.next_on("jobs");
    assert!(line.contains("grant") && line.contains("client=cli-test"), "{line}");
    cli(&["release", &id, "--backend", url, "--client-id", "cli-test"]);
    let ended: serde_json::Value = serde_json::from_str(&json.next()).expect("JSON line");
    assert_eq!(ended["event"], "ended");
    assert!(text.next().contains("ended    jobs  client=cli-test"));
    assert!(prefix.next_on("jobs").contains("release"));
}

#[test]
fn a_prefix_needs_a_server() {
    let out = warden()
        .args(["watch", "jobs*", "--backend", "memory://"])
        .output()
        .expect("run warden");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs a warden server"));
}
