//! A real MariaDB server (Debian's `mariadb-install-db` and `mariadbd`) on a free port with its data in a
//! temporary directory, killed on drop. Tests can kill it, pause it (SIGSTOP) and restart it on the same data.
//! The user is `root` without a password, over TCP on 127.0.0.1 only.

use crate::redis_server::{find_binary, free_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `mariadbd` process owned by a test.
#[derive(Debug)]
pub struct MariaDbServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// The CA that signed its certificate, when it offers TLS.
    ca: Option<PathBuf>,
}

impl MariaDbServer {
    /// Creates a data directory and starts the server on a free port. Panics with a sentence saying what to
    /// install if the binaries are missing (test-only code).
    pub fn start() -> Self {
        Self::start_with_tls(false)
    }

    /// A server that also offers TLS, with a certificate for `127.0.0.1` signed by a CA of the test's own
    /// ([`MariaDbServer::ca_path`]). Plain connections are still accepted (the test's own checks use them).
    pub fn start_tls() -> Self {
        Self::start_with_tls(true)
    }

    /// The CA file a TLS server's certificate is signed by.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    fn start_with_tls(tls: bool) -> Self {
        let missing = || {
            panic!("mariadbd not found: install it (Debian: `apt-get install mariadb-server`) or run scripts/test.sh, which does")
        };
        let bin = find_binary("mariadbd")
            .or_else(|| {
                ["/usr/sbin/mariadbd", "/usr/sbin/mysqld"]
                    .map(PathBuf::from)
                    .into_iter()
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(missing);
        let install = find_binary("mariadb-install-db").unwrap_or_else(missing);
        let dir = tempfile::tempdir().expect("create a temp dir for mariadbd");
        // Its own directory for temporary tables: servers bootstrapping at once in the shared /tmp pick the same
        // names.
        let tmp = dir.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("create mariadbd's tmpdir");
        let mut c = Command::new(install);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", dir.path().join("data").display()))
            .arg(format!("--tmpdir={}", tmp.display()))
            .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
            // Linux native AIO contexts are machine-wide (fs.aio-max-nr): a dozen servers started at once by
            // parallel tests would run out of them. InnoDB's own I/O threads serve a test as well.
            .arg("--innodb-use-native-aio=0");
        if is_root() {
            c.arg("--user=root");
        }
        let out = c.output().expect("run mariadb-install-db");
        assert!(
            out.status.success(),
            "mariadb-install-db failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let ca = tls.then(|| crate::certs::write(dir.path(), dir.path(), None).ca);
        let mut s = MariaDbServer {
            child: None,
            port: 0,
            dir,
            bin,
            ca,
        };
        for _ in 0..5 {
            s.port = free_port().expect("find a free port");
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => eprintln!("mariadbd on port {} failed to start ({e}); trying another port", s.port),
            }
        }
        panic!("mariadbd did not start after 5 attempts")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let d = self.dir.path();
        let log_path = d.join("server.log");
        let log = std::fs::File::create(&log_path).map_err(|e| e.to_string())?;
        let mut c = Command::new(&self.bin);
        c.arg("--no-defaults")
            .arg(format!("--datadir={}", d.join("data").display()))
            .arg(format!("--port={}", self.port))
            .arg(format!("--tmpdir={}", d.join("tmp").display()))
            .arg(format!("--socket={}", d.join("mysqld.sock").display()))
            .arg(format!("--pid-file={}", d.join("mysqld.pid").display()))
            .args(["--bind-address=127.0.0.1", "--skip-log-bin", "--max-connections=300"])
            .args(["--innodb-use-native-aio=0", "--innodb-buffer-pool-size=64M"])
            .args(if self.ca.is_some() {
                vec![
                    format!("--ssl-ca={}", d.join("ca.pem").display()),
                    format!("--ssl-cert={}", d.join("server.crt").display()),
                    format!("--ssl-key={}", d.join("server.key").display()),
                ]
            } else {
                Vec::new()
            })
            // Commits reach the OS at once (a process crash loses none), the disk once a second.
            .arg("--innodb-flush-log-at-trx-commit=2");
        if is_root() {
            c.arg("--user=root");
        }
        let mut child = c
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run mariadbd: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "exited with {status}: {}",
                    std::fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            // The server says so once it accepts connections; the port answering alone comes earlier.
            if std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("ready for connections")) {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err(format!(
            "not ready within 30 s: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        ))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `mysql://root@127.0.0.1:PORT/mysql`.
    pub fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:{}/mysql", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, sig: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) on the server's own process (one process: its connections are threads).
            unsafe {
                libc::kill(pid as i32, sig);
            }
        }
    }

    /// SIGKILL, as a crash would.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
    }

    /// Kills it (if running) and starts it again on the same port and data (crash recovery runs).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn().unwrap_or_else(|e| panic!("mariadbd did not restart: {e}"));
    }

    /// SIGSTOP: it stops answering but keeps its connections. Returns once every thread has stopped (a
    /// signal reaches a process's threads one by one; until then one could still answer).
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
        if let Some(pid) = self.pid() {
            crate::postgres_server::wait_stopped(&[pid as i32]);
        }
    }

    /// SIGCONT after [`MariaDbServer::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }
}

impl Drop for MariaDbServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
