//! The command line with API keys: `keygen` makes the auth file's entries, `serve --auth-file` requires the
//! keys and reloads them on SIGHUP, `--token` / `WARDEN_TOKEN` carry them, and a server without keys refuses
//! to listen beyond loopback.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn warden() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.env_remove("WARDEN_BACKEND")
        .env_remove("WARDEN_TOKEN")
        .env_remove("WARDEN_AUTH_FILE")
        .env("RUST_LOG", "warn");
    c
}

/// `warden keygen`: the entry on stdout (to append to the file), the key on stderr only.
fn keygen(args: &[&str]) -> (String, String) {
    let o = warden().arg("keygen").args(args).output().expect("keygen");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let entry = String::from_utf8_lossy(&o.stdout).into_owned();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    let key = err
        .split_whitespace()
        .find(|w| w.starts_with("wdn_"))
        .expect("the key on stderr")
        .to_string();
    assert!(!entry.contains(&key), "the entry holds the key itself: {entry}");
    (key, entry)
}

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(auth_file: &std::path::Path) -> Server {
    let port = warden_testkit::free_port().expect("free port");
    let mut child = warden()
        .args(["serve", "--listen", &format!("127.0.0.1:{port}"), "--auth-file"])
        .arg(auth_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("banner");
    assert!(line.contains("API keys required"), "{line}");
    Server {
        child,
        url: format!("http://127.0.0.1:{port}"),
    }
}

fn cli(url: &str, token: Option<&str>, args: &[&str]) -> Output {
    let mut c = warden();
    c.args(args).env("WARDEN_BACKEND", url);
    if let Some(t) = token {
        c.env("WARDEN_TOKEN", t);
    }
    c.output().expect("warden")
}

#[test]
fn keys_from_keygen_admit_their_principal_and_a_hangup_reloads_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("auth.toml");
    let (jobs, entry) = keygen(&["--principal", "jobs", "--namespace", "jobs:*"]);
    std::fs::write(&file, &entry).expect("write auth file");
    let s = serve(&file);

    let o = cli(&s.url, None, &["stats"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("WARDEN_TOKEN"), "{err}");

    let o = cli(
        &s.url,
        Some(&jobs),
        &["acquire", "jobs:nightly", "--client-id", "n1", "--ttl", "60s"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = cli(&s.url, Some(&jobs), &["acquire", "other:1", "--client-id", "n1"]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("jobs:*") && !err.contains(&jobs), "{err}");
    // A wrong key is never echoed back.
    let o = cli(&s.url, Some("wdn_not-a-key"), &["stats"]);
    assert!(!String::from_utf8_lossy(&o.stderr).contains("wdn_not-a-key"));

    // A second key appended and the server told: it works at once, without a restart.
    let (ops, entry) = keygen(&["--principal", "ops", "--role", "observer"]);
    let o = cli(&s.url, Some(&ops), &["stats"]);
    assert_eq!(o.status.code(), Some(1), "a key not yet in the file was accepted");
    let mut text = std::fs::read_to_string(&file).expect("read");
    text.push('\n');
    text.push_str(&entry);
    std::fs::write(&file, text).expect("append");
    let hup = Command::new("kill")
        .args(["-HUP", &s.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(hup.success());
    // Polled: the reload is asynchronous to the signal and says nothing to the client.
    let admitted = (0..100).any(|_| {
        let o = cli(&s.url, Some(&ops), &["stats", "--json"]);
        if o.status.success() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
        false
    });
    assert!(admitted, "SIGHUP did not reload the auth file");
    let o = cli(&s.url, Some(&ops), &["stats", "--json"]);
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).expect("stats JSON");
    assert_eq!(stats["data"]["activeLocks"], 1, "the reload dropped the held lock");
}

#[test]
fn without_keys_the_server_stays_on_loopback_unless_told() {
    let port = warden_testkit::free_port().expect("free port");
    let o = warden()
        .args(["serve", "--listen", &format!("0.0.0.0:{port}")])
        .output()
        .expect("serve");
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--auth-file") && err.contains("--insecure-no-auth") && err.lines().count() == 1,
        "{err}"
    );
}
