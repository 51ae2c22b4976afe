//! A real Redis Sentinel set: one primary, one replica and three sentinels (`redis-server --sentinel`) on free
//! ports in temporary directories, killed on drop.

use crate::redis_cluster::cli_with;
use crate::RedisServer;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
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
    /// Starts a sentinel watching the primary on `primary_port` (quorum 2; down after `down_after`). With
    /// `tls` (the directory of a TLS node's CA, certificate and key), it speaks TLS only, to clients and nodes.
    pub fn start(primary_port: u16, down_after: Duration, tls: Option<&Path>) -> Self {
        // A sentinel that exits before it monitors lost its free port to another process started meanwhile:
        // it starts again on another.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_start(primary_port, down_after, tls) {
                Ok(s) => return s,
                Err(mpsc::RecvTimeoutError::Disconnected) if attempt < 3 => continue,
                Err(e) => panic!("the sentinel did not start within 10 s: {e:?}"),
            }
        }
    }

    fn try_start(primary_port: u16, down_after: Duration, tls: Option<&Path>) -> Result<Self, mpsc::RecvTimeoutError> {
        let dir = tempfile::tempdir().expect("a temp dir for the sentinel");
        let port = crate::free_port().expect("a free port for the sentinel");
        let conf = dir.path().join("sentinel.conf");
        let listen = match tls {
            None => format!("port {port}\n"),
            Some(d) => format!(
                "port 0\ntls-port {port}\ntls-cert-file {c}\ntls-key-file {k}\ntls-ca-cert-file {a}\n\
                 tls-auth-clients no\ntls-replication yes\n",
                c = d.join("server.crt").display(),
                k = d.join("server.key").display(),
                a = d.join("ca.pem").display()
            ),
        };
        std::fs::write(
            &conf,
            format!(
                "{listen}bind 127.0.0.1\ndaemonize no\nlogfile \"\"\ndir {dir}\n\
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
        if let Err(e) = rx.recv_timeout(Duration::from_secs(10)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        Ok(Sentinel {
            child: Some(child),
            port,
            _dir: dir,
        })
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
    /// For a TLS-only set: the CA that signed every certificate.
    ca: Option<PathBuf>,
}

impl SentinelSet {
    /// Starts the set and returns once the replica is in sync and every sentinel knows the replica and the
    /// other sentinels.
    pub fn start() -> Self {
        Self::start_inner(false)
    }

    /// Like [`SentinelSet::start`], speaking TLS only (clients, replication, sentinels), every certificate
    /// signed by one CA of the test's own ([`SentinelSet::ca_path`]).
    pub fn start_tls() -> Self {
        Self::start_inner(true)
    }

    fn start_inner(tls: bool) -> Self {
        let sync = ["--repl-diskless-sync-delay", "0"];
        let primary = if tls {
            RedisServer::start_tls_with(&[&sync[..], &["--tls-replication", "yes"]].concat())
        } else {
            RedisServer::start_with(&sync)
        };
        let port = primary.port().to_string();
        let follow = [&sync[..], &["--replicaof", "127.0.0.1", &port]].concat();
        let replica = if tls {
            RedisServer::start_tls_like_with(&primary, &follow)
        } else {
            RedisServer::start_with(&follow)
        };
        let ca = primary.ca_path().map(Path::to_path_buf);
        let certs = ca.as_deref().and_then(Path::parent);
        let sentinels = (0..3)
            .map(|_| Sentinel::start(primary.port(), Duration::from_millis(1000), certs))
            .collect();
        let set = SentinelSet {
            nodes: vec![primary, replica],
            sentinels,
            ca,
        };
        set.wait_settled();
        set
    }

    /// The CA of a TLS set.
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// `redis-cli` against the node or sentinel on `port` (over TLS for a TLS set).
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        cli_with(self.ca.as_deref(), port, args)
    }

    /// `redis+sentinel://s1,s2,s3/mymaster`.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port()))
            .collect();
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}+sentinel://{}/{PRIMARY_NAME}", addrs.join(","))
    }

    /// Waits (up to 30 s) until the replica is in sync and every sentinel sees one replica and two other
    /// sentinels.
    pub fn wait_settled(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let replica = self.replica();
            let synced = replica.is_some_and(|r| {
                self.cli(self.nodes[r].port(), &["INFO", "replication"])
                    .contains("master_link_status:up")
            });
            let known = self.sentinels.iter().filter(|s| s.child.is_some()).all(|s| {
                let replicas = self.cli(s.port(), &["SENTINEL", "REPLICAS", PRIMARY_NAME]);
                let others = self.cli(s.port(), &["SENTINEL", "SENTINELS", PRIMARY_NAME]);
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
        let answer = self.cli(s.port(), &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", PRIMARY_NAME]);
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
            self.nodes[i].pid().is_some()
                && self
                    .cli(self.nodes[i].port(), &["INFO", "replication"])
                    .contains("role:slave")
        })
    }

    /// `SENTINEL FAILOVER`: the replica is promoted; returns once the sentinels name it.
    pub fn failover(&self) -> usize {
        let before = self.primary();
        let answer = self.cli(self.sentinels[0].port(), &["SENTINEL", "FAILOVER", PRIMARY_NAME]);
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
