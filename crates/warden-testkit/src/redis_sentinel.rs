//! A real Redis Sentinel set: one primary, one replica and three sentinels (`redis-server --sentinel`) on free
//! ports in temporary directories, killed on drop.

use crate::redis_cluster::cli;
use crate::RedisServer;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The name the sentinels monitor the primary by.
pub const PRIMARY_NAME: &str = "mymaster";

/// One sentinel process.
#[derive(Debug)]
pub struct Sentinel {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Sentinel {
    /// Starts a sentinel watching the primary on `primary_port` (quorum 2; down after `down_after`).
    pub fn start(primary_port: u16, down_after: Duration) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir for the sentinel");
        let port = crate::free_port().expect("a free port for the sentinel");
        let conf = dir.path().join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {dir}\n\
                 sentinel monitor {PRIMARY_NAME} 127.0.0.1 {primary_port} 2\n\
                 sentinel down-after-milliseconds {PRIMARY_NAME} {down}\n\
                 sentinel failover-timeout {PRIMARY_NAME} 5000\n",
                dir = dir.path().display(),
                down = down_after.as_millis()
            ),
        )
        .expect("write sentinel.conf");
        let mut child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian: redis-server) is needed for Sentinel tests");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if line.contains("+monitor master") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the sentinel did not start within 10 s");
        Sentinel {
            child: Some(child),
            port,
            _dir: dir,
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One primary, one replica, three sentinels.
#[derive(Debug)]
pub struct SentinelSet {
    /// `nodes[0]` starts as the primary, `nodes[1]` as its replica (roles swap with failovers).
    pub nodes: Vec<RedisServer>,
    /// The sentinels.
    pub sentinels: Vec<Sentinel>,
}

impl SentinelSet {
    /// Starts the set and returns once the replica is in sync and every sentinel knows the replica and the
    /// other sentinels.
    pub fn start() -> Self {
        let primary = RedisServer::start_with(&["--repl-diskless-sync-delay", "0"]);
        let port = primary.port().to_string();
        let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &port, "--repl-diskless-sync-delay", "0"]);
        let sentinels = (0..3)
            .map(|_| Sentinel::start(primary.port(), Duration::from_millis(1000)))
            .collect();
        let set = SentinelSet {
            nodes: vec![primary, replica],
            sentinels,
        };
        set.wait_settled();
        set
    }

    /// `redis+sentinel://s1,s2,s3/mymaster`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        format!("redis+sentinel://{}/{PRIMARY_NAME}", addrs.join(","))
    }

    /// Waits (up to 30 s) until the replica is in sync and every sentinel sees one replica and two other
    /// sentinels.
    pub fn wait_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replica = self.replica();
            let synced = replica
                .is_some_and(|r| cli(self.nodes[r].port(), &["INFO", "replication"]).contains("master_link_status:up"));
            let known = self.sentinels.iter().filter(|s| s.child.is_some()).all(|s| {
                let replicas = cli(s.port(), &["SENTINEL", "REPLICAS", PRIMARY_NAME]);
                let others = cli(s.port(), &["SENTINEL", "SENTINELS", PRIMARY_NAME]);
                replicas.contains("flags\nslave\n") && others.matches("flags\nsentinel").count() == 2
            });
            if synced && known {
                return;
            }
            assert!(Instant::now() < deadline, "the Sentinel set did not settle within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The index of the node the sentinels name as the primary.
    pub fn primary(&self) -> usize {
        let s = self
            .sentinels
            .iter()
            .find(|s| s.child.is_some())
            .expect("a running sentinel");
        let answer = cli(s.port(), &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY_NAME]);
        let port: u16 = answer
            .lines()
            .nth(1)
            .and_then(|p| p.trim().parse().ok())
            .expect("the primary's port");
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .expect("a node of this set")
    }

    /// The index of the node that is a replica now, if it runs.
    pub fn replica(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| {
            self.nodes[i].pid().is_some() && cli(self.nodes[i].port(), &["INFO", "replication"]).contains("role:slave")
        })
    }

    /// `SENTINEL FAILOVER`: the replica is promoted; returns once the sentinels name it.
    pub fn failover(&self) -> usize {
        let before = self.primary();
        let answer = cli(self.sentinels[0].port(), &["SENTINEL", "FAILOVER", PRIMARY_NAME]);
        assert!(answer.contains("OK"), "SENTINEL FAILOVER answered {answer}");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let now = self.primary();
            if now != before {
                return now;
            }
            assert!(Instant::now() < deadline, "no failover within 30 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
