//! A real `redis-server` on a free loopback port, killed on drop. Missing `redis-server` is a
//! test failure, never a skip (the README's test command installs it).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running (or deliberately stopped) Redis.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.cont();
        self.kill();
    }
}

impl RedisServer {
    /// Starts an empty Redis without persistence and waits until it answers.
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut server = Self { port, child: None };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed (tests/run-all.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.query(&["PING"]).await.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL); its data is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a fresh, empty server on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }

    /// Freezes the server (SIGSTOP): connections stay open but nothing answers.
    pub fn stop(&self) {
        self.signal("-STOP");
    }

    /// Resumes a frozen server.
    pub fn cont(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Runs one command; `None` when Redis does not answer within a second.
    pub async fn query(&self, args: &[&str]) -> Option<redis::Value> {
        let client = redis::Client::open(self.url()).ok()?;
        let attempt = async {
            let mut connection = client.get_multiplexed_async_connection().await.ok()?;
            let mut command = redis::cmd(args[0]);
            for arg in &args[1..] {
                command.arg(*arg);
            }
            command
                .query_async::<redis::Value>(&mut connection)
                .await
                .ok()
        };
        tokio::time::timeout(Duration::from_secs(1), attempt)
            .await
            .ok()
            .flatten()
    }

    /// One integer field of a hash (0 when absent).
    pub async fn hash_field(&self, key: &str, field: &str) -> i64 {
        match self.query(&["HGET", key, field]).await {
            Some(redis::Value::BulkString(bytes)) => {
                String::from_utf8_lossy(&bytes).parse().unwrap_or(0)
            }
            _ => 0,
        }
    }
}
