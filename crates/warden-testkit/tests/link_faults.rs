//! Faults on the link between client and Redis, through the testkit's TCP proxy: latency, a blackhole,
//! connection resets and half-closed connections. Each call is bounded by the timeout while the link is bad,
//! and the client recovers on its own once the link is good again.

use std::time::Duration;
use tokio::time::Instant;
use warden::Warden;
use warden_testkit::proxy::Proxy;
use warden_testkit::RedisServer;

const TIMEOUT: Duration = Duration::from_millis(200);
const MARGIN: Duration = Duration::from_millis(100);
const SEC: Duration = Duration::from_secs(1);

async fn setup() -> (RedisServer, Proxy, Warden) {
    let server = RedisServer::start();
    let proxy = Proxy::start(&server.addr());
    let w = Warden::connect(&format!("redis://{}?timeout_ms={}", proxy.addr(), TIMEOUT.as_millis()))
        .await
        .expect("connect through the proxy");
    (server, proxy, w)
}

/// A lock cycle; returns how long it took.
async fn cycle(w: &Warden, name: &str) -> warden::Result<Duration> {
    let t = Instant::now();
    let mut g = w.lock(name).ttl(5 * SEC).try_acquire().await?.expect("free");
    g.release().await?;
    Ok(t.elapsed())
}

/// Cycles until one succeeds; returns how long recovery took.
async fn recovers(w: &Warden, within: Duration) -> Duration {
    let t = Instant::now();
    let mut i = 0;
    loop {
        i += 1;
        if cycle(w, &format!("recover:{i}")).await.is_ok() {
            return t.elapsed();
        }
        assert!(t.elapsed() < within, "no successful call within {within:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn added_latency_slows_calls_but_they_succeed() {
    let (_s, proxy, w) = setup().await;
    proxy.pass(Duration::from_millis(40));
    let took = cycle(&w, "slow").await.expect("a cycle over a slow link");
    // Acquire and release each cross the link both ways.
    assert!(
        took >= Duration::from_millis(160),
        "{took:?}: the latency was not applied"
    );
    assert!(took < 2 * TIMEOUT + MARGIN, "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackhole_is_a_bounded_timeout_and_the_link_heals() {
    let (_s, proxy, w) = setup().await;
    cycle(&w, "before").await.expect("healthy");
    proxy.hold();
    let t = Instant::now();
    let r = w.lock("dark").try_acquire().await;
    let took = t.elapsed();
    assert!(r.as_ref().is_err_and(warden::Error::is_retryable), "{r:?}");
    assert!(took <= TIMEOUT + MARGIN, "a call into a blackhole took {took:?}");
    proxy.pass(Duration::ZERO);
    let took = recovers(&w, 2 * SEC).await;
    println!("blackhole lifted: first successful cycle after {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_connections_are_remade() {
    let (_s, proxy, w) = setup().await;
    cycle(&w, "before").await.expect("healthy");
    proxy.reset_all();
    let took = recovers(&w, 2 * SEC).await;
    println!("connections reset: first successful cycle after {took:?}");
    // A node that refuses for a while: bounded failures, then recovery.
    proxy.refuse();
    let t = Instant::now();
    let r = cycle(&w, "refused").await;
    assert!(r.is_err(), "{r:?}");
    assert!(t.elapsed() <= TIMEOUT + MARGIN, "{:?}", t.elapsed());
    proxy.pass(Duration::ZERO);
    recovers(&w, 2 * SEC).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_connection_is_noticed_and_remade() {
    let (_s, proxy, w) = setup().await;
    cycle(&w, "before").await.expect("healthy");
    // The node's side closes (the client reads EOF) while the client's side stays open.
    proxy.half_close_all();
    let took = recovers(&w, 2 * SEC).await;
    println!("half-closed: first successful cycle after {took:?}");
    assert!(took < SEC, "{took:?}");
}
