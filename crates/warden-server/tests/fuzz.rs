//! Random JSON (and random bytes) at every POST endpoint: never a 5xx, never a panic, always the envelope.

mod common;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use warden::Warden;

const KEYS: &[&str] = &[
    "resource",
    "clientId",
    "ttl",
    "waitTimeout",
    "type",
    "mode",
    "lockId",
    "extra",
];

fn random_string(rng: &mut StdRng) -> String {
    match rng.random_range(0..6) {
        0 => String::new(),
        1 => "x".repeat(rng.random_range(500..700)),
        2 => (0..rng.random_range(1..20))
            .map(|_| char::from(rng.random_range(0u8..32)))
            .collect(),
        3 => ["exclusive", "shared", "read-write", "read", "write"][rng.random_range(0..5)].into(),
        4 => (0..rng.random_range(1..12))
            .map(|_| char::from_u32(rng.random_range(0x20..0x2FFF)).unwrap_or('?'))
            .collect(),
        _ => format!("r{}", rng.random_range(0..1_000_000u32)),
    }
}

fn random_value(rng: &mut StdRng, key: &str, depth: u32) -> Value {
    match rng.random_range(0..9) {
        0 => Value::Null,
        1 => Value::Bool(rng.random()),
        // Waits are kept short or out of range so that a valid random acquire never parks for long.
        2 if key == "waitTimeout" => json!(rng.random_range(0..30)),
        2 => json!(rng.random_range(-5i64..100_000_000)),
        3 => json!(rng.random::<i64>()),
        4 => json!(rng.random::<f64>() * 1e6),
        5 | 6 => Value::String(random_string(rng)),
        7 if depth < 2 => Value::Array(
            (0..rng.random_range(0..4))
                .map(|_| random_value(rng, key, depth + 1))
                .collect(),
        ),
        _ if depth < 2 => random_object(rng, depth + 1),
        _ => json!(u64::MAX),
    }
}

fn random_object(rng: &mut StdRng, depth: u32) -> Value {
    let mut m = Map::new();
    for _ in 0..rng.random_range(0..7) {
        let k = KEYS[rng.random_range(0..KEYS.len())];
        let v = random_value(rng, k, depth);
        m.insert(k.to_string(), v);
    }
    // Often a well-formed core, so the deeper validation paths run too.
    if rng.random_bool(0.5) {
        m.entry("resource")
            .or_insert_with(|| json!(format!("fz{}", rng.random_range(0..1_000_000u32))));
        m.entry("clientId").or_insert_with(|| json!("fuzzer"));
        if let Some(w) = m.get("waitTimeout") {
            if w.as_u64().is_some_and(|w| w > 30) {
                m.insert("waitTimeout".into(), json!(0));
            }
        }
    }
    Value::Object(m)
}

#[tokio::test]
async fn random_json_never_5xx() {
    let s = TestServer::start(Warden::connect("memory://").await.unwrap()).await;
    let c = client();
    let mut rng = StdRng::seed_from_u64(0x5eed_0f3a_7d00);
    let endpoints = [
        "/api/locks/acquire",
        "/api/locks/exclusive",
        "/api/locks/shared",
        "/api/locks/read-write",
        "/api/locks/release",
        "/api/locks/renew",
    ];
    let mut by_status = std::collections::BTreeMap::new();
    for i in 0..2400 {
        let ep = endpoints[i % endpoints.len()];
        let body: Vec<u8> = match rng.random_range(0..10) {
            0 => (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
            1 => random_value(&mut rng, "x", 0).to_string().into_bytes(),
            _ => random_object(&mut rng, 0).to_string().into_bytes(),
        };
        let shown = String::from_utf8_lossy(&body).chars().take(200).collect::<String>();
        let r = c.post(s.url(ep)).body(body).send().await.expect("server answers");
        let status = r.status().as_u16();
        let text = r.text().await.expect("body");
        assert!(status < 500, "{ep} answered {status} to {shown:?}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{ep}: non-JSON {text:?} ({e})"));
        if status >= 400 {
            assert_eq!(v["success"], false, "{ep} {shown:?}: {v}");
            assert!(
                v["code"].is_string() && v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{v}"
            );
        } else {
            assert_eq!(v["success"], true, "{v}");
        }
        *by_status.entry(status).or_insert(0u32) += 1;
    }
    // The generator reaches both the success and the refusal paths.
    assert!(by_status.get(&201).copied().unwrap_or(0) > 50, "{by_status:?}");
    assert!(by_status.get(&400).copied().unwrap_or(0) > 500, "{by_status:?}");
    // And the server is still healthy afterwards.
    let (st, v) = get(&c, &s.url("/health")).await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}
