//! A real Redis Cluster on loopback: three masters and a replica each (six `redis-server`
//! processes with `--cluster-enabled yes`, joined by `redis-cli --cluster create`), killed on
//! drop. Missing `redis-server` is a test failure, never a skip.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running cluster.
pub struct RedisCluster {
    ports: Vec<u16>,
    children: Vec<Child>,
    _dir: tempfile::TempDir,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Polls `check` every 50 ms until it holds or `limit` passes.
async fn wait_until(limit: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "redis cluster: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl RedisCluster {
    /// Starts six nodes, makes them a cluster of three masters with a replica each, and waits
    /// until every node sees every slot served and every replica in sync.
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // Cluster bus ports are the data port + 10000: keep both free and below 65536.
        let ports: Vec<u16> = std::iter::repeat_with(free_port)
            .filter(|p| *p < 55_000)
            .take(6)
            .collect();
        let children = ports
            .iter()
            .map(|port| {
                let conf = dir.path().join(format!("nodes-{port}.conf"));
                Command::new("redis-server")
                    .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                    .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                    .arg("--cluster-config-file")
                    .arg(&conf)
                    .arg("--dir")
                    .arg(dir.path())
                    .args(["--save", "", "--appendonly", "no"])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("redis-server must be installed (tests/run-all.sh installs it)")
            })
            .collect();
        let cluster = Self {
            ports,
            children,
            _dir: dir,
        };
        for &port in &cluster.ports {
            wait_until(
                Duration::from_secs(10),
                "a node never answered",
                async || cli(port, &["PING"]).is_some_and(|r| r.trim() == "PONG"),
            )
            .await;
        }
        let nodes: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let created = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&nodes)
            .args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli");
        assert!(created.success(), "redis-cli --cluster create failed");
        cluster.wait_healthy().await;
        cluster
    }

    /// Waits until every node reports the cluster ok and every replica is in sync.
    pub async fn wait_healthy(&self) {
        for &port in &self.ports {
            wait_until(Duration::from_secs(30), "never became ok", async || {
                cli(port, &["CLUSTER", "INFO"]).is_some_and(|i| i.contains("cluster_state:ok"))
            })
            .await;
            wait_until(
                Duration::from_secs(30),
                "a replica never synced",
                async || {
                    cli(port, &["INFO", "replication"]).is_some_and(|i| {
                        i.contains("role:master") || i.contains("master_link_status:up")
                    })
                },
            )
            .await;
        }
    }

    /// The seed nodes as `REDIS_URL` takes them (comma-separated).
    pub fn url(&self) -> String {
        let nodes: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect();
        nodes.join(",")
    }

    /// The ports of the master serving `key`'s slot and of its replica.
    pub fn master_and_replica_of(&self, key: &str) -> (u16, u16) {
        let slot: u16 = cli(self.ports[0], &["CLUSTER", "KEYSLOT", key])
            .and_then(|s| s.trim().parse().ok())
            .expect("CLUSTER KEYSLOT");
        let nodes = cli(self.ports[0], &["CLUSTER", "NODES"]).expect("CLUSTER NODES");
        let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
        let port_of = |fields: &[&str]| -> u16 {
            let address = fields[1].split('@').next().unwrap_or_default();
            address
                .rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or(0)
        };
        let master = lines
            .iter()
            .find(|f| f[2].contains("master") && serves(&f[8..], slot))
            .expect("a master serves every slot");
        let replica = lines
            .iter()
            .find(|f| f[3] == master[0] && !f[2].contains("fail"))
            .expect("the master has a replica");
        (port_of(master), port_of(replica))
    }

    /// Promotes the replica of `key`'s master (a manual `CLUSTER FAILOVER`, the way a managed
    /// Redis fails over for maintenance: the replica catches up, then takes the slots) and
    /// waits until the cluster serves again with the old master as its replica.
    pub async fn fail_over(&self, key: &str) -> (u16, u16) {
        let (master, replica) = self.master_and_replica_of(key);
        let answer = cli(replica, &["CLUSTER", "FAILOVER"]).unwrap_or_default();
        assert_eq!(answer.trim(), "OK", "CLUSTER FAILOVER: {answer}");
        wait_until(
            Duration::from_secs(30),
            "the replica never took over",
            async || cli(replica, &["ROLE"]).is_some_and(|r| r.starts_with("master")),
        )
        .await;
        self.wait_healthy().await;
        (master, replica)
    }

    /// Sets fields of a hash on whichever master serves it.
    pub fn hset(&self, key: &str, fields: &[(&str, &str)]) {
        let (master, _) = self.master_and_replica_of(key);
        let mut args = vec!["HSET", key];
        for (field, value) in fields {
            args.extend([*field, *value]);
        }
        assert!(cli(master, &args).is_some(), "HSET {key}");
    }

    /// One integer field of a hash, read from whichever master serves it (0 when absent).
    pub fn hash_field(&self, key: &str, field: &str) -> i64 {
        let (master, _) = self.master_and_replica_of(key);
        cli(master, &["HGET", key, field])
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// `true` when the slot ranges of a `CLUSTER NODES` line include `slot`.
fn serves(ranges: &[&str], slot: u16) -> bool {
    ranges.iter().any(|range| {
        let mut ends = range.split('-').map(|n| n.parse::<u16>());
        match (ends.next(), ends.next()) {
            (Some(Ok(first)), Some(Ok(last))) => (first..=last).contains(&slot),
            (Some(Ok(only)), None) => only == slot,
            _ => false,
        }
    })
}

/// One `redis-cli` command against the node on `port`; its output, or `None` on failure.
fn cli(port: u16, args: &[&str]) -> Option<String> {
    let output = Command::new("redis-cli")
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}
