//! etcd under faults: a minority of members down changes nothing, a majority down fails fast and recovers
//! without restarting warden, a dead holder's lock goes to the next waiter within the session ttl, and a
//! stalled holder's lock goes to the next waiter with a higher fencing token while its own guard reports the
//! loss.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;
use warden::{Error, Warden};
use warden_testkit::harness::{Counter, LocalCounter};
use warden_testkit::{eventually, EtcdCluster};

const SEC: Duration = Duration::from_secs(1);

async fn connect(url: &str) -> Warden {
    warden_testkit::harness::test_client(url).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minority_down_changes_nothing() {
    let mut cluster = EtcdCluster::start(3);
    // A call may wait out the election of a new leader (about a second here, longer on a loaded machine): the
    // waiter's heartbeats must not fail meanwhile, or it gives up its place.
    let url = format!("{}?timeout_ms=3000", cluster.url());
    let (a, b) = (connect(&url).await, connect(&url).await);
    // A ttl longer than a failover (a new leader in about a second here): renewals resume before it runs out.
    let mut holder = a.lock("minority").ttl(3 * SEC).acquire().await.expect("holder");
    let b2 = b.clone();
    let waiter = tokio::spawn(async move { b2.lock("minority").ttl(5 * SEC).wait(30 * SEC).acquire().await });
    assert!(
        eventually(5 * SEC, || async {
            a.inspect("minority").await.is_ok_and(|r| r.queue.len() == 1)
        })
        .await,
        "the waiter never queued"
    );
    let leader = cluster.leader().expect("a leader");
    cluster.kill(leader);
    // More than a ttl passes with the leader gone: the holder keeps renewing through the new one.
    tokio::time::sleep(4 * SEC).await;
    assert!(
        !holder.is_lost(),
        "the holder lost its lease to the loss of one member of three"
    );
    let q = a.inspect("minority").await.expect("inspect");
    assert_eq!(q.queue.len(), 1, "the waiter lost its place");
    let fence = holder.fencing_token();
    let released = Instant::now();
    holder.release().await.expect("release");
    let mut g = waiter.await.expect("task").expect("the waiter is granted");
    assert!(released.elapsed() < SEC, "handoff took {:?}", released.elapsed());
    assert!(g.fencing_token() > fence);
    g.release().await.expect("release");
    let mut fresh = a
        .lock("after")
        .try_acquire()
        .await
        .expect("try")
        .expect("new grants continue");
    fresh.release().await.expect("release");
}

/// 20 clients, each its own connection, add 10 each to a counter only the lock protects (read, then
/// write), while the leader is killed halfway: no update is lost and fences grow in the order of the writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counter_stays_exact_through_a_leader_kill() {
    let cluster = Arc::new(Mutex::new(EtcdCluster::start(3)));
    let url = format!("{}?timeout_ms=2000", cluster.lock().expect("cluster").url());
    let counter = Arc::new(LocalCounter::default());
    let fences = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let w = connect(&url).await;
        let (counter, fences, done) = (counter.clone(), fences.clone(), done.clone());
        tasks.push(tokio::spawn(async move {
            let (mut n, mut retries) = (0, 0);
            while n < 10 {
                let g = match w.lock("counter").ttl(5 * SEC).wait(30 * SEC).acquire().await {
                    Ok(g) => g,
                    Err(e) if e.is_retryable() && retries < 50 => {
                        retries += 1;
                        continue;
                    }
                    Err(e) => panic!("acquire after {n} increments and {retries} retries: {e}"),
                };
                let v = counter.get().await;
                counter.set(v + 1).await;
                fences.lock().expect("fences").push(g.fencing_token());
                n += 1;
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut g = g;
                while let Err(e) = g.release().await {
                    // A lease whose validity ran out while the cluster chose a new leader (renewals failing) is
                    // rightly reported gone; one still valid must never be.
                    if matches!(e, Error::LeaseLost { .. }) {
                        let left = g.valid_until().saturating_duration_since(Instant::now());
                        assert!(left.is_zero(), "release: {e}, with {left:?} of its validity left");
                        break;
                    }
                    assert!(e.is_retryable(), "release: {e}");
                }
            }
        }));
    }
    assert!(
        eventually(60 * SEC, || async {
            done.load(std::sync::atomic::Ordering::SeqCst) >= 100
        })
        .await,
        "no progress"
    );
    {
        let mut c = cluster.lock().expect("cluster");
        let leader = c.leader().expect("a leader");
        c.kill(leader);
    }
    for t in tasks {
        tokio::time::timeout(60 * SEC, t)
            .await
            .expect("a client stalled")
            .expect("client task");
    }
    assert_eq!(counter.get().await, 200, "an update was lost");
    let f = fences.lock().expect("fences").clone();
    assert!(
        f.windows(2).all(|w| w[0] < w[1]),
        "fences did not grow in write order: {f:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_majority_down_fails_fast_then_recovers() {
    let mut cluster = EtcdCluster::start(3);
    let url = format!("{}?timeout_ms=500", cluster.url());
    let w = connect(&url).await;
    let g = w.lock("majority").ttl(SEC).acquire().await.expect("acquire");
    cluster.kill(1);
    cluster.kill(2);
    let started = Instant::now();
    let r = w.lock("majority-2").wait(5 * SEC).acquire().await;
    assert!(matches!(r, Err(Error::BackendUnavailable { .. })), "{r:?}");
    assert!(r.as_ref().err().is_some_and(Error::is_retryable));
    assert!(started.elapsed() < 2 * SEC, "took {:?}", started.elapsed());
    tokio::time::timeout(2 * SEC, g.lost())
        .await
        .expect("the holder's lost signal fires while the cluster cannot confirm its lease");
    cluster.restart(1);
    cluster.restart(2);
    let resumed = eventually(30 * SEC, || async {
        match w.lock("majority-3").try_acquire().await {
            Ok(Some(mut g)) => g.release().await.is_ok(),
            _ => false,
        }
    })
    .await;
    assert!(resumed, "work did not resume after the members came back");
}

