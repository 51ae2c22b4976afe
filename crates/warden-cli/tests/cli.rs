//! The `warden` binary end to end, against a real redis-server (and an in-process warden server for the
//! default http:// backend).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use warden::Warden;
use warden_testkit::RedisServer;

fn warden_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_warden"));
    c.env_remove("WARDEN_BACKEND")
        .env_remove("WARDEN_CLIENT_ID")
        .env_remove("RUST_LOG");
    c
}

fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn four_runs_times_fifty_increments_end_at_exactly_200() {
    let redis = RedisServer::start();
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    std::fs::write(&counter, "0").unwrap();
    // A read-modify-write with a pause in the middle: without the lock, increments get lost.
    let script = format!(
        "n=$(cat {c}); sleep 0.001; echo $((n+1)) > {c}.tmp && mv {c}.tmp {c}",
        c = counter.display()
    );
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (url, script) = (redis.url(), script.clone());
            std::thread::spawn(move || {
                for _ in 0..50 {
                    let st = warden_bin()
                        .args([
                            "run",
                            "--lock",
                            "counter",
                            "--ttl",
                            "10s",
                            "--wait",
                            "60s",
                            "--backend",
                            &url,
                            "--",
                        ])
                        .args(["sh", "-c", &script])
                        .status()
                        .expect("spawn warden");
                    assert!(st.success(), "warden run failed: {st:?}");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "200");
}

#[test]
fn exit_codes_propagate_and_skip_if_held() {
    let redis = RedisServer::start();
    let url = redis.url();
    let code = |args: &[&str]| {
        warden_bin()
            .args(args)
            .stderr(Stdio::piped())
            .output()
            .map(|o| (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned()))
            .unwrap()
    };
    assert_eq!(
        code(&["run", "--lock", "e", "--backend", &url, "--", "sh", "-c", "exit 7"]).0,
        Some(7)
    );
    assert_eq!(
        code(&["run", "--lock", "e", "--backend", &url, "--", "true"]).0,
        Some(0)
    );
    let (c, err) = code(&["run", "--lock", "e", "--backend", &url, "--", "no-such-command-x"]);
    assert_eq!(c, Some(127));
    assert!(err.contains("not found"), "{err}");

    // Hold the lock from another client: 75 with a sentence, or 0 with --skip-if-held; CMD does not run.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut guard = rt.block_on(async {
        let w = Warden::connect(&url).await.unwrap();
        w.lock("e").ttl(Duration::from_secs(30)).acquire().await.unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let (c, err) = code(&[
        "run",
        "--lock",
        "e",
        "--wait",
        "100ms",
        "--backend",
        &url,
        "--",
        "sh",
        "-c",
        &touch,
    ]);
    assert_eq!(c, Some(75));
    assert!(
        err.contains("held by someone else") && err.lines().count() == 1,
        "{err}"
    );
    let (c, _) = code(&[
        "run",
        "--lock",
        "e",
        "--wait",
        "0",
        "--skip-if-held",
        "--backend",
        &url,
        "--",
        "sh",
        "-c",
        &touch,
    ]);
    assert_eq!(c, Some(0));
    assert!(!marker.exists(), "the command must not run without the lock");
    rt.block_on(guard.release()).unwrap();

    // Unreachable default server: one line that says what to do, exit 69.
    let addr = warden_testkit::refused_addr().unwrap();
    let (c, err) = code(&[
        "run",
        "--lock",
        "e",
        "--backend",
        &format!("http://{addr}"),
        "--",
        "true",
    ]);
    assert_eq!(c, Some(69));
    assert!(err.contains("warden serve") && err.lines().count() == 1, "{err}");
}

#[test]
fn run_with_permits_takes_one_of_n_and_says_when_all_are_held() {
    let redis = RedisServer::start();
    let url = redis.url();
    let out = |args: &[&str]| {
        warden_bin()
            .args(args)
            .output()
            .map(|o| (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned()))
            .unwrap()
    };
    // `warden run` on `jobs` with these flags, running `true`.
    let jobs = |flags: &[&str]| {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.extend(["--backend", &url, "jobs", "--", "true"]);
        out(&args)
    };
    // Two of the three permits are held elsewhere.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(async {
        let w = Warden::connect(&url).await.unwrap();
        let mut held = Vec::new();
        for _ in 0..2 {
            held.push(
                w.semaphore("jobs", 3)
                    .ttl(Duration::from_secs(30))
                    .acquire()
                    .await
                    .unwrap(),
            );
        }
        held
    });
    // The third goes to a command that runs until the test lets it end (it blocks reading a FIFO).
    let dir = tempfile::tempdir().unwrap();
    let (started, fifo) = (dir.path().join("started"), dir.path().join("fifo"));
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let script = format!(
        "echo $WARDEN_FENCING_TOKEN > {s}.tmp && mv {s}.tmp {s}; read x < {f}",
        s = started.display(),
        f = fifo.display()
    );
    let mut third = warden_bin()
        .args(["run", "--permits", "3", "--wait", "5s", "--backend", &url, "jobs", "--"])
        .args(["sh", "-c", &script])
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !started.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let fence: u64 = std::fs::read_to_string(&started).unwrap().trim().parse().unwrap();
    assert!(
        held.iter().all(|g| fence > g.fencing_token()),
        "the third permit's fencing token is not the newest"
    );
    // A fourth: every permit is held.
    let (c, err) = jobs(&["--permits", "3", "--wait", "0"]);
    assert_eq!(c, Some(75), "{err}");
    assert!(err.contains("all 3 permits of `jobs` are held"), "{err}");
    // Another permit count, or a lock, on a semaphore in use: exit 2 with what to ask instead.
    let (c, err) = jobs(&["--permits", "2", "--wait", "0"]);
    assert_eq!(c, Some(2), "{err}");
    assert!(
        err.contains("semaphore with 3 permits") && err.contains("permits = 3"),
        "{err}"
    );
    let (c, err) = jobs(&["--wait", "0"]);
    assert_eq!(c, Some(2), "{err}");
    let (c, err) = jobs(&["--permits", "0"]);
    assert_eq!(c, Some(2), "{err}");
    let (c, err) = jobs(&["--permits", "2", "--shared"]);
    assert_eq!(c, Some(2), "{err}");
    // The third ends; its permit is free again.
    std::fs::write(&fifo, "go\n").unwrap();
    assert_eq!(third.wait().unwrap().code(), Some(0));
    let (c, err) = jobs(&["--permits", "3", "--wait", "0"]);
    assert_eq!(c, Some(0), "{err}");
    rt.block_on(async {
        for mut g in held {
            g.release().await.unwrap();
        }
    });
}

