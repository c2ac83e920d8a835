//! Harness: a config directory, the real `llm-gateway` binary on a free port, a client.

#![allow(dead_code)]

pub mod in_process;
pub mod manifests;
pub mod otlp;
pub mod priced;
pub mod redis_cluster;
pub mod redis_server;
pub mod scenario;
pub mod scripted_upstream;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use llm_gateway_crds::keys;

/// The pepper every test gateway runs with unless the test sets its own.
pub const TEST_PEPPER: &str = "test-pepper-0123456789";

/// A running gateway process, killed on drop.
pub struct Gateway {
    pub url: String,
    /// The admin listener (`/metrics`, `/health/detailed`, …).
    pub admin_url: String,
    pub dir: tempfile::TempDir,
    pub key: String,
    log: tempfile::NamedTempFile,
    child: Child,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- gateway log ---\n{}", self.log_text());
        }
    }
}

/// Provider + route + key manifests for a gateway in front of `upstream_base_url`.
pub fn manifests(upstream_base_url: &str, key: &str) -> String {
    format!(
        r#"apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: upstream}}
spec:
  type: openaiCompatible
  baseUrl: {upstream_base_url}
  allowLocalAddresses: true
  credentials: {{secretRef: {{name: upstream-credential, key: apiKey}}}}
  timeouts: {{connect: 1s, firstByte: 2s, total: 10s}}
---
apiVersion: v1
kind: Secret
metadata: {{name: upstream-credential}}
stringData: {{apiKey: sk-upstream-secret}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: fake}}
spec: {{type: fake}}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {{name: routes}}
spec:
  routes:
  - model: alias
    targets: [{{provider: upstream, model: upstream-model}}]
  - model: same-name
    targets: [{{provider: upstream}}]
  - model: fake-model
    targets: [{{provider: fake}}]
---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: caller}}
spec: {{secretName: caller-key, owner: team-a, models: [alias, same-name, fake-model]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: caller-key}}
stringData: {{apiKey: {key}}}
"#
    )
}

