//! Real ZooKeeper servers (Debian's `zookeeper` package, run on `java`) on free ports in temporary
//! directories, killed on drop: one standalone server, or an ensemble of three whose members tests can kill,
//! pause and restart.

use crate::redis_server::free_port;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One ZooKeeper server owned by a test.
#[derive(Debug)]
pub struct ZkMember {
    client_port: u16,
    quorum_port: u16,
    election_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// A ZooKeeper ensemble of one or more servers, started together.
pub struct ZkEnsemble {
    jar: PathBuf,
    /// Its servers, in the order of the URL.
    pub members: Vec<ZkMember>,
}

/// The ensemble's tick: sessions may last from 2 to 240 ticks (0.5 s to 60 s).
const TICK_MS: u64 = 250;

impl ZkEnsemble {
    /// Starts one standalone server. Panics with what to install if java or ZooKeeper's jar is missing.
    pub fn single() -> Self {
        Self::start(1)
    }

    /// Starts `n` servers as one ensemble (250 ms ticks, so a dead member is noticed within about a second)
    /// and waits until every one serves. Their logs are written without fsync (`forceSync=no`): tests kill
    /// processes, never the machine, and what a killed process wrote is in the page cache.
    pub fn start(n: usize) -> Self {
        let jar = std::env::var_os("ZOOKEEPER_JAR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/usr/share/java/zookeeper.jar"));
        assert!(
            jar.exists() && crate::redis_server::find_binary("java").is_some(),
            "ZooKeeper not found: install it (Debian: `apt-get install zookeeper`) or run scripts/test.sh, which does"
        );
        // The ports are picked free and bound by the servers a moment later; another test may take one in
        // between (the server then never serves): start again on fresh ports.
        let mut last = String::new();
        for _ in 0..3 {
            match Self::try_start(&jar, n) {
                Ok(e) => return e,
                Err(why) => last = why,
            }
        }
        panic!("zookeeper did not start serving in three tries: {last}");
    }

    fn try_start(jar: &std::path::Path, n: usize) -> Result<Self, String> {
        let members: Vec<ZkMember> = (0..n)
            .map(|_| ZkMember {
                client_port: free_port().expect("free port"),
                quorum_port: free_port().expect("free port"),
                election_port: free_port().expect("free port"),
                dir: tempfile::tempdir().expect("temp dir for zookeeper"),
                child: None,
            })
            .collect();
        let servers: String = members
            .iter()
            .enumerate()
            .map(|(i, m)| format!("server.{}=127.0.0.1:{}:{}\n", i + 1, m.quorum_port, m.election_port))
            .collect();
        for (i, m) in members.iter().enumerate() {
            let data = m.dir.path().join("data");
            std::fs::create_dir_all(&data).expect("zookeeper data dir");
            std::fs::write(data.join("myid"), format!("{}\n", i + 1)).expect("myid");
            let mut cfg = format!(
                "tickTime={TICK_MS}\ninitLimit=40\nsyncLimit=4\ndataDir={}\nclientPort={}\n\
                 clientPortAddress=127.0.0.1\nadmin.enableServer=false\nminSessionTimeout=500\n\
                 maxSessionTimeout=60000\n4lw.commands.whitelist=srvr,ruok\nmaxClientCnxns=0\n\
                 znode.container.checkIntervalMs=1000\nforceSync=no\n",
                data.display(),
                m.client_port
            );
            if n > 1 {
                cfg.push_str(&servers);
            }
            std::fs::write(m.dir.path().join("zoo.cfg"), cfg).expect("zoo.cfg");
        }
        let mut e = ZkEnsemble {
            jar: jar.to_path_buf(),
            members,
        };
        for i in 0..n {
            e.spawn(i);
        }
        for i in 0..n {
            if !e.wait_serving(i, Duration::from_secs(20)) {
                // Dropping `e` kills every server of this try.
                return Err(format!("server {i}: {}", e.log_tail(i)));
            }
        }
        Ok(e)
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let log = std::fs::File::create(m.dir.path().join("zookeeper.log")).expect("zookeeper log");
        let child = Command::new("java")
            // A small heap, and the quick-starting compiler only: a test starts many of these.
            .args(["-Xmx192m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-Xss512k"])
            .arg(format!("-Dzookeeper.log.dir={}", m.dir.path().display()))
            .arg("-Dzookeeper.extendedTypesEnabled=true")
            .arg("-cp")
            .arg(&self.jar)
            .arg("org.apache.zookeeper.server.quorum.QuorumPeerMain")
            .arg(m.dir.path().join("zoo.cfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("spawn java for zookeeper");
        self.members[i].child = Some(child);
    }

    fn log_tail(&self, i: usize) -> String {
        let log = std::fs::read_to_string(self.members[i].dir.path().join("zookeeper.log")).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().join("\n")
    }

    /// Asks server `i` a four-letter word; its answer, if it answered.
    pub fn ask(&self, i: usize, word: &str) -> Option<String> {
        let addr = format!("127.0.0.1:{}", self.members[i].client_port);
        let addr = addr.parse().ok()?;
        let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
        s.write_all(word.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    }

    /// Whether server `i` serves (standalone, leader or follower) within `within`.
    pub fn wait_serving(&self, i: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if self.ask(i, "srvr").is_some_and(|s| s.contains("Mode:")) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// The index of the server that leads now (or the standalone one).
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && self
                    .ask(i, "srvr")
                    .is_some_and(|s| s.contains("Mode: leader") || s.contains("Mode: standalone"))
        })
    }

    /// `zk://127.0.0.1:P1,127.0.0.1:P2,...`
    pub fn url(&self) -> String {
        format!("zk://{}", self.hosts())
    }

    /// `127.0.0.1:P1,127.0.0.1:P2,...`: ZooKeeper's connect string.
    pub fn hosts(&self) -> String {
        let hosts: Vec<String> = (0..self.members.len()).map(|i| self.address(i)).collect();
        hosts.join(",")
    }

    /// `127.0.0.1:P` of server `i`.
    pub fn address(&self, i: usize) -> String {
        format!("127.0.0.1:{}", self.members[i].client_port)
    }

    /// SIGKILL server `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL every server.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts server `i` again on its data (after [`ZkEnsemble::kill`]).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// SIGSTOP server `i` (alive, answering nothing); [`ZkEnsemble::resume`] continues it.
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// SIGCONT server `i`.
    pub fn resume(&self, i: usize) {
        self.signal(i, libc::SIGCONT);
    }

    fn signal(&self, i: usize, sig: libc::c_int) {
        if let Some(c) = &self.members[i].child {
            // SAFETY: kill(2) on a child we spawned and own; no memory is involved.
            unsafe {
                libc::kill(c.id() as libc::pid_t, sig);
            }
        }
    }
}

impl Drop for ZkEnsemble {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}