#[test]
fn lease_lost_terminates_the_command_and_everything_it_started() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("grandchild");
    // A shell that starts a grandchild in the background and waits: stopping only the shell would leave the
    // grandchild running without the lock.
    let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
    let started = Instant::now();
    let child = warden_bin()
        .args([
            "run",
            "lost",
            "--ttl",
            "900ms",
            "--grace",
            "2s",
            "--backend",
            &url,
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let held = rt.block_on(async {
        let w = Warden::connect(&url).await.unwrap();
        warden_testkit::eventually(Duration::from_secs(5), || async {
            let held = w.inspect("lost").await.map(|i| !i.holders.is_empty()).unwrap_or(false);
            held && std::fs::read_to_string(&pidfile).is_ok_and(|p| p.trim().parse::<i32>().is_ok())
        })
        .await
    });
    assert!(held, "warden run never took the lock or started the grandchild");
    let grandchild: i32 = std::fs::read_to_string(&pidfile).unwrap().trim().parse().unwrap();
    assert!(running(grandchild));
    let r = redis.command(&["DEL", "lost"]).unwrap();
    assert_eq!(r, ":1");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(70), "{err}");
    assert!(err.contains("lost"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line for a lost lease: {err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert!(!running(grandchild), "the grandchild outlived the lease");
}

#[test]
fn traps_are_refused_with_a_sentence() {
    let redis = RedisServer::start();
    let url = redis.url();
    let run = |args: &[&str]| {
        let out = warden_bin().args(args).output().unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // A bare number is not read as seconds (the REST API takes milliseconds): it is refused.
    let (code, err) = run(&["run", "x", "--ttl", "30000", "--backend", &url, "--", "true"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("add a unit, e.g. 30000s or 30000ms"), "{err}");
    let (code, err) = run(&["serve", "--header-timeout", "30000"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("add a unit"), "{err}");
    // humantime's forms work.
    let (code, err) = run(&["run", "x", "--ttl", "1h30m", "--backend", &url, "--", "true"]);
    assert_eq!(code, Some(0), "{err}");
    // memory:// would exclude nobody: refused unless asked for.
    let (code, err) = run(&["run", "x", "--backend", "memory://", "--", "true"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--allow-memory"), "{err}");
    let (code, err) = run(&["elect", "x", "--backend", "memory://", "--", "true"]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(&["run", "x", "--backend", "memory://", "--allow-memory", "--", "true"]);
    assert_eq!(code, Some(0), "{err}");
    // flock's -E: a chosen exit code when the lock is held; the name may also be given as --lock.
    let holder = warden_bin()
        .args(["run", "held", "--backend", &url, "--", "sleep", "30"])
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert!(rt.block_on(async {
        let w = Warden::connect(&url).await.unwrap();
        warden_testkit::eventually(Duration::from_secs(5), || async {
            w.inspect("held").await.map(|i| !i.holders.is_empty()).unwrap_or(false)
        })
        .await
    }));
    let (code, err) = run(&[
        "run",
        "--lock",
        "held",
        "--wait",
        "0",
        "--conflict-exit-code",
        "3",
        "--backend",
        &url,
        "--",
        "true",
    ]);
    assert_eq!(code, Some(3), "{err}");
    let mut holder = holder;
    let _ = holder.kill();
    let _ = holder.wait();
}

/// A candidate's command: records its start (ns since the epoch) and pid, and notes an overlap if another runs.
/// It records its start only once its TERM trap is set, so a SIGTERM sent as soon as the start shows is always
/// the graceful stop the test means.
fn elect_script(dir: &Path, id: &str) -> String {
    let d = dir.display();
    format!(
        "if ! mkdir {d}/running 2>/dev/null; then echo {id} >> {d}/overlap; fi; \
         trap 'rmdir {d}/running; exit 0' TERM; \
         echo \"{id} $(date +%s%N) $$\" >> {d}/starts; \
         while true; do sleep 0.01; done"
    )
}

/// (candidate, start in ns since the epoch, pid) of every command started so far.
fn starts(dir: &Path) -> Vec<(String, u128, i32)> {
    std::fs::read_to_string(dir.join("starts"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?.to_string(), f.next()?.parse().ok()?, f.next()?.parse().ok()?))
        })
        .collect()
}

/// Whether `pid` still runs (a zombie waiting to be reaped does not count).
fn running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|rest| !rest.trim_start().starts_with('Z')))
        .unwrap_or(false)
}

fn wait_for_starts(dir: &Path, n: usize, within: Duration) -> Vec<(String, u128, i32)> {
    let deadline = Instant::now() + within;
    loop {
        let s = starts(dir);
        if s.len() >= n || Instant::now() > deadline {
            return s;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn elect_runs_one_command_at_a_time_and_hands_over() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let mut procs: Vec<(String, std::process::Child)> = Vec::new();
    for i in 0..3 {
        let id = format!("c{i}");
        let child = warden_bin()
            .args([
                "elect",
                "queue-consumer",
                "--ttl",
                "1s",
                "--grace",
                "2s",
                "--candidate",
                &id,
                "--backend",
                &url,
            ])
            .args(["--", "sh", "-c", &elect_script(dir.path(), &id)])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        procs.push((id, child));
        if i == 0 {
            assert_eq!(
                wait_for_starts(dir.path(), 1, Duration::from_secs(10)).len(),
                1,
                "no leader started"
            );
        }
    }
    let leader_of = |starts: &[(String, u128, i32)]| starts.last().map(|s| s.0.clone()).unwrap();
    let s = starts(dir.path());
    assert_eq!(s.len(), 1, "exactly one command runs: {s:?}");
    assert_eq!(s[0].0, "c0");

    // Graceful stop of the leader: SIGTERM; the next one starts within 50 ms of the leader's exit.
    let idx = procs.iter().position(|p| p.0 == "c0").unwrap();
    let (_, mut leader) = procs.remove(idx);
    unsafe { libc::kill(leader.id() as i32, libc::SIGTERM) };
    let status = leader.wait().unwrap();
    let exited_ns = now_ns();
    assert!(status.success(), "leader exit after SIGTERM: {status:?}");
    let s = wait_for_starts(dir.path(), 2, Duration::from_secs(5));
    assert_eq!(s.len(), 2, "no takeover after SIGTERM: {s:?}");
    let handover_ms = (s[1].1 as f64 - exited_ns as f64) / 1e6;
    assert!(
        handover_ms < 50.0,
        "handover took {handover_ms:.1} ms after the leader's exit"
    );
    eprintln!("graceful handover: next command started {handover_ms:.1} ms after the leader exited");

    // Crash of the leader (SIGKILL, its command dies with it): takeover within TTL + margin.
    let new_leader = leader_of(&s);
    let its_command = s[1].2;
    let idx = procs.iter().position(|p| p.0 == new_leader).unwrap();
    let (_, mut leader) = procs.remove(idx);
    let killed_ns = now_ns();
    leader.kill().unwrap();
    leader.wait().unwrap();
    // Its command must die with it (parent-death signal), long before the lease ends; it cannot clean up,
    // so the test removes its marker once it is gone. No notification exists for another process's exit:
    // poll /proc under a deadline.
    let deadline = Instant::now() + Duration::from_millis(500);
    while running(its_command) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(!running(its_command), "the killed leader's command outlived it");
    std::fs::remove_dir(dir.path().join("running")).expect("the killed command's marker");
    let s = wait_for_starts(dir.path(), 3, Duration::from_secs(5));
    assert_eq!(s.len(), 3, "no takeover after SIGKILL: {s:?}");
    let takeover_ms = (s[2].1 as f64 - killed_ns as f64) / 1e6;
    assert!(takeover_ms < 1500.0, "takeover took {takeover_ms:.0} ms (ttl 1s)");
    eprintln!("crash takeover: {takeover_ms:.0} ms after SIGKILL (ttl 1000 ms)");

    assert!(!dir.path().join("overlap").exists(), "two commands ran at once");
    for (_, mut p) in procs {
        unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
        let _ = p.wait();
    }
}

#[test]
fn one_shot_commands_against_a_warden_server() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (url, stop) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let w = Warden::connect("memory://").await.unwrap();
        tokio::spawn(warden_server::run(
            listener,
            w,
            warden_server::ServerConfig::default(),
            async move {
                let _ = rx.await;
            },
        ));
        (url, tx)
    });
    let run = |args: &[&str]| {
        let o = warden_bin().args(args).env("WARDEN_BACKEND", &url).output().unwrap();
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (c, out, err) = run(&["acquire", "report", "--ttl", "60s", "--client-id", "ops", "--json"]);
    assert_eq!(c, Some(0), "{err}");
    // --json prints the REST API's envelope, exactly.
    let answer: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(answer["success"], true);
    let lock = &answer["data"];
    let id = lock["lockId"].as_str().unwrap().to_string();
    assert_eq!(lock["resource"], "report");
    // Without --json, stdout is the lock id alone (ID=$(warden acquire NAME)); the details go to stderr.
    let (c, out, err) = run(&["acquire", "other", "--client-id", "ops"]);
    assert_eq!(c, Some(0), "{err}");
    let other = out.trim().to_string();
    assert!(
        warden::validate::lock_id(&other).is_ok() && out.lines().count() == 1,
        "{out}"
    );
    assert!(err.contains("fencing token"), "{err}");
    let (c, _, err) = run(&["release", &other, "--client-id", "ops"]);
    assert_eq!(c, Some(0), "{err}");
    let (c, out, _) = run(&["status", &id, "--json"]);
    assert_eq!(c, Some(0));
    assert!(out.contains("\"isExpired\":false"), "{out}");
    let (c, out, _) = run(&["held", "--client-id", "ops"]);
    assert_eq!(c, Some(0));
    // The server names the lease by its handle: the lock id stays with the one acquire that made it.
    assert!(out.contains(&warden::lease_handle(&id)) && !out.contains(&id), "{out}");
    let (c, out, _) = run(&["queue", "report"]);
    assert_eq!(c, Some(0));
    assert!(out.contains("held:") && out.contains("0 waiting"), "{out}");
    let (c, _, err) = run(&["renew", &id, "--ttl", "30s", "--client-id", "someone-else"]);
    assert_eq!(c, Some(1));
    assert!(err.contains("not owned by client `someone-else`"), "{err}");
    let (c, out, err) = run(&["renew", &id, "--ttl", "30s", "--client-id", "ops"]);
    assert_eq!(c, Some(0));
    assert!(err.contains("renewed") && out.trim().ends_with('Z'), "{out} {err}");
    let (c, out, _) = run(&["stats", "--json"]);
    assert_eq!(c, Some(0));
    let stats: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(stats["data"]["activeLocks"], 1);
    let (c, _, _) = run(&["release", &id, "--client-id", "ops"]);
    assert_eq!(c, Some(0));
    let (c, _, err) = run(&["status", &id]);
    assert_eq!(c, Some(1));
    assert!(err.contains("no lease"), "{err}");
    // A priority: taken as any waiter's; out of range, the sentence names it.
    let (c, out, err) = run(&["acquire", "prio", "--priority", "-5", "--client-id", "ops"]);
    assert_eq!(c, Some(0), "{err}");
    let (c, _, _) = run(&["release", out.trim(), "--client-id", "ops"]);
    assert_eq!(c, Some(0));
    let (c, _, err) = run(&["acquire", "prio", "--priority", "101"]);
    assert_eq!(c, Some(2), "{err}");
    assert!(err.contains("priority") && err.contains("-100..=100"), "{err}");
    // Several locks as one: stdout is the group id, which renew and release take like a lock id.
    let (c, out, err) = run(&["acquire", "b-acct", "--with", "a-acct", "--client-id", "ops"]);
    assert_eq!(c, Some(0), "{err}");
    let group = out.trim().to_string();
    assert_eq!(group.split('.').count(), 2, "{out}");
    assert!(err.contains("`a-acct`") && err.contains("`b-acct`"), "{err}");
    // One member held by the group: none of the others is taken.
    let (c, _, err) = run(&[
        "acquire",
        "c-acct",
        "--with",
        "a-acct",
        "--wait",
        "0",
        "--client-id",
        "ops",
    ]);
    assert_eq!(c, Some(75), "{err}");
    assert!(err.contains("`a-acct` is held"), "{err}");
    let (_, out, _) = run(&["queue", "c-acct"]);
    assert!(!out.contains("held:"), "c-acct kept after the group failed: {out}");
    let (c, out, err) = run(&["renew", &group, "--ttl", "60s", "--client-id", "ops", "--json"]);
    assert_eq!(c, Some(0), "{err}");
    let renewed: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(renewed["data"]["groupId"], group.as_str());
    assert_eq!(renewed["data"]["locks"][0]["resource"], "a-acct", "{renewed}");
    let (c, _, err) = run(&["release", &group, "--client-id", "ops"]);
    assert_eq!(c, Some(0), "{err}");
    let (_, out, _) = run(&["queue", "a-acct"]);
    assert!(
        !out.contains("held:"),
        "a-acct still held after the group's release: {out}"
    );
    bench_answers(&run);
    let _ = stop.send(());
}

/// Runs the `warden` binary with these arguments: exit code, stdout, stderr.
type Runner<'a> = dyn Fn(&[&str]) -> (Option<i32>, String, String) + 'a;

/// `warden bench` (built with the `bench` feature): one JSON line with the peer harness's fields.
#[cfg(feature = "bench")]
fn bench_answers(run: &Runner<'_>) {
    let (c, out, err) = run(&[
        "bench",
        "--workload",
        "uniform",
        "--duration",
        "300ms",
        "--workers",
        "4",
        "--json",
    ]);
    assert_eq!(c, Some(0), "{err}");
    assert_eq!(out.lines().count(), 1);
    let b: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let keys: Vec<&str> = b.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let mut want = vec![
        "peer",
        "workers",
        "keys",
        "cycles_per_s",
        "acq_p50_us",
        "acq_p99_us",
        "acq_max_us",
        "failed",
        "fifo_violations",
    ];
    want.sort();
    let mut got = keys.clone();
    got.sort();
    assert_eq!(got, want);
    assert!(b["cycles_per_s"].as_f64().unwrap() > 0.0);
    // A hot run of 300 ms by 6 workers with these flags: its JSON line.
    let hot = |flags: &[&str]| {
        let mut args = vec![
            "bench",
            "--workload",
            "hot",
            "--duration",
            "300ms",
            "--workers",
            "6",
            "--json",
        ];
        args.extend_from_slice(flags);
        let (c, out, err) = run(&args);
        assert_eq!(c, Some(0), "{err}");
        serde_json::from_str::<serde_json::Value>(out.trim()).unwrap()
    };
    // A semaphore's run: the most holders seen at once on the hot resource, never above its permits.
    let b = hot(&["--permits", "2"]);
    assert_eq!(b["permits"], 2);
    let most = b["max_holders"].as_u64().unwrap();
    assert!((1..=2).contains(&most), "{b}");
    // Groups of three on the same three resources: one group inside at a time, every cycle completed.
    let b = hot(&["--group", "3"]);
    assert_eq!((b["group"].as_u64(), b["failed"].as_u64()), (Some(3), Some(0)), "{b}");
    assert_eq!(b["max_holders"], 1, "two groups inside at once: {b}");
    assert!(b["cycles_per_s"].as_f64().unwrap() > 0.0, "{b}");
}

/// A default build has no benchmark, and says how to build one.
#[cfg(not(feature = "bench"))]
fn bench_answers(run: &Runner<'_>) {
    let (c, out, err) = run(&["bench", "--workload", "hot", "--json"]);
    assert_eq!(c, Some(2));
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("--features bench"), "{err}");
}

#[test]
fn completions_and_the_man_page_come_from_the_command_definitions() {
    for (shell, marker) in [
        ("bash", "_warden()"),
        ("zsh", "#compdef warden"),
        ("fish", "complete -c warden"),
    ] {
        let out = warden_bin().args(["completions", shell]).output().unwrap();
        assert!(out.status.success());
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(marker) && text.contains("conflict-exit-code"), "{shell}");
    }
    let out = warden_bin().arg("man").output().unwrap();
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH warden 1") && page.contains("completions"), "{page}");
}

#[test]
fn leader_shows_who_leads_and_follows_each_change() {
    use std::io::BufRead;
    let redis = RedisServer::start();
    let url = redis.url();
    let mut candidate = warden_bin()
        .args([
            "elect",
            "jobs",
            "--candidate",
            "node-a",
            "--backend",
            &url,
            "--",
            "sleep",
            "30",
        ])
        .spawn()
        .unwrap();
    let leader = |args: &[&str]| {
        let out = warden_bin()
            .arg("leader")
            .args(args)
            .args(["--backend", &url])
            .output()
            .unwrap();
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while !leader(&["jobs"]).1.contains("node-a") {
        assert!(Instant::now() < deadline, "node-a never led");
    }
    let (code, out) = leader(&["jobs", "--json"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["data"]["candidateId"], "node-a");
    assert!(v["data"]["fencingToken"].as_u64().unwrap() > 0);
    // --follow: the current leader, then the change when it resigns.
    let mut follow = warden_bin()
        .args(["leader", "jobs", "--follow", "--backend", &url])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(follow.stdout.take().unwrap()).lines();
    assert!(lines.next().unwrap().unwrap().contains("node-a leads"));
    // SIGTERM: the command exits and the candidate resigns.
    assert!(Command::new("kill")
        .arg(candidate.id().to_string())
        .status()
        .unwrap()
        .success());
    let _ = candidate.wait();
    assert_eq!(lines.next().unwrap().unwrap(), "nobody leads `jobs`");
    let _ = follow.kill();
    let _ = follow.wait();
    let (_, out) = leader(&["jobs"]);
    assert_eq!(out.trim(), "nobody leads `jobs`");
}

#[test]
fn run_with_holds_every_lock_or_none() {
    let redis = RedisServer::start();
    let url = redis.url();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let w = rt.block_on(Warden::connect(&url)).unwrap();
    let mut blocker = rt
        .block_on(w.lock("stock").ttl(Duration::from_secs(30)).acquire())
        .unwrap();
    // `warden run --backend URL --wait W NAME --with OTHER -- CMD...`.
    let run_with = |wait: &str, name: &str, other: &str, cmd: &[&str]| {
        let mut c = warden_bin();
        c.args(["run", "--backend", &url, "--wait", wait, name, "--with", other, "--"]);
        c.args(cmd).output().unwrap()
    };
    let o = run_with("0", "orders", "stock", &["true"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(75), "{err}");
    assert!(
        err.contains("`stock` is held") && err.contains("none of the locks"),
        "{err}"
    );
    let mut probe = rt
        .block_on(w.lock("orders").try_acquire())
        .unwrap()
        .expect("a refused group kept `orders`");
    rt.block_on(probe.release()).unwrap();
    rt.block_on(blocker.release()).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tokens");
    let script = format!("echo \"$WARDEN_FENCING_TOKENS\" > {}", out.display());
    let o = run_with("5s", "stock", "orders", &["sh", "-c", &script]);
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let tokens: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(
        tokens["stock"].as_u64().unwrap() > blocker.fencing_token() && tokens["orders"].as_u64().is_some(),
        "{tokens}"
    );
    // Both released when the command ended.
    for name in ["stock", "orders"] {
        assert!(
            rt.block_on(w.lock(name).try_acquire()).unwrap().is_some(),
            "`{name}` still held"
        );
    }
}

#[test]
fn run_if_conditions_gate_the_command() {
    let redis = RedisServer::start();
    let url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("token");
    // `warden run --backend URL NAME FLAGS... -- sh -c 'echo $WARDEN_FENCING_TOKEN > out'`.
    let run = |flags: &[&str]| {
        let _ = std::fs::remove_file(&out);
        let mut c = warden_bin();
        c.args(["run", "--backend", &url, "--wait", "0", "report"]).args(flags);
        let script = format!("echo \"$WARDEN_FENCING_TOKEN\" > {}", out.display());
        let o = c.args(["--", "sh", "-c", &script]).output().unwrap();
        let token = std::fs::read_to_string(&out)
            .ok()
            .map(|t| t.trim().parse::<u64>().unwrap());
        (o.status.code(), String::from_utf8_lossy(&o.stderr).to_string(), token)
    };
    // At most one run a minute: the first runs, the second does not (75, or 0 with --skip-if-held).
    let (code, err, first) = run(&["--if-not-granted-within", "1m"]);
    assert_eq!(code, Some(0), "{err}");
    let first = first.expect("the first run ran");
    let (code, err, ran) = run(&["--if-not-granted-within", "1m"]);
    assert_eq!((code, ran), (Some(75), None), "{err}");
    assert!(err.contains("condition") && err.contains("granted"), "{err}");
    let (code, err, ran) = run(&["--if-not-granted-within", "1m", "--skip-if-held"]);
    assert_eq!((code, ran), (Some(0), None), "{err}");
    assert!(err.contains("skipping"), "{err}");
    // Resuming after the run that got `first`: nobody held `report` since, so it runs, once.
    let (code, err, resumed) = run(&["--if-fencing-token", &first.to_string()]);
    assert_eq!(code, Some(0), "{err}");
    assert!(resumed.expect("resumed") > first);
    let (code, err, ran) = run(&["--if-fencing-token", &first.to_string()]);
    assert_eq!((code, ran), (Some(75), None), "{err}");
    assert!(err.contains(&format!("still {first}")), "{err}");
    // A condition names one lock.
    let (code, err, _) = run(&["--if-fencing-token", "1", "--with", "other"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("one lock"), "{err}");
}
