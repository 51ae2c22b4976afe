//! A real `redis-server` on a free port in a temporary directory, killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A `redis-server` process owned by a test.
#[derive(Debug)]
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    bin: PathBuf,
    extra: Vec<String>,
    /// The CA that signed its certificate, when it speaks TLS only.
    ca: Option<PathBuf>,
}

/// Finds `name` on PATH.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join(name)).find(|p| p.is_file())
}

/// A TCP port on 127.0.0.1 that was free a moment ago (nothing answers there: connection refused).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// An address on 127.0.0.1 where connections are refused for the rest of the test process. A socket bound
/// there without listening holds the port: a port that is merely free (see [`free_port`]) can be handed to
/// the next server a test running in parallel starts, and then it answers.
pub fn refused_addr() -> std::io::Result<String> {
    static HELD: std::sync::Mutex<Vec<tokio::net::TcpSocket>> = std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(([127, 0, 0, 1], 0).into())?;
    let addr = socket.local_addr()?;
    HELD.lock().unwrap_or_else(|e| e.into_inner()).push(socket);
    Ok(addr.to_string())
}

impl RedisServer {
    /// Starts a server on a free port, persisting nothing unless asked. Panics with a sentence saying what
    /// to install if `redis-server` is not on PATH (this is test-only code).
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`RedisServer::start`], with extra `redis-server` arguments (e.g. `--cluster-enabled yes`).
    pub fn start_with(extra: &[&str]) -> Self {
        let bin = find_binary("redis-server").unwrap_or_else(|| {
            panic!("redis-server not found on PATH: install it (Debian: `apt-get install redis-server`) or run scripts/test.sh, which does")
        });
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        let mut s = RedisServer {
            child: None,
            port: 0,
            dir,
            bin,
            extra: extra.iter().map(|a| a.to_string()).collect(),
            ca: None,
        };
        s.start_on_a_free_port();
        s
    }

    /// A server that speaks TLS only (`--tls-port`, `--port 0`), with a certificate for `127.0.0.1` signed by a
    /// CA of the test's own ([`RedisServer::ca_path`]); clients are not asked for certificates.
    pub fn start_tls() -> Self {
        Self::start_tls_with(&[])
    }

    /// Like [`RedisServer::start_tls`], with extra `redis-server` arguments.
    pub fn start_tls_with(more: &[&str]) -> Self {
        let bin = find_binary("redis-server").unwrap_or_else(|| {
            panic!("redis-server not found on PATH: install it (Debian: `apt-get install redis-server`) or run scripts/test.sh, which does")
        });
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        let certs = crate::certs::write(dir.path(), dir.path(), None);
        let extra = [
            "--tls-cert-file".to_string(),
            certs.cert.display().to_string(),
            "--tls-key-file".to_string(),
            certs.key.display().to_string(),
            "--tls-ca-cert-file".to_string(),
            certs.ca.display().to_string(),
            "--tls-auth-clients".to_string(),
            "no".to_string(),
        ];
        let mut s = RedisServer {
            child: None,
            port: 0,
            dir,
            bin,
            extra: extra
                .iter()
                .cloned()
                .chain(more.iter().map(|a| a.to_string()))
                .collect(),
            ca: Some(certs.ca),
        };
        s.start_on_a_free_port();
        s
    }

    /// Another TLS-only server with the same certificate (for `127.0.0.1`) and CA as `other`, which must outlive
    /// it: the nodes of a Redlock that one `ca=` checks.
    pub fn start_tls_like(other: &RedisServer) -> Self {
        Self::start_tls_like_with(other, &[])
    }

    /// Like [`RedisServer::start_tls_like`], with extra `redis-server` arguments (later ones win over `other`'s).
    pub fn start_tls_like_with(other: &RedisServer, more: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("create a temp dir for redis-server");
        let mut s = RedisServer {
            child: None,
            port: 0,
            dir,
            bin: other.bin.clone(),
            extra: other
                .extra
                .iter()
                .cloned()
                .chain(more.iter().map(|a| a.to_string()))
                .collect(),
            ca: other.ca.clone(),
        };
        s.start_on_a_free_port();
        s
    }

    /// The CA file a TLS server's certificate is signed by.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    fn start_on_a_free_port(&mut self) {
        for attempt in 0..5 {
            self.port = free_port().expect("find a free port");
            if attempt > 0 {
                // The port that was taken may be the cluster bus's: a retry takes a fresh one of those too.
                if let Some(i) = self.extra.iter().position(|a| a == "--cluster-port") {
                    if let Some(bus) = self.extra.get_mut(i + 1) {
                        *bus = free_port().expect("find a free port").to_string();
                    }
                }
            }
            match self.spawn() {
                Ok(()) => return,
                Err(e) => eprintln!(
                    "redis-server on port {} failed to start ({e}); trying another port",
                    self.port
                ),
            }
        }
        panic!("redis-server did not start after 5 attempts")
    }

    fn spawn(&mut self) -> Result<(), String> {
        let mut child = Command::new(&self.bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .args([
                "--dbfilename",
                "dump.rdb",
                "--logfile",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "no",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .args(&self.extra)
            // A TLS server listens on its port with TLS only (later arguments win).
            .args(if self.ca.is_some() {
                vec![
                    "--port".to_string(),
                    "0".to_string(),
                    "--tls-port".to_string(),
                    self.port.to_string(),
                ]
            } else {
                Vec::new()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut ready = false;
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if !ready && line.contains("Ready to accept connections") {
                    ready = true;
                    let _ = tx.send(Ok(()));
                } else if !ready && (line.contains("Address already in use") || line.contains("# Failed")) {
                    let _ = tx.send(Err(line.trim().to_string()));
                }
                line.clear();
            }
            let _ = tx.send(Err("redis-server exited".into()));
        });
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {
                self.child = Some(child);
                Ok(())
            }
            Ok(Err(e)) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                Err("not ready within 10 s".into())
            }
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (`rediss://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The process id, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// SIGKILL, and wait for the process to go.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server and starts it again on the same port. With `keep_data` it shuts down saving its
    /// dataset (`SHUTDOWN SAVE`: no write can fall between the save and the exit) and loads it again; without,
    /// it is killed (SIGKILL) and the restarted server is empty.
    pub fn restart(&mut self, keep_data: bool) {
        if keep_data {
            // The reply never comes (the server exits): only the write matters.
            let _ = self.command(&["SHUTDOWN", "SAVE"]);
            if let Some(c) = self.child.as_mut() {
                let _ = c.wait();
            }
        }
        self.kill();
        if !keep_data {
            let _ = std::fs::remove_file(self.dir.path().join("dump.rdb"));
        }
        let mut last = String::new();
        for _ in 0..50 {
            match self.spawn() {
                Ok(()) => return,
                Err(e) => last = e, // the port may linger for a moment after SIGKILL
            }
        }
        panic!("redis-server did not restart on port {}: {last}", self.port)
    }

    /// SIGSTOP: the process stays alive but answers nothing.
    pub fn pause(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// SIGCONT after [`RedisServer::pause`].
    pub fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    fn signal(&self, sig: libc::c_int) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid we spawned and own; no memory is involved.
            unsafe {
                libc::kill(pid as libc::pid_t, sig);
            }
        }
    }

    /// `INFO commandstats`, whole (through `redis-cli`: [`RedisServer::command`] reads one line).
    pub fn commandstats(&self) -> String {
        let out = std::process::Command::new("redis-cli")
            .args(["-p", &self.port().to_string(), "INFO", "commandstats"])
            .output()
            .expect("redis-cli (from redis-tools) is needed for this test");
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// How often the server ran `cmd` (lower case) since start or `CONFIG RESETSTAT`, counting commands run
    /// inside scripts too.
    pub fn command_calls(&self, cmd: &str) -> u64 {
        let prefix = format!("cmdstat_{cmd}:");
        self.commandstats()
            .lines()
            .find(|l| l.starts_with(&prefix))
            .and_then(|l| l.split("calls=").nth(1))
            .and_then(|s| s.split(',').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }

    /// Sends one command over a fresh connection and returns the first line of the reply.
    pub fn command(&self, args: &[&str]) -> std::io::Result<String> {
        let mut s = TcpStream::connect(self.addr())?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut buf = format!("*{}\r\n", args.len());
        for a in args {
            buf.push_str(&format!("${}\r\n{}\r\n", a.len(), a));
        }
        s.write_all(buf.as_bytes())?;
        let mut reply = Vec::new();
        let mut byte = [0u8; 1];
        while s.read(&mut byte)? == 1 {
            reply.push(byte[0]);
            if reply.ends_with(b"\r\n") {
                break;
            }
        }
        Ok(String::from_utf8_lossy(&reply).trim_end().to_string())
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}
