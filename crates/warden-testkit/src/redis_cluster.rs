//! A real Redis Cluster: primaries and replicas as `redis-server --cluster-enabled yes` on free ports, joined by
//! `redis-cli --cluster create`, killed on drop. Tests kill, pause and restart its nodes and move its slots.

use crate::RedisServer;
use std::process::Command;
use std::time::{Duration, Instant};

/// A cluster owned by a test. `nodes[..primaries]` were created as primaries, the rest as their replicas
/// (roles change with failovers: ask [`RedisCluster::owner_of`]).
#[derive(Debug)]
pub struct RedisCluster {
    /// Every node (public so tests can kill, pause or restart them).
    pub nodes: Vec<RedisServer>,
    /// For a TLS-only cluster: the CA that signed every node's certificate.
    ca: Option<std::path::PathBuf>,
}

/// Runs `redis-cli -p port args...` and returns its output. Panics with what to install if it is missing.
pub fn cli(port: u16, args: &[&str]) -> String {
    cli_with(None, port, args)
}

/// [`cli`] over TLS when `ca` is given.
pub fn cli_with(ca: Option<&std::path::Path>, port: u16, args: &[&str]) -> String {
    let mut cmd = Command::new("redis-cli");
    if let Some(ca) = ca {
        cmd.arg("--tls").arg("--cacert").arg(ca);
    }
    let out = cmd
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli (Debian: redis-tools) is needed for Redis Cluster tests");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl RedisCluster {
    /// Starts `primaries` primaries with `replicas` replicas each; a node missing for `node_timeout` is
    /// failed over. Returns once every slot is served and every replica is in sync.
    pub fn start(primaries: usize, replicas: usize, node_timeout: Duration) -> Self {
        Self::start_inner(primaries, replicas, node_timeout, false)
    }

    /// Like [`RedisCluster::start`], speaking TLS only (clients, the cluster bus and replication), every node
    /// with a certificate for `127.0.0.1` signed by one CA of the test's own ([`RedisCluster::ca_path`]).
    pub fn start_tls(primaries: usize, replicas: usize, node_timeout: Duration) -> Self {
        Self::start_inner(primaries, replicas, node_timeout, true)
    }

    fn start_inner(primaries: usize, replicas: usize, node_timeout: Duration, tls: bool) -> Self {
        let mut nodes: Vec<RedisServer> = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            let bus = crate::free_port().expect("a free port for the cluster bus").to_string();
            let timeout = node_timeout.as_millis().to_string();
            let mut args = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-port",
                &bus,
                "--cluster-node-timeout",
                &timeout,
                "--appendonly",
                "no",
                // Replicas sync at once (the default waits 5 s for more replicas to share a transfer).
                "--repl-diskless-sync-delay",
                "0",
            ];
            if tls {
                args.extend(["--tls-cluster", "yes", "--tls-replication", "yes"]);
            }
            let node = match (tls, nodes.first()) {
                (false, _) => RedisServer::start_with(&args),
                (true, None) => RedisServer::start_tls_with(&args),
                (true, Some(first)) => RedisServer::start_tls_like_with(first, &args),
            };
            nodes.push(node);
        }
        let ca = nodes.first().and_then(|n| n.ca_path()).map(|p| p.to_path_buf());
        let addrs: Vec<String> = nodes.iter().map(|n| n.addr()).collect();
        let mut create = Command::new("redis-cli");
        if let Some(ca) = &ca {
            create.arg("--tls").arg("--cacert").arg(ca);
        }
        let out = create
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("redis-cli (Debian: redis-tools) is needed for Redis Cluster tests");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        let c = RedisCluster { nodes, ca };
        c.wait_ok();
        c
    }

    /// The CA of a TLS cluster.
    pub fn ca_path(&self) -> Option<&std::path::Path> {
        self.ca.as_deref()
    }

    /// `redis-cli` against node `i` (over TLS for a TLS cluster).
    pub fn cli(&self, i: usize, args: &[&str]) -> String {
        cli_with(self.ca.as_deref(), self.nodes[i].port(), args)
    }

    /// `redis+cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let addrs: Vec<String> = self.nodes.iter().map(|n| n.addr()).collect();
        let scheme = if self.ca.is_some() { "rediss" } else { "redis" };
        format!("{scheme}+cluster://{}", addrs.join(","))
    }

    fn live(&self) -> impl Iterator<Item = (usize, &RedisServer)> {
        self.nodes.iter().enumerate().filter(|(_, n)| n.pid().is_some())
    }

    /// Waits (up to 30 s) until every running node sees the cluster as ok, agrees on who serves every slot, and
    /// every running replica is in sync with its primary.
    pub fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self.live().all(|(i, _)| {
                let info = self.cli(i, &["CLUSTER", "INFO"]);
                let repl = self.cli(i, &["INFO", "replication"]);
                info.contains("cluster_state:ok")
                    && (!repl.contains("role:slave") || repl.contains("master_link_status:up"))
            }) && self.views_agree();
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the Redis Cluster did not settle within 30 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn views_agree(&self) -> bool {
        let views: Vec<Vec<Option<u16>>> = self.live().map(|(i, _)| self.slot_owners(i)).collect();
        views.windows(2).all(|w| w[0] == w[1]) && views.first().is_some_and(|v| v.iter().all(Option::is_some))
    }

    /// Who serves each slot, as node `i` sees it (the port of the primary).
    fn slot_owners(&self, i: usize) -> Vec<Option<u16>> {
        let mut owners = vec![None; 16384];
        for line in self.cli(i, &["CLUSTER", "NODES"]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 || !f[2].contains("master") || f[2].contains("fail") {
                continue;
            }
            let Some(port) = f[1].split('@').next().and_then(|a| a.rsplit(':').next()?.parse().ok()) else {
                continue;
            };
            for r in &f[8..] {
                if r.starts_with('[') {
                    continue;
                }
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                    for o in owners.iter_mut().take(b + 1).skip(a) {
                        *o = Some(port);
                    }
                }
            }
        }
        owners
    }

    /// The index of the node that serves `slot` now.
    pub fn owner_of(&self, slot: u16) -> usize {
        let (i, _) = self.live().next().expect("a running node");
        let port = self.slot_owners(i)[slot as usize].expect("a primary serves the slot");
        self.nodes
            .iter()
            .position(|n| n.port() == port)
            .expect("a node of this cluster")
    }

    /// The index of a running replica of node `primary`.
    pub fn replica_of(&self, primary: usize) -> Option<usize> {
        let id = self.node_id(primary);
        self.live()
            .find(|(i, _)| {
                self.cli(*i, &["INFO", "replication"]).contains("role:slave") && {
                    let nodes = self.cli(*i, &["CLUSTER", "NODES"]);
                    nodes.lines().any(|l| l.contains("myself") && l.contains(&id))
                }
            })
            .map(|(i, _)| i)
    }

    /// The cluster id of node `i`.
    pub fn node_id(&self, i: usize) -> String {
        self.cli(i, &["CLUSTER", "MYID"]).trim().to_string()
    }

    /// The slot of `key`, as the cluster computes it.
    pub fn keyslot(&self, key: &str) -> u16 {
        let (i, _) = self.live().next().expect("a running node");
        self.cli(i, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("CLUSTER KEYSLOT answers a number")
    }

    /// Moves `slot` and its keys from its primary to node `to` (a primary): `SETSLOT IMPORTING/MIGRATING`,
    /// `MIGRATE` of every key, then `SETSLOT NODE` on both and the others, as `redis-cli --cluster reshard` does.
    pub fn move_slot(&self, slot: u16, to: usize) {
        let from = self.owner_of(slot);
        let (src, dst) = (self.nodes[from].port(), self.nodes[to].port());
        let (src_id, dst_id) = (self.node_id(from), self.node_id(to));
        let s = slot.to_string();
        cli_with(
            self.ca.as_deref(),
            dst,
            &["CLUSTER", "SETSLOT", &s, "IMPORTING", &src_id],
        );
        cli_with(
            self.ca.as_deref(),
            src,
            &["CLUSTER", "SETSLOT", &s, "MIGRATING", &dst_id],
        );
        loop {
            let keys = cli_with(self.ca.as_deref(), src, &["CLUSTER", "GETKEYSINSLOT", &s, "100"]);
            let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
            if keys.is_empty() {
                break;
            }
            let mut args = vec!["MIGRATE", "127.0.0.1"];
            let dst_port = dst.to_string();
            args.extend([dst_port.as_str(), "", "0", "5000", "KEYS"]);
            args.extend(keys.iter().copied());
            let out = cli_with(self.ca.as_deref(), src, &args);
            assert!(out.contains("OK"), "MIGRATE answered {out}");
        }
        for (_, n) in self.live() {
            cli_with(
                self.ca.as_deref(),
                n.port(),
                &["CLUSTER", "SETSLOT", &s, "NODE", &dst_id],
            );
        }
        self.wait_ok();
    }
}
