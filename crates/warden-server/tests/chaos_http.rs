//! The chaos suite through the REST API: a long queue whose waiters die while they wait, and a connection cap
//! filled by slow, silent and idle clients. Each scenario prints its figure (`-- --nocapture`).

mod common;

use common::*;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden::Warden;
use warden_server::ServerConfig;
use warden_testkit::RedisServer;

/// Waiters in the queue; every fifth dies while it waits.
const WAITERS: usize = 500;
const DIES_ONE_IN: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_500_waiters_fifo_while_some_die_in_the_queue() {
    let redis = RedisServer::start();
    let w = Warden::connect(&format!("{}?timeout_ms=1000", redis.url()))
        .await
        .expect("connect");
    let s = TestServer::start(w).await;
    let c = client();
    let acquire = s.url("/api/locks/acquire");
    let (st, v) = post(
        &c,
        &acquire,
        json!({"resource": "fifo", "clientId": "holder", "ttl": 60000}),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let holder = v["data"]["lockId"].as_str().expect("lockId").to_string();
    // Waiters arrive one at a time (each is queued before the next starts), so arrival order is known.
    let mut waiters = Vec::new();
    for i in 0..WAITERS {
        let (c2, acquire, release) = (client(), acquire.clone(), s.url("/api/locks/release"));
        waiters.push(tokio::spawn(async move {
            let (st, v) = post(
                &c2,
                &acquire,
                json!({"resource": "fifo", "clientId": format!("w{i}"), "ttl": 60000, "waitTimeout": 120000}),
            )
            .await;
            assert_eq!(st, 201, "waiter {i}: {v}");
            let fence = v["data"]["fencingToken"].as_u64().expect("fencingToken");
            let id = v["data"]["lockId"].as_str().expect("lockId").to_string();
            let (st, v) = post(&c2, &release, json!({"lockId": id, "clientId": format!("w{i}")})).await;
            assert_eq!(st, 200, "waiter {i} release: {v}");
            (i, fence)
        }));
        wait_queue_len(&c, &s, "fifo", i as u64 + 1).await;
    }
    // Some die while queued: their connections drop, and the server takes them out of the queue.
    let mut survivors = Vec::new();
    for (i, t) in waiters.into_iter().enumerate() {
        if i % DIES_ONE_IN == DIES_ONE_IN - 1 {
            t.abort();
        } else {
            survivors.push(t);
        }
    }
    let alive = survivors.len() as u64;
    wait_queue_len(&c, &s, "fifo", alive).await;
    let started = Instant::now();
    let (st, v) = post(
        &c,
        &s.url("/api/locks/release"),
        json!({"lockId": holder, "clientId": "holder"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let mut grants = Vec::new();
    for t in survivors {
        grants.push(t.await.expect("a surviving waiter failed"));
    }
    let took = started.elapsed();
    // Grant order is fence order; it must be arrival order.
    grants.sort_by_key(|&(_, fence)| fence);
    let order: Vec<usize> = grants.iter().map(|&(i, _)| i).collect();
    let mut expected = order.clone();
    expected.sort_unstable();
    let out_of_order = order.iter().zip(&expected).filter(|(a, b)| a != b).count();
    println!(
        "{WAITERS} waiters, {} died in the queue: {alive} served in {:.0} ms ({:.2} ms per handover), {out_of_order} out of arrival order",
        WAITERS as u64 - alive,
        took.as_secs_f64() * 1000.0,
        took.as_secs_f64() * 1000.0 / alive as f64
    );
    assert_eq!(order, expected, "waiters were not served in arrival order");
    assert!(
        took < Duration::from_secs(20),
        "serving {alive} waiters took {took:?}: dead waiters blocked the queue"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_slow_silent_and_idle_clients_at_the_connection_cap() {
    const CAP: usize = 30;
    let deadline = Duration::from_millis(400);
    let warden = Warden::connect("memory://").await.expect("memory backend");
    let config = ServerConfig::default()
        .with_connection_limits(CAP, deadline)
        .with_body_read_timeout(deadline);
    let s = TestServer::start_with(warden, config).await;
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut hogs = Vec::new();
    // Silent, idle after one request (keep-alive), dribbling a request head, dribbling a body: the cap is full.
    for i in 0..CAP {
        let mut tcp = TcpStream::connect(&addr).await.expect("connect");
        let what: &[u8] = match i % 4 {
            0 => b"",
            1 => b"GET /health HTTP/1.1\r\nHost: w\r\n\r\n",
            2 => b"POST /api/locks/acquire HTTP/1.1\r\nHost: w",
            _ => b"POST /api/locks/acquire HTTP/1.1\r\nHost: w\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{",
        };
        tcp.write_all(what).await.expect("write");
        let silent = i % 4 < 2;
        hogs.push(tokio::spawn(async move {
            let (mut rd, mut wr) = tcp.into_split();
            let mut buf = [0u8; 1024];
            // Silent ones wait; the others dribble one byte every 50 ms. Either way until the server closes.
            let dribble = async {
                loop {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if silent || wr.write_all(b" ").await.is_err() {
                        if silent {
                            continue;
                        }
                        return;
                    }
                }
            };
            let closed = async { while matches!(rd.read(&mut buf).await, Ok(n) if n > 0) {} };
            tokio::select! {
                _ = dribble => {}
                _ = closed => {}
            }
        }));
    }
    // Meanwhile, well-behaved clients keep calling: each is answered within the deadline and a margin.
    let c = client();
    let started = Instant::now();
    let mut worst = Duration::ZERO;
    let mut served = 0;
    while started.elapsed() < deadline * 4 {
        let t = Instant::now();
        let (st, v) = tokio::time::timeout(Duration::from_secs(5), get(&c, &s.url("/api/locks/health")))
            .await
            .expect("a normal request was starved by slow clients");
        assert_eq!(st, 200, "{v}");
        worst = worst.max(t.elapsed());
        served += 1;
    }
    println!(
        "{CAP} silent, idle and dribbling clients filling a {CAP}-connection cap: {served} normal requests served, worst wait {:.0} ms (deadline {} ms)",
        worst.as_secs_f64() * 1000.0,
        deadline.as_millis()
    );
    assert!(
        worst < deadline * 2 + Duration::from_millis(300),
        "worst wait {worst:?}"
    );
    for h in hogs {
        tokio::time::timeout(Duration::from_secs(5), h)
            .await
            .expect("a slow client's connection was never closed")
            .expect("hog task");
    }
    s.stop().await;
}
