//! The Redis data layout: every key an operation touches lies in its resource's hash slot, no resource name
//! reaches warden's own keys, older data is respected, nothing stays behind per name, and statistics survive
//! a killed process but for its last second.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use warden::backend::redis::keys::{slot, tag_for};
use warden::{Error, LockKind, Warden};
use warden_testkit::monitor::Monitor;
use warden_testkit::{eventually, RedisServer};

const SEC: Duration = Duration::from_secs(1);

async fn connect(server: &RedisServer, opts: &str) -> Warden {
    Warden::connect(&format!("{}?{opts}", server.url()))
        .await
        .expect("connect")
}

fn int(reply: String) -> u64 {
    reply.trim_start_matches(':').parse().unwrap_or(0)
}

/// Runs every operation of the lock path (acquire, renew, release, queueing, direct handoff, leaving the
/// queue, shared holders) on names with and without hash tags, watches the commands the scripts run with
/// MONITOR, and checks each script call's keys against `CLUSTER KEYSLOT` of a cluster-mode server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_an_operation_touches_is_in_its_resource_slot() {
    let server = RedisServer::start();
    let cluster = RedisServer::start_with(&["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]);
    let opts = "sweep_ms=3600000&prefix=app:";
    let (a, b) = (connect(&server, opts).await, connect(&server, opts).await);
    let names = [
        "orders:1",
        "{user7}:cart",
        "a{b}c{d}",
        "{}x",
        "é{ü}ß",
        "x{",
        "plain name",
    ];
    let monitor = Monitor::start(server.port());
    for name in names {
        let mut g = a.lock(name).ttl(5 * SEC).acquire().await.unwrap();
        a.renew(g.lock_id(), None, None).await.unwrap();
        g.release().await.unwrap();
        // A waiter on another client, handed the lock by the release.
        let mut holder = a.lock(name).ttl(5 * SEC).acquire().await.unwrap();
        let b2 = b.clone();
        let waiter = tokio::spawn(async move { b2.lock(name).ttl(5 * SEC).wait(5 * SEC).acquire().await });
        assert!(eventually(5 * SEC, || async { a.inspect(name).await.unwrap().queue.len() == 1 }).await);
        holder.release().await.unwrap();
        waiter.await.unwrap().unwrap().release().await.unwrap();
        // A waiter that gives up leaves the queue.
        let mut holder = a.lock(name).acquire().await.unwrap();
        let r = b.lock(name).wait(Duration::from_millis(30)).acquire().await;
        assert!(matches!(r, Err(Error::Timeout { .. })), "{r:?}");
        holder.release().await.unwrap();
        // Shared holders.
        let mut r1 = a.lock(name).shared().acquire().await.unwrap();
        let mut r2 = b.lock(name).shared().acquire().await.unwrap();
        r1.release().await.unwrap();
        r2.release().await.unwrap();
        // Intentions (kept in sets of their own beside the lock key), renewed, and a shared waiter handed the
        // lock when the intent-exclusive holder goes.
        let mut ix = a.lock(name).kind(LockKind::IntentExclusive).acquire().await.unwrap();
        let mut is = b.lock(name).kind(LockKind::IntentShared).acquire().await.unwrap();
        a.renew(ix.lock_id(), None, None).await.unwrap();
        let b2 = b.clone();
        let reader = tokio::spawn(async move { b2.lock(name).shared().ttl(5 * SEC).wait(5 * SEC).acquire().await });
        assert!(eventually(5 * SEC, || async { a.inspect(name).await.unwrap().queue.len() == 1 }).await);
        ix.release().await.unwrap();
        reader.await.unwrap().unwrap().release().await.unwrap();
        is.release().await.unwrap();
    }
    let seen = monitor.stop();
    // A script's commands are a run of `lua` lines (a script is atomic: nothing interleaves).
    let mut runs: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut in_run = false;
    for s in &seen {
        if !s.from_script {
            in_run = false;
            continue;
        }
        if !in_run {
            runs.push(Vec::new());
            in_run = true;
        }
        let cmd = String::from_utf8_lossy(&s.args[0]).to_uppercase();
        if cmd != "TIME" && cmd != "PUBLISH" && s.args.len() > 1 {
            runs.last_mut().unwrap().push(s.args[1].clone());
        }
    }
    let mut slots_checked = BTreeSet::new();
    let mut keys_checked = 0;
    for run in runs.iter().filter(|r| !r.is_empty()) {
        let slots: BTreeSet<u16> = run
            .iter()
            .map(|k| {
                let text = String::from_utf8(k.clone()).expect("keys are UTF-8");
                let theirs = int(cluster.command(&["CLUSTER", "KEYSLOT", &text]).unwrap()) as u16;
                assert_eq!(slot(k), theirs, "our slot of {text:?} differs from Redis's");
                keys_checked += 1;
                theirs
            })
            .collect();
        assert_eq!(slots.len(), 1, "one script call touched several slots: {run:?}");
        slots_checked.extend(slots);
    }
    let expected: BTreeSet<u16> = names.iter().map(|n| slot(format!("app:{n}").as_bytes())).collect();
    assert_eq!(
        slots_checked, expected,
        "the scripts' keys were not in the resources' slots"
    );
    assert!(keys_checked > 100, "only {keys_checked} keys seen");
}

/// Resource names shaped like warden's own keys (today's and the older layout's) are ordinary locks: they
/// disturb no other lock, queue or statistic; names that could spell an internal key (a control character)
/// are refused with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_resource_name_reaches_warden_internal_keys() {
    let server = RedisServer::start();
    let w = connect(&server, "sweep_ms=3600000").await;
    let other = connect(&server, "sweep_ms=3600000").await;
    let victim = "orders:1";
    let tag = tag_for(victim);
    let mut held = w.lock(victim).ttl(10 * SEC).acquire().await.unwrap();
    let fence = held.fencing_token();
    let o2 = other.clone();
    let queued = tokio::spawn(async move { o2.lock(victim).wait(10 * SEC).acquire().await });
    assert!(eventually(5 * SEC, || async { w.inspect(victim).await.unwrap().queue.len() == 1 }).await);
    let mut names: Vec<String> = [
        "warden:tok",
        "warden:idx",
        "warden:stats",
        "warden:top",
        "warden:wake",
        "warden:v2:wake:",
        "{orders:1}warden:f",
        "{orders:1}warden:q",
        "{orders:1}warden:w",
        "{orders:1}",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for suffix in ["", "h", "forders:1", "qorders:1", "worders:1", "x"] {
        names.push(format!("{{{tag}}}{suffix}"));
    }
    for name in &names {
        let mut g = w
            .lock(name.as_str())
            .try_acquire()
            .await
            .unwrap()
            .expect("an ordinary lock");
        assert!(g.fencing_token() > 0);
        g.release().await.unwrap();
    }
    for name in [
        format!("{{{tag}}}\u{1}horders:1"),
        "\u{1}warden:stats:".into(),
        "a\nb".into(),
    ] {
        match w.lock(name.as_str()).try_acquire().await {
            Err(Error::InvalidArgument { field: "resource", .. }) => {}
            other => panic!("{name:?} was not refused: {other:?}"),
        }
    }
    // The victim is as it was: same holder and fence, its waiter still queued and handed the lock next.
    let info = w.inspect(victim).await.unwrap();
    assert_eq!(info.holders.len(), 1);
    assert_eq!(info.holders[0].fencing_token, fence);
    assert_eq!(info.queue.len(), 1);
    held.release().await.unwrap();
    let mut next = queued.await.unwrap().unwrap();
    assert!(next.fencing_token() > fence);
    next.release().await.unwrap();
    let s = w.stats().await.unwrap();
    assert_eq!(s.total_locks, names.len() as u64 + 2);
    assert_eq!(s.active_locks, 0);
}

/// A warden upgraded over a Redis that still holds leases of the older layout never grants over them: the
/// lock key is the same, so an old exclusive or shared holder excludes the new writer until it ends.
#[tokio::test]
async fn leases_of_the_older_layout_are_respected() {
    let server = RedisServer::start();
    let old_token = "0123456789abcdef0123456789abcdef";
    assert_eq!(
        server.command(&["SET", "orders:7", old_token, "PX", "800"]).unwrap(),
        "+OK"
    );
    server
        .command(&[
            "HSET",
            "warden:tok",
            old_token,
            "exclusive\nold\n0\n0\n800\n1\n0\n-1\n0\norders:7",
        ])
        .unwrap();
    let far = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 60_000)
        .to_string();
    server
        .command(&["ZADD", "report", &far, "fedcba9876543210fedcba9876543210"])
        .unwrap();
    let w = connect(&server, "").await;
    assert!(w.lock("orders:7").try_acquire().await.unwrap().is_none());
    assert!(
        w.lock("report").try_acquire().await.unwrap().is_none(),
        "a writer beside an old reader"
    );
    let pttl = int(server.command(&["PTTL", "orders:7"]).unwrap());
    let t = Instant::now();
    let mut g = w.lock("orders:7").wait(5 * SEC).acquire().await.unwrap();
    assert!(
        t.elapsed() + Duration::from_millis(20) >= Duration::from_millis(pttl),
        "granted after {:?}, the old lease had {pttl} ms left",
        t.elapsed()
    );
    g.release().await.unwrap();
}

