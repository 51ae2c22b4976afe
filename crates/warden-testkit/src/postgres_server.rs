//! A real PostgreSQL server (Debian's `postgresql` binaries: `initdb`, `postgres`) on a free port with its
//! cluster in a temporary directory, killed on drop. Tests can kill it, pause it (SIGSTOP) and restart it on the
//! same data. The server refuses to run as root: as root (CI containers), the cluster belongs to the
//! `postgres` system user and the server runs as that user.

use crate::redis_server::{find_binary, free_port};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `postgres` process owned by a test.
#[derive(Debug)]
pub struct PostgresServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    /// (uid, gid) to run as, when the test process is root.
    run_as: Option<(u32, u32)>,
    /// Settings added to the command line (`-c name=value`).
    settings: Vec<String>,
    /// With [`PostgresServer::start_tls`], the CA that signed the server's certificate.
    ca: Option<PathBuf>,
}

/// The directory of the PostgreSQL server binaries: where `initdb` on PATH really lives (links resolved: a
/// machine may link only some of them onto PATH), else the newest `/usr/lib/postgresql/<version>/bin` (Debian
/// keeps them off PATH).
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(initdb) = find_binary("initdb") {
        let real = std::fs::canonicalize(&initdb).unwrap_or(initdb);
        if let Some(dir) = real.parent().filter(|d| d.join("pg_isready").is_file()) {
            return Some(dir.to_path_buf());
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` system user.
fn postgres_user() -> Option<(u32, u32)> {
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam returns a pointer into static storage or null; it is read at once, on this thread,
    // before any other call that could overwrite it.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return None;
    }
    // SAFETY: pw is non-null and points to a valid passwd record (see above).
    Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) })
}

impl PostgresServer {
    /// Creates a cluster (user `warden`, trust authentication, UTF-8) and starts the server on a free port.
    /// Panics with a sentence saying what to install if the binaries are missing (test-only code).
    pub fn start() -> Self {
        Self::start_with(false)
    }

    /// Like [`PostgresServer::start`], also accepting TLS (`ssl=on`) with a certificate for `127.0.0.1` and
    /// `localhost` from a CA of its own ([`PostgresServer::ca_path`]).
    pub fn start_tls() -> Self {
        Self::start_with(true)
    }

    fn start_with(tls: bool) -> Self {
        let bin = postgres_bin_dir().unwrap_or_else(|| {
            panic!("PostgreSQL server binaries not found: install them (Debian: `apt-get install postgresql`) or run scripts/test.sh, which does")
        });
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = if root {
            Some(postgres_user().expect("running as root, and there is no `postgres` user to run the server as"))
        } else {
            None
        };
        let dir = tempfile::tempdir().expect("create a temp dir for postgres");
        if let Some((uid, gid)) = run_as {
            chown(dir.path(), uid, gid);
        }
        let mut s = PostgresServer {
            child: None,
            port: 0,
            dir,
            bin,
            run_as,
            settings: Vec::new(),
            ca: None,
        };
        let out = s
            .command("initdb")
            .args(["-D"])
            .arg(s.data())
            .args(["-U", "warden", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        if tls {
            let certs = crate::certs::write(s.dir.path(), &s.data(), s.run_as);
            s.settings = vec![
                "ssl=on".into(),
                format!("ssl_cert_file={}", certs.cert.display()),
                format!("ssl_key_file={}", certs.key.display()),
            ];
            s.ca = Some(certs.ca);
        }
        for _ in 0..5 {
            s.port = free_port().expect("find a free port");
            match s.spawn() {
                Ok(()) => return s,
                Err(e) => eprintln!("postgres on port {} failed to start ({e}); trying another port", s.port),
            }
        }
        panic!("postgres did not start after 5 attempts")
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command of the server's binaries, as the user that owns the cluster.
    fn command(&self, name: &str) -> Command {
        let mut c = Command::new(self.bin.join(name));
        if let Some((uid, gid)) = self.run_as {
            c.uid(uid).gid(gid);
        }
        c.current_dir(self.dir.path());
        c
    }

    fn spawn(&mut self) -> Result<(), String> {
        let log = std::fs::File::create(self.dir.path().join("server.log")).map_err(|e| e.to_string())?;
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-p", &self.port.to_string(), "-k"])
            .arg(self.dir.path())
            // A process crash loses nothing without fsync (the OS keeps the writes); a test is no OS crash.
            .args([
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
                // A deadlock is broken (and its victim's call run again) well within the tests' short timeouts.
                "-c",
                "deadlock_timeout=100ms",
            ])
            .args(self.settings.iter().flat_map(|kv| ["-c", kv.as_str()]))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot run postgres: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
                return Err(format!("exited with {status}: {log}"));
            }
            let ready = self
                .command("pg_isready")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "warden",
                    "-d",
                    "postgres",
                ])
                .stdout(Stdio::null())
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ready {
                self.child = Some(child);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        let log = std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        Err(format!("not ready within 30 s: {log}"))
    }

    /// The CA certificate (PEM) that signed the server's certificate, for a server started with
    /// [`PostgresServer::start_tls`].
    pub fn ca_path(&self) -> Option<&Path> {
        self.ca.as_deref()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://warden@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://warden@127.0.0.1:{}/postgres", self.port)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Signals the postmaster and every process it started. Each backend runs in a session of its own
    /// (PostgreSQL calls setsid in its children), so the postmaster's process group does not reach them: they
    /// are found as the postmaster's children in /proc.
    fn signal_all(&self, sig: i32) -> Vec<i32> {
        let Some(pid) = self.pid() else { return Vec::new() };
        let mut pids = vec![pid as i32];
        if let Ok(entries) = std::fs::read_dir("/proc") {
            for e in entries.flatten() {
                let Some(child) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                    continue;
                };
                if proc_stat(&e.path().join("stat")).is_some_and(|(_, ppid)| ppid == pid as i32) {
                    pids.push(child);
                }
            }
        }
        for p in &pids {
            // SAFETY: kill(2) on a process of this server; no memory is involved.
            unsafe {
                libc::kill(*p, sig);
            }
        }
        pids
    }

    /// SIGKILL to the server and its backends, as a crash would. Waits until the backends are gone too: a
    /// new server refuses shared memory that an old backend still holds.
    pub fn kill(&mut self) {
        let killed = self.signal_all(libc::SIGKILL);
        let Some(mut c) = self.child.take() else { return };
        let _ = c.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && killed.iter().any(|p| alive(*p)) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills it (if running) and starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.kill();
        // A killed postmaster leaves its pid file; the new one checks that the pid is gone and goes on.
        self.spawn().unwrap_or_else(|e| panic!("postgres did not restart: {e}"));
    }

    /// SIGSTOP to the server and its backends: it stops answering but keeps its connections. Returns once
    /// all of them have stopped.
    pub fn pause(&self) {
        let stopped = self.signal_all(libc::SIGSTOP);
        wait_stopped(&stopped);
    }

    /// SIGCONT after [`PostgresServer::pause`].
    pub fn resume(&self) {
        let _ = self.signal_all(libc::SIGCONT);
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        // The cluster belongs to `postgres` when run as root; the temp dir is removed by its owner (root) anyway.
    }
}

pub(crate) fn chown(path: &Path, uid: u32, gid: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).expect("a path without NUL bytes");
    // SAFETY: c is a valid NUL-terminated path for the duration of the call.
    let rc = unsafe { libc::chown(c.as_ptr(), uid, gid) };
    assert_eq!(rc, 0, "cannot hand {} to the postgres user", path.display());
}

/// Whether `pid` is a process that has not exited (a zombie has: it holds no memory).
fn alive(pid: i32) -> bool {
    proc_stat(Path::new(&format!("/proc/{pid}/stat"))).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The state letter and parent pid of a `/proc/.../stat` file ("pid (comm) state ppid ..."; comm may hold
/// spaces and parentheses, so the fields are read after the last ')'); `None` when the process is gone.
fn proc_stat(path: &Path) -> Option<(char, i32)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Waits (up to 5 s) until every thread of every process in `pids` is stopped (state `T`) or gone.
pub(crate) fn wait_stopped(pids: &[i32]) {
    let stopped = |pid: &i32| {
        let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
            return true; // gone
        };
        tasks
            .flatten()
            .all(|t| proc_stat(&t.path().join("stat")).is_none_or(|(state, _)| matches!(state, 'T' | 't' | 'Z' | 'X')))
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !pids.iter().all(stopped) {
        std::thread::sleep(Duration::from_millis(1));
    }
}
