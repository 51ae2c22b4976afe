//! `warden analytics` shows what a server served, ranked; without a server it says what to pass.

mod common;

use common::warden;

#[test]
fn analytics_ranks_what_a_server_served() {
    let server = common::Instance::start("memory://");
    for name in ["nightly", "nightly", "report"] {
        let out = warden(&["run", "--backend", &server.url, name, "--", "true"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = warden(&["analytics", "--backend", &server.url, "--json", "--top", "1"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let top = &v["data"]["resources"];
    assert_eq!(top.as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(
        (top[0]["resource"].as_str(), top[0]["grants"].as_u64()),
        (Some("nightly"), Some(2))
    );
    assert_eq!(
        top[0]["holdMs"]["count"], 2,
        "both runs released through the server: {v}"
    );

    let out = warden(&["analytics", "--backend", &server.url, "--by", "contention"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("ranked by contention"), "{text}");
    assert!(text.lines().any(|l| l.ends_with("  report")), "{text}");

    let out = warden(&["analytics", "--backend", "memory://"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://HOST:PORT"));
    let out = warden(&["analytics", "--backend", &server.url, "--by", "latency"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contention"));
}
