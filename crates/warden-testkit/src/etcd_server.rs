//! Real `etcd` members on free ports in temporary directories, killed on drop: one member, or a cluster of
//! three whose members tests can kill, pause and restart.

use crate::redis_server::{find_binary, free_port};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One etcd member owned by a test.
#[derive(Debug)]
pub struct EtcdMember {
    name: String,
    client_port: u16,
    peer_port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// An etcd cluster of one or more members, started together.
pub struct EtcdCluster {
    bin: PathBuf,
    initial: String,
    /// With TLS: the CA, the members' certificate and key, and a client identity (certificate and key in one
    /// PEM file) the members accept, since they check client certificates.
    tls: Option<(crate::certs::Certs, PathBuf, tempfile::TempDir)>,
    /// Its members, in the order of the URL.
    pub members: Vec<EtcdMember>,
}

impl EtcdCluster {
    /// Starts one member. Panics with what to install if `etcd` is not on PATH (test-only code).
    pub fn single() -> Self {
        Self::start(1)
    }

    /// Starts `n` members as one cluster (fast elections: 50 ms heartbeats, 500 ms election timeout) and
    /// waits until every member answers.
    pub fn start(n: usize) -> Self {
        Self::start_with(n, false)
    }

    /// Like [`EtcdCluster::start`], the members speaking TLS only and requiring client certificates signed by
    /// the test's CA ([`EtcdCluster::ca_path`], [`EtcdCluster::identity_path`]).
    pub fn start_tls(n: usize) -> Self {
        Self::start_with(n, true)
    }

    fn start_with(n: usize, tls: bool) -> Self {
        let tls = tls.then(|| {
            let dir = tempfile::tempdir().expect("temp dir for certificates");
            let certs = crate::certs::write(dir.path(), dir.path(), None);
            let identity = dir.path().join("client.pem");
            let pem = [
                std::fs::read(&certs.cert).expect("read cert"),
                std::fs::read(&certs.key).expect("read key"),
            ]
            .concat();
            std::fs::write(&identity, pem).expect("write the client identity");
            (certs, identity, dir)
        });
        let bin = find_binary("etcd").unwrap_or_else(|| {
            panic!("etcd not found on PATH: install it (Debian: `apt-get install etcd-server etcd-client`) or run scripts/test.sh, which does")
        });
        // A free port picked here can be taken by another test's server before etcd binds it, and the member
        // then never serves: start again on fresh ports, up to three times.
        let mut tls = tls;
        for _ in 0..3 {
            match Self::try_start(&bin, n, tls) {
                Ok(c) => return c,
                Err(back) => tls = back,
            }
        }
        panic!("etcd did not start serving on three sets of fresh ports (see the members' etcd.log)");
    }

    /// One start on fresh ports: the cluster once every member answers, else the TLS material back.
    #[allow(clippy::type_complexity)]
    fn try_start(
        bin: &std::path::Path,
        n: usize,
        tls: Option<(crate::certs::Certs, PathBuf, tempfile::TempDir)>,
    ) -> Result<Self, Option<(crate::certs::Certs, PathBuf, tempfile::TempDir)>> {
        let members: Vec<EtcdMember> = (0..n)
            .map(|i| EtcdMember {
                name: format!("m{i}"),
                client_port: free_port().expect("free port"),
                peer_port: free_port().expect("free port"),
                dir: tempfile::tempdir().expect("temp dir for etcd"),
                child: None,
            })
            .collect();
        let initial = members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = EtcdCluster {
            bin: bin.to_path_buf(),
            initial,
            tls,
            members,
        };
        for i in 0..n {
            c.spawn(i);
        }
        if (0..n).all(|i| c.wait_healthy(i, Duration::from_secs(20))) {
            Ok(c)
        } else {
            Err(c.tls.take())
        }
    }

    fn spawn(&mut self, i: usize) {
        let m = &self.members[i];
        let client = format!("{}://127.0.0.1:{}", self.scheme(), m.client_port);
        let peer = format!("http://127.0.0.1:{}", m.peer_port);
        let log = std::fs::File::create(m.dir.path().join("etcd.log")).expect("etcd log file");
        let mut cmd = Command::new(&self.bin);
        if let Some((certs, _, _)) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&certs.cert)
                .arg("--key-file")
                .arg(&certs.key);
            cmd.arg("--trusted-ca-file").arg(&certs.ca).arg("--client-cert-auth");
        }
        let child = cmd
            .args(["--name", &m.name])
            .arg("--data-dir")
            .arg(m.dir.path().join("data"))
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new"])
            .args(["--initial-cluster-token", "warden-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-outputs", "stderr"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd");
        self.members[i].child = Some(child);
    }

    /// Whether member `i` answers a health check (it has a leader) within `within`.
    pub fn wait_healthy(&self, i: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let ok = self
                .etcdctl_command()
                .args([
                    "--endpoints",
                    &self.endpoint(i),
                    "--command-timeout=1s",
                    "endpoint",
                    "health",
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return true;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    }

    /// `etcd://127.0.0.1:P1,127.0.0.1:P2,...`
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Runs `etcdctl` against every member; returns its stdout.
    pub fn etcdctl(&self, args: &[&str]) -> String {
        let eps: Vec<String> = (0..self.members.len()).map(|i| self.endpoint(i)).collect();
        let out = self
            .etcdctl_command()
            .args(["--endpoints", &eps.join(","), "--command-timeout=3s"])
            .args(args)
            .output()
            .expect("run etcdctl");
        assert!(
            out.status.success(),
            "etcdctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The index of the member that leads now, if one answers that it does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.members.len()).find(|&i| {
            self.members[i].child.is_some()
                && self
                    .etcdctl_command()
                    .args(["--endpoints", &self.endpoint(i), "--command-timeout=1s"])
                    .args(["endpoint", "status", "-w", "json"])
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                    .is_some_and(|s| {
                        // {"Status":{"header":{"member_id":X,...},"leader":X,...}}
                        let field = |name: &str| {
                            s.split(&format!("\"{name}\":"))
                                .nth(1)
                                .and_then(|r| r.split([',', '}']).next())
                                .map(str::to_string)
                        };
                        field("member_id").is_some() && field("member_id") == field("leader")
                    })
        })
    }

    fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The client URL of member `i` (`http://` or `https://`).
    pub fn endpoint(&self, i: usize) -> String {
        format!("{}://127.0.0.1:{}", self.scheme(), self.members[i].client_port)
    }

    /// The CA that signed the members' certificates, with TLS.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|(c, _, _)| c.ca.as_path())
    }

    /// A client certificate and key (one PEM file) the members accept, with TLS.
    pub fn identity_path(&self) -> Option<&std::path::Path> {
        self.tls.as_ref().map(|(_, id, _)| id.as_path())
    }

    fn etcdctl_command(&self) -> Command {
        let mut c = Command::new("etcdctl");
        c.env("ETCDCTL_API", "3");
        if let Some((certs, _, _)) = &self.tls {
            c.arg("--cacert")
                .arg(&certs.ca)
                .arg("--cert")
                .arg(&certs.cert)
                .arg("--key")
                .arg(&certs.key);
        }
        c
    }

    /// SIGKILL member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGKILL every member.
    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }

    /// Starts member `i` again on its data (after [`EtcdCluster::kill`]).
    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        self.spawn(i);
    }

    /// SIGSTOP member `i` (alive, answering nothing); [`EtcdCluster::resume`] continues it.
    pub fn pause(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
    }

    /// SIGCONT member `i`.
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

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            // A paused member would not die of SIGKILL before it is continued on some kernels' accounting.
            self.resume(i);
            self.kill(i);
        }
    }
}
