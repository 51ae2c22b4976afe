//! Connection limits of `warden_server::run`: silent, slow and idle connections are given up at the head
//! deadline, and connections beyond the cap wait for a free slot.

mod common;

use common::TestServer;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warden::Warden;
use warden_server::ServerConfig;

const HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: warden\r\n\r\n";
/// The head deadline of the servers that test it.
const DEADLINE: Duration = Duration::from_millis(300);

async fn server(max_connections: usize, head_deadline: Duration) -> TestServer {
    let warden = Warden::connect("memory://").await.expect("memory backend");
    let config = ServerConfig::default().with_connection_limits(max_connections, head_deadline);
    TestServer::start_with(warden, config).await
}

async fn connect(s: &TestServer) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("connect")
}

/// Reads until the server closes the connection (EOF or reset), which must happen at [`DEADLINE`], not
/// before it and not long after; returns what came meanwhile.
async fn closed_at_deadline(tcp: &mut TcpStream) -> Vec<u8> {
    let started = Instant::now();
    let limit = Duration::from_secs(5);
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), tcp.read(&mut buf)).await {
            Err(_) => panic!("the server kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let took = started.elapsed();
    assert!(
        took >= DEADLINE - Duration::from_millis(50),
        "closed after {took:?}, before the deadline"
    );
    got
}

/// Reads one whole `/health` answer (headers and a Content-Length body).
async fn read_answer(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tcp.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before the answer: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .expect("content-length");
            if got.len() >= end + 4 + len {
                return text;
            }
        }
    }
}

#[tokio::test]
async fn a_silent_connection_is_closed_at_the_head_deadline() {
    let s = server(100, DEADLINE).await;
    let mut tcp = connect(&s).await;
    let got = closed_at_deadline(&mut tcp).await;
    assert!(got.is_empty(), "nothing was asked, nothing is answered");
    s.stop().await;
}

#[tokio::test]
async fn a_dribbled_request_head_is_cut_off() {
    let s = server(100, DEADLINE).await;
    let mut tcp = connect(&s).await;
    tcp.write_all(b"POST /api/locks/acquire HTTP/1.1\r\nHost: warden\r\n")
        .await
        .expect("write");
    let got = closed_at_deadline(&mut tcp).await;
    assert!(got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"));
    s.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed() {
    let s = server(100, DEADLINE).await;
    let mut tcp = connect(&s).await;
    tcp.write_all(HEALTH).await.expect("write");
    let answer = read_answer(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Still usable right away: keep-alive works.
    tcp.write_all(HEALTH).await.expect("write");
    assert!(read_answer(&mut tcp).await.starts_with("HTTP/1.1 200"));
    let got = closed_at_deadline(&mut tcp).await;
    assert!(got.is_empty() || String::from_utf8_lossy(&got).starts_with("HTTP/1.1 408"));
    s.stop().await;
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let s = server(1, Duration::from_secs(10)).await;
    let mut first = connect(&s).await;
    first.write_all(HEALTH).await.expect("write");
    assert!(read_answer(&mut first).await.starts_with("HTTP/1.1 200"));
    // The only slot is taken by `first` (kept alive): the second connection is not served...
    let mut second = connect(&s).await;
    second.write_all(HEALTH).await.expect("write");
    let mut buf = [0u8; 16];
    let early = tokio::time::timeout(Duration::from_millis(300), second.read(&mut buf)).await;
    assert!(early.is_err(), "served beyond the cap: {early:?}");
    // ...until `first` goes away.
    drop(first);
    let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut second))
        .await
        .expect("the freed slot serves the waiting connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
    s.stop().await;
}

#[tokio::test]
async fn slow_bodies_are_cut_off_and_cannot_exhaust_the_connection_cap() {
    const CAP: usize = 4;
    let warden = Warden::connect("memory://").await.expect("memory backend");
    let config = ServerConfig::default()
        .with_connection_limits(CAP, Duration::from_secs(10))
        .with_body_read_timeout(DEADLINE);
    let s = TestServer::start_with(warden, config).await;
    // CAP clients each announce a 1000-byte body and send one byte every 50 ms: the whole cap is taken.
    let mut slow = Vec::new();
    for _ in 0..CAP {
        let mut tcp = connect(&s).await;
        let head = "POST /api/locks/acquire HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n\
                    Content-Length: 1000\r\n\r\n{";
        tcp.write_all(head.as_bytes()).await.expect("write");
        slow.push(tcp);
    }
    let started = Instant::now();
    let feeders: Vec<_> = slow
        .into_iter()
        .map(|tcp| {
            tokio::spawn(async move {
                let (mut rd, mut wr) = tcp.into_split();
                let feed = async {
                    loop {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        if wr.write_all(b" ").await.is_err() {
                            return;
                        }
                    }
                };
                let mut got = Vec::new();
                let read = async {
                    let mut buf = [0u8; 4096];
                    loop {
                        match rd.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                };
                tokio::select! {
                    _ = feed => {}
                    _ = read => {}
                }
                (started.elapsed(), String::from_utf8_lossy(&got).to_string())
            })
        })
        .collect();
    // A well-behaved client queued behind them is served once the slow ones are cut off.
    let mut good = connect(&s).await;
    good.write_all(HEALTH).await.expect("write");
    let answer = tokio::time::timeout(Duration::from_secs(5), read_answer(&mut good))
        .await
        .expect("a normal request is served although slow clients filled the cap");
    let waited = started.elapsed();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        waited < DEADLINE + Duration::from_millis(700),
        "the normal request waited {waited:?}, the body deadline is {DEADLINE:?}"
    );
    for f in feeders {
        let (took, got) = f.await.expect("slow client task");
        assert!(got.starts_with("HTTP/1.1 408"), "slow body answer: {got:?}");
        assert!(got.contains("request_timeout"), "{got}");
        assert!(
            took >= DEADLINE - Duration::from_millis(50) && took < DEADLINE + Duration::from_millis(700),
            "slow body cut off after {took:?}, deadline {DEADLINE:?}"
        );
    }
    s.stop().await;
}

#[tokio::test]
async fn an_oversized_content_length_is_refused_before_the_body() {
    let s = server(100, Duration::from_secs(10)).await;
    let mut tcp = connect(&s).await;
    let head = "POST /api/locks/acquire HTTP/1.1\r\nHost: warden\r\nContent-Type: application/json\r\n\
                Content-Length: 10000000\r\n\r\n{";
    tcp.write_all(head.as_bytes()).await.expect("write");
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(Duration::from_secs(3), tcp.read(&mut buf)).await {
            Err(_) => panic!("no answer within 3 s: {:?}", String::from_utf8_lossy(&got)),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(text.contains("16384 bytes"), "{text}");
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );
    s.stop().await;
}