/// Lock 100,000 distinct names once each: once their retention passed, the key count is back where it
/// started and so, within the allocator's slack, is the memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_stays_behind_per_name() {
    let server = RedisServer::start();
    let w = connect(&server, "retain_ms=300&sweep_ms=20").await;
    let cycle = |base: u64, n: u64| {
        let w = w.clone();
        async move {
            let tasks: Vec<_> = (0..64u64)
                .map(|t| {
                    let w = w.clone();
                    tokio::spawn(async move {
                        let mut i = t;
                        while i < n {
                            let mut g = w.lock(format!("n:{:07}", base + i)).acquire().await.unwrap();
                            g.release().await.unwrap();
                            i += 64;
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
        }
    };
    let dbsize = || int(server.command(&["DBSIZE"]).unwrap());
    // Server memory without the per-resource grant counts: that hash is bounded by its entry count (checked
    // below), but its bucket table's size after a trim depends on how far it grew between trims (timing).
    let top_bytes = || {
        int(server
            .command(&["MEMORY", "USAGE", "\u{1}warden:top:", "SAMPLES", "0"])
            .unwrap())
    };
    let used_memory = || {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &server.port().to_string(), "INFO", "memory"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| {
                l.strip_prefix("used_memory:")
                    .and_then(|v| v.trim().parse::<u64>().ok())
            })
            .unwrap()
    };
    let memory = || used_memory().saturating_sub(top_bytes());
    // Warm up: scripts loaded, the statistics hashes made, the per-resource counts through the same growth and
    // trim as below (a hash table keeps its size after a trim).
    cycle(0, 40_000).await;
    w.stats().await.unwrap();
    assert!(
        eventually(10 * SEC, || async { dbsize() == 2 }).await,
        "{} keys after warm-up",
        dbsize()
    );
    let top = || int(server.command(&["HLEN", "\u{1}warden:top:"]).unwrap());
    // The per-resource counts are trimmed to their bound once per sweep pass.
    assert!(
        eventually(10 * SEC, || async { top() == 10_000 }).await,
        "{} per-resource counts",
        top()
    );
    let (keys0, mem0) = (dbsize(), memory());
    cycle(1_000_000, 100_000).await;
    w.stats().await.unwrap();
    assert!(
        eventually(20 * SEC, || async { dbsize() == keys0 }).await,
        "{} keys, {keys0} before",
        dbsize()
    );
    assert!(
        eventually(10 * SEC, || async { top() == 10_000 }).await,
        "{} per-resource counts",
        top()
    );
    let settled = eventually(10 * SEC, || async { memory() <= mem0 + mem0 / 20 }).await;
    assert!(settled, "used_memory {} after, {mem0} before", memory());
    eprintln!(
        "100k names: {keys0} keys and {mem0} B before, {} keys and {} B after",
        dbsize(),
        memory()
    );
}

/// A process killed with SIGKILL loses at most its last second of counts: the grants it made until a second
/// before it died are in the shared statistics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_of_a_killed_process_lose_at_most_its_last_second() {
    use std::io::{BufRead, BufReader};
    let server = RedisServer::start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_lock_loop"))
        .arg(server.url())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let start = Instant::now();
    let mut progress: Vec<(Instant, u64)> = Vec::new();
    while start.elapsed() < Duration::from_millis(2500) {
        let n: u64 = lines.next().unwrap().unwrap().parse().unwrap();
        progress.push((Instant::now(), n));
    }
    child.kill().unwrap(); // SIGKILL
    let killed = Instant::now();
    child.wait().unwrap();
    let last = progress.last().unwrap().1;
    // Counted by the time of death minus one second (and the flush's own time: 200 ms).
    let due = progress
        .iter()
        .filter(|(t, _)| *t + Duration::from_millis(1200) <= killed)
        .map(|(_, n)| *n)
        .max()
        .unwrap();
    let w = connect(&server, "").await;
    let s = w.stats().await.unwrap();
    assert!(
        s.total_locks >= due && s.total_locks <= last + 1,
        "{} grants counted; {due} were done a second before the kill, {last} in all",
        s.total_locks
    );
    eprintln!("killed after {last} cycles: {} counted, {due} due", s.total_locks);
}