impl Gateway {
    /// Starts the binary on `config` (written to `gateway.yaml`) and waits until ready.
    /// A port another test took between `free_port` and the bind is picked again.
    pub async fn start(config: &str, key: String, extra_env: &[(&str, &str)]) -> Self {
        for _ in 0..5 {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join("gateway.yaml"), config).expect("write config");
            let config_dir = dir.path().to_str().expect("utf-8 path").to_owned();
            let gateway = Self::spawn(dir, &["--config", &config_dir], key.clone(), extra_env);
            if gateway.ready_or_port_taken().await {
                return gateway;
            }
        }
        panic!("no free pair of ports in 5 attempts");
    }

    /// Starts the binary with `args` (no config directory of its own; `dir` is kept for
    /// the test's files) without waiting for readiness.
    pub fn spawn(
        dir: tempfile::TempDir,
        args: &[&str],
        key: String,
        extra_env: &[(&str, &str)],
    ) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut command = Command::new(env!("CARGO_BIN_EXE_llm-gateway"));
        command
            .args(args)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ADMIN_ADDRESS", format!("127.0.0.1:{admin_port}"))
            .env("LOG_LEVEL", "info")
            // Required with keys outside dev mode; a test may override it.
            .env("API_KEY_PEPPER", TEST_PEPPER)
            .stdout(Stdio::null())
            .stderr(log.reopen().expect("log file"));
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().expect("start llm-gateway");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            dir,
            key,
            log,
            child,
        }
    }

    /// Waits (up to 20 s) until `/ready` answers 200.
    pub async fn wait_ready(&self) {
        assert!(
            self.ready_or_port_taken().await,
            "the gateway could not listen: another process took its port"
        );
    }

    /// Waits (up to 20 s) until this process listens and `/ready` answers 200 (true), or it
    /// could not bind its ports (false). Its own log line proves a ready answer came from it:
    /// on a busy machine another test's gateway can take a port `free_port` returned and
    /// answer `/ready` for it (this once made a test's key look unknown).
    async fn ready_or_port_taken(&self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let log = self.log_text();
            if log.contains("cannot listen") {
                return false;
            }
            if log.contains("llm-gateway listening")
                && let Ok(r) = reqwest::get(format!("{}/ready", self.url)).await
                && r.status().is_success()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("gateway did not become ready");
    }

    /// Sends a chat request with the harness key.
    pub async fn chat(&self, body: serde_json::Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// `GET /v1/usage` with the harness key.
    pub async fn usage(&self) -> serde_json::Value {
        reqwest::Client::new()
            .get(format!("{}/v1/usage", self.url))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("usage")
            .json()
            .await
            .expect("usage JSON")
    }

    /// Sends a JSON request to the API `path` with the harness key.
    pub async fn post(&self, path: &str, body: serde_json::Value) -> reqwest::Response {
        reqwest::Client::new()
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .expect("request")
    }

    /// The admin listener's `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        reqwest::get(format!("{}/metrics", self.admin_url))
            .await
            .expect("metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The `/metrics` text once `ready` holds for it (counters bumped after a request
    /// settles can trail `/v1/usage` by a moment); panics after 10 s.
    pub async fn metrics_when(&self, ready: impl Fn(&str) -> bool) -> String {
        text_when("metrics", || self.metrics_text(), ready).await
    }

    /// The admin listener's `/health/detailed` report.
    pub async fn detailed(&self) -> serde_json::Value {
        reqwest::get(format!("{}/health/detailed", self.admin_url))
            .await
            .expect("request")
            .json()
            .await
            .expect("JSON")
    }

    /// Writes a file into the config directory.
    pub fn write_config(&self, name: &str, text: &str) {
        let tmp = self.dir.path().join(format!(".{name}.tmp"));
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, self.dir.path().join(name)).expect("rename");
    }

    /// Everything the gateway wrote to stderr so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// The log once `ready` holds for it (lines are written by a background thread, after
    /// the response); panics after 10 s.
    pub async fn log_when(&self, ready: impl Fn(&str) -> bool) -> String {
        text_when("the log", || std::future::ready(self.log_text()), ready).await
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Blocks until the process exits; call from `spawn_blocking`.
    #[allow(clippy::disallowed_methods, reason = "runs on a blocking thread")]
    pub fn wait_exit(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

/// What `fetch` gives once `ready` holds for it, fetched every 20 ms; panics after 10 s.
async fn text_when<F: std::future::Future<Output = String>>(
    what: &str,
    fetch: impl Fn() -> F,
    ready: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = fetch().await;
        if ready(&text) {
            return text;
        }
        assert!(Instant::now() < deadline, "{what} never got there:\n{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An HS256 token of `claims` signed with `secret`.
pub fn hs256(claims: &serde_json::Value, secret: &[u8]) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
    llm_gateway::jwt::install_crypto_provider();
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("sign")
}

/// A fresh valid key.
pub fn new_key() -> String {
    keys::generate().expect("randomness")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Reads `/metrics` and returns the value of the first line starting with `prefix`.
pub async fn metric(url: &str, prefix: &str) -> Option<f64> {
    let text = reqwest::get(format!("{url}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))?
        .rsplit(' ')
        .next()?
        .parse()
        .ok()
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// Background clients sending one request body in a loop (bounded) until stopped, counting
/// successes, failures and the config generations that served them.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(u64, u64, std::collections::BTreeSet<u64>)>>,
}

/// What a [`Load`] saw.
#[derive(Debug)]
pub struct LoadReport {
    pub ok: u64,
    pub failed: u64,
    pub generations: std::collections::BTreeSet<u64>,
}

impl Load {
    /// Starts `clients` loops of at most `limit` requests each.
    pub fn start(
        gateway: &std::sync::Arc<Gateway>,
        clients: usize,
        limit: usize,
        body: serde_json::Value,
    ) -> Self {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tasks = (0..clients)
            .map(|_| {
                let (gateway, stop, body) = (gateway.clone(), stop.clone(), body.clone());
                tokio::spawn(async move {
                    let (mut ok, mut failed, mut generations) =
                        (0, 0, std::collections::BTreeSet::new());
                    for _ in 0..limit {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let response = gateway.chat(body.clone()).await;
                        let generation = response.headers()["x-llm-gateway-generation"]
                            .to_str()
                            .expect("ascii");
                        generations.insert(generation.parse().expect("a number"));
                        if response.status() == 200 {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    (ok, failed, generations)
                })
            })
            .collect();
        Self { stop, tasks }
    }

    /// Stops the clients and adds up what they saw.
    pub async fn finish(self) -> LoadReport {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut report = LoadReport {
            ok: 0,
            failed: 0,
            generations: std::collections::BTreeSet::new(),
        };
        for task in self.tasks {
            let (ok, failed, generations) = task.await.expect("load task");
            report.ok += ok;
            report.failed += failed;
            report.generations.extend(generations);
        }
        report
    }
}
