//! `warden run --path`: a lock on a path in a tree excludes locks below and above it, never its siblings.

mod common;

use common::warden;
use warden::Warden;

#[test]
fn run_path_excludes_below_and_above_never_siblings() {
    let server = common::Instance::start("memory://");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let w = rt.block_on(Warden::connect(&server.url)).expect("connect");
    let mut eu = rt.block_on(w.path("orders/eu").acquire()).expect("orders/eu");
    let run = |path: &str, script: &str| {
        warden(&[
            "run",
            "--backend",
            &server.url,
            "--wait",
            "0",
            "--path",
            path,
            "--",
            "sh",
            "-c",
            script,
        ])
    };
    for held in ["orders/eu/42", "orders"] {
        let o = run(held, "true");
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(75), "{held}: {err}");
        assert!(err.contains("is held"), "{err}");
    }
    let o = run("orders/us/7", "echo \"$WARDEN_FENCING_TOKEN $WARDEN_FENCING_TOKENS\"");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).to_string();
    let (token, tokens) = out.trim().split_once(' ').expect("two words");
    let tokens: serde_json::Value = serde_json::from_str(tokens).expect("JSON");
    assert_eq!(tokens["orders/us/7"].as_u64(), token.parse().ok(), "{out}");
    assert!(
        tokens["orders"].as_u64().is_some() && tokens["orders/us"].as_u64().is_some(),
        "{out}"
    );
    rt.block_on(eu.release()).expect("release");
    let o = run("orders/eu/42", "true");
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));

    let o = run("orders//eu", "true");
    assert_eq!(o.status.code(), Some(2), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stderr).contains("none empty"));
    let o = warden(&[
        "run",
        "--backend",
        &server.url,
        "--separator",
        ":",
        "jobs",
        "--",
        "true",
    ]);
    assert_eq!(o.status.code(), Some(2), "--separator needs --path");
}