fn hold(url: &str, resource: &str, ttl_ms: u64) -> (Child, BufReader<ChildStdout>, u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hold_lock"))
        .args([url, resource, &ttl_ms.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn hold_lock");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("read");
    let fence = line
        .trim()
        .strip_prefix("held ")
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("hold_lock said {line:?}"));
    (child, out, fence)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holders_lock_goes_within_the_session_ttl() {
    let cluster = EtcdCluster::single();
    let url = format!("{}?timeout_ms=1000&session_ttl=2s", cluster.url());
    let (mut child, _out, fence) = hold(&url, "dies", 30_000);
    let w = connect(&url).await;
    let killed = Instant::now();
    let _ = child.kill();
    let _ = child.wait();
    let mut g = w
        .lock("dies")
        .wait(10 * SEC)
        .acquire()
        .await
        .expect("granted after the holder died");
    // The session lease (2 s) ends it, not the 30 s ttl; etcd checks leases twice a second.
    assert!(killed.elapsed() < 4 * SEC, "took {:?}", killed.elapsed());
    assert!(g.fencing_token() > fence);
    g.release().await.expect("release");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_holder_is_overtaken_and_told() {
    let cluster = EtcdCluster::single();
    let url = format!("{}?timeout_ms=1000&session_ttl=30s", cluster.url());
    let (child, mut out, fence) = hold(&url, "stalls", 600);
    let pid = child.id() as libc::pid_t;
    // SAFETY: kill(2) on a child this test spawned.
    unsafe { libc::kill(pid, libc::SIGSTOP) };
    let w = connect(&url).await;
    let stopped = Instant::now();
    let mut g = w
        .lock("stalls")
        .wait(10 * SEC)
        .acquire()
        .await
        .expect("granted while the holder stalls");
    // Its key stayed unchanged for its ttl at the head of the queue: expired well before its session ends.
    assert!(stopped.elapsed() < 3 * SEC, "took {:?}", stopped.elapsed());
    assert!(g.fencing_token() > fence, "{} after {fence}", g.fencing_token());
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGCONT) };
    let told = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        let _ = out.read_line(&mut line);
        line
    });
    let line = tokio::time::timeout(5 * SEC, told)
        .await
        .expect("told in time")
        .expect("reader");
    assert_eq!(line.trim(), "lost", "the stalled holder was not told");
    g.release().await.expect("release");
    let mut child = child;
    let _ = child.wait();
}
