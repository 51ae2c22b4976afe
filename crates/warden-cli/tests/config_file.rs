//! `warden serve --config warden.toml`: the file's settings apply, flags and environment variables win over
//! them, and a wrong file is a usage error naming the file and the setting.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
    let p = dir.path().join("warden.toml");
    std::fs::write(&p, text).expect("write warden.toml");
    p
}

/// Starts `warden serve` with `args` and `env`; returns the first line it prints (where it listens).
fn banner(args: &[&str], env: &[(&str, &str)]) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_warden"))
        .arg("serve")
        .args(args)
        .env_remove("WARDEN_LISTEN")
        .env_remove("WARDEN_CONFIG")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn warden serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("read the banner");
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[test]
fn the_files_settings_apply_and_flags_and_environment_win() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (p1, p2, p3) = (
        warden_testkit::free_port().expect("port"),
        warden_testkit::free_port().expect("port"),
        warden_testkit::free_port().expect("port"),
    );
    let file = write(
        &dir,
        &format!("listen = \"127.0.0.1:{p1}\"\nheader_timeout = \"20s\"\nmax-waiters = 500\n"),
    );
    let file = file.to_str().expect("utf-8 path");
    let line = banner(&["--config", file], &[]);
    assert!(line.contains(&format!("127.0.0.1:{p1}")), "{line}");
    let line = banner(&["--config", file, "--listen", &format!("127.0.0.1:{p2}")], &[]);
    assert!(
        line.contains(&format!("127.0.0.1:{p2}")),
        "the flag did not win: {line}"
    );
    let line = banner(
        &[],
        &[("WARDEN_CONFIG", file), ("WARDEN_LISTEN", &format!("127.0.0.1:{p3}"))],
    );
    assert!(
        line.contains(&format!("127.0.0.1:{p3}")),
        "the environment did not win: {line}"
    );
}

#[test]
fn a_wrong_file_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (text, says) in [
        ("bogus = 1\n", "unknown setting `bogus`; known: listen, backend"),
        ("header-timeout = \"30000\"\n", "add a unit"),
        ("listen = [1]\n", "must be a string, a whole number or true/false"),
        ("listen = \n", "not valid TOML"),
    ] {
        let file = write(&dir, text);
        let out = Command::new(env!("CARGO_BIN_EXE_warden"))
            .env_remove("WARDEN_LISTEN")
            .args(["serve", "--config"])
            .arg(&file)
            .output()
            .expect("run warden serve");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{text}: {err}");
        assert!(err.contains("warden.toml") && err.contains(says), "{text}: {err}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_warden"))
        .args(["serve", "--config", "/nonexistent/warden.toml"])
        .output()
        .expect("run warden serve");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read it"));
}

/// The example settings in docs/deploy are a file `serve` accepts (here with the backend and address
/// overridden by flags, as flags win).
#[test]
fn the_example_settings_file_is_accepted() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy/warden.toml");
    let port = warden_testkit::free_port().expect("port");
    let listen = format!("127.0.0.1:{port}");
    let line = banner(
        &["--config", example, "--backend", "memory://", "--listen", &listen],
        &[],
    );
    assert!(line.contains(&listen), "{line}");
}

/// The example systemd unit in docs/deploy passes `systemd-analyze verify` (where systemd is installed), with
/// its ExecStart pointed at the binary under test.
#[test]
fn the_example_systemd_unit_verifies() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        eprintln!("systemd-analyze is not installed: the unit was not verified");
        return;
    };
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/deploy/warden.service"))
        .expect("read the unit");
    assert!(unit.contains("ExecStart=/usr/local/bin/warden serve --config /etc/warden/warden.toml"));
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warden.service");
    std::fs::write(
        &path,
        unit.replace("/usr/local/bin/warden", env!("CARGO_BIN_EXE_warden")),
    )
    .expect("write");
    let out = Command::new(analyze)
        .arg("verify")
        .arg(&path)
        .output()
        .expect("run systemd-analyze");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
