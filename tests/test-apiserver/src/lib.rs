//! An in-memory Kubernetes API server for tests: real HTTP on a loopback port,
//! so kube-rs, kubectl and the Python client talk to it as to a cluster.
//!
//! What it reproduces and what it does not is listed in this crate's README. Use it in
//! process ([`TestApiServer::start`]) or as the `test-apiserver` binary.

pub mod admission;
pub mod aggregated;
pub mod collection;
pub mod deletion;
pub mod discovery;
pub mod duplicates;
pub mod faults;
pub mod fieldpath;
pub mod handler;
pub mod issuer;
pub mod objects;
pub mod openapi;
pub mod path;
pub mod quantity;
pub mod quantity_fields;
pub mod request;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod ssa;
pub mod status;
pub mod store;
pub mod table;
pub mod typed;
pub mod unknown;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use resources::ResourceType;
use store::Store;

/// One request as the server saw it, for assertions.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// Raw query string.
    pub query: String,
    /// Status answered (200 for a watch, whatever it later streamed).
    pub status: u16,
    /// Who asked: the bearer token (see [`TestApiServer::kubeconfig_as`]), or `anonymous`.
    pub user: String,
}

/// Signals to every open watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WatchControl {
    /// Close the stream (a dropped TCP connection, as the client sees it).
    Drop,
    /// Send an in-stream `ERROR` 410 Expired and close.
    Expire,
}

/// State shared by the handlers.
#[derive(Debug)]
pub struct Shared {
    /// Objects and history.
    pub store: Store,
    types: RwLock<Arc<Vec<ResourceType>>>,
    requests: Mutex<Vec<RequestRecord>>,
    watch_control: broadcast::Sender<WatchControl>,
    down: AtomicBool,
    bookmark_every: Mutex<Duration>,
    gc_delay: Mutex<Duration>,
    collector_wake: Arc<tokio::sync::Notify>,
    /// Installed fault rules.
    pub faults: faults::Faults,
    /// The service-account token issuer.
    pub issuer: issuer::Issuer,
}

impl Shared {
    fn new() -> Self {
        Self {
            store: Store::default(),
            types: RwLock::new(Arc::new(resources::builtins())),
            requests: Mutex::default(),
            watch_control: broadcast::channel(16).0,
            down: AtomicBool::new(false),
            bookmark_every: Mutex::new(Duration::from_secs(60)),
            gc_delay: Mutex::new(deletion::DEFAULT_GC_DELAY),
            collector_wake: Arc::default(),
            faults: faults::Faults::default(),
            issuer: issuer::Issuer::new(issuer::DEFAULT_ISSUER),
        }
    }

    /// The served types.
    pub fn types(&self) -> Arc<Vec<ResourceType>> {
        self.types
            .read()
            .map(|t| Arc::clone(&t))
            .unwrap_or_default()
    }

    /// Serves the kind a created CRD declares.
    pub fn register_crd(&self, crd: &Value) {
        let Some(rtype) = ResourceType::from_crd(crd) else {
            return;
        };
        if let Ok(mut types) = self.types.write() {
            let types = Arc::make_mut(&mut types);
            types.retain(|t| t.id() != rtype.id());
            types.push(rtype);
        }
    }

    fn gc_delay(&self) -> Duration {
        self.gc_delay.lock().map(|d| *d).unwrap_or_default()
    }

    fn wake_collector(&self) {
        self.collector_wake.notify_one();
    }

    fn bookmark_interval(&self) -> Duration {
        self.bookmark_every
            .lock()
            .map(|d| *d)
            .unwrap_or(Duration::from_secs(60))
    }

    fn record(&self, record: RequestRecord) {
        if let Ok(mut requests) = self.requests.lock() {
            requests.push(record);
        }
    }

    fn is_down(&self) -> bool {
        self.down.load(Ordering::SeqCst)
    }

    /// Closes every open watch.
    pub fn drop_watches(&self) {
        let _ = self.watch_control.send(WatchControl::Drop);
    }

    /// Ends every open watch with an in-stream 410 and forgets the history.
    pub fn expire_watches(&self) {
        self.store.compact();
        let _ = self.watch_control.send(WatchControl::Expire);
    }

    /// Resets every connection for `duration` (the binary's partition; in process,
    /// [`TestApiServer::go_down`] also refuses new connections).
    pub fn partition(self: &Arc<Self>, duration: Duration) {
        self.down.store(true, Ordering::SeqCst);
        self.drop_watches();
        let shared = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            shared.down.store(false, Ordering::SeqCst);
        });
    }
}

/// A running test API server.
#[derive(Debug)]
pub struct TestApiServer {
    shared: Arc<Shared>,
    address: SocketAddr,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for TestApiServer {
    fn drop(&mut self) {
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }
}

impl TestApiServer {
    /// Starts on a free loopback port with the `default` and `kube-system` namespaces.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(0).await
    }

    /// Starts on `port` of 127.0.0.1 (0 picks a free one).
    pub async fn start_on(port: u16) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::new());
        for namespace in ["default", "kube-system"] {
            let target = path::resolve("/api/v1/namespaces", &shared.types())
                .map_err(|e| std::io::Error::other(e.message))?;
            let namespace = json!({"metadata": {"name": namespace}});
            let mut request = request::WriteRequest::new("test-apiserver", request::Verb::Create);
            let _ = objects::create(&shared, &target, namespace, &mut request);
        }
        deletion::spawn_collector(shared.clone());
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        let address = listener.local_addr()?;
        let server = Self {
            task: Mutex::new(Some(serve(listener, shared.clone()))),
            shared,
            address,
        };
        Ok(server)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// A kubeconfig (YAML) pointing at this server over plain HTTP, namespace `default`.
    pub fn kubeconfig(&self) -> String {
        self.kubeconfig_as("test-token")
    }

    /// A kubeconfig whose requests are recorded as made by `user` (its bearer token: the
    /// server authenticates nobody, but tests can tell clients apart, e.g. to check that a
    /// component stays within the Role it is given).
    pub fn kubeconfig_as(&self, user: &str) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster: {{server: \"{}\"}}\ncontexts:\n- name: test\n  context: {{cluster: test, user: test, namespace: default}}\ncurrent-context: test\nusers:\n- name: test\n  user: {{token: \"{user}\"}}\n",
            self.url()
        )
    }

    /// Creates the CustomResourceDefinition of every `*.yaml` file in `dir` (test setup, without
    /// a client: the kinds are served at once, as after `kubectl apply -f dir`).
    pub fn create_crds_from(&self, dir: &std::path::Path) -> Result<(), String> {
        let target = path::resolve(
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            &self.shared.types(),
        )
        .map_err(|e| e.message)?;
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for file in files {
            let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
            let crd: Value = serde_yaml::from_str(&text).map_err(|e| e.to_string())?;
            let mut request = request::WriteRequest::new("test-setup", request::Verb::Create);
            objects::create(&self.shared, &target, crd, &mut request)
                .map_err(|e| format!("{}: {}", file.display(), e.message))?;
        }
        Ok(())
    }

    /// The shared state, for direct inspection.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Closes every open watch, as a dropped connection would.
    pub fn drop_watches(&self) {
        self.shared.drop_watches();
    }

    /// Ends every open watch with an in-stream 410 and forgets the history, so resuming
    /// from an old resourceVersion needs a fresh list.
    pub fn expire_watches(&self) {
        self.shared.expire_watches();
    }

    /// Installs a fault rule.
    pub fn add_fault(&self, rule: faults::FaultRule) {
        self.shared.faults.add(rule);
    }

    /// Removes every fault rule.
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Sends bookmarks on watches that allow them at this interval (60 s by default).
    pub fn set_bookmark_interval(&self, every: Duration) {
        if let Ok(mut d) = self.shared.bookmark_every.lock() {
            *d = every;
        }
    }

    /// Delays garbage collection (dependents of deleted owners, terminating namespaces) by
    /// this much after each write, so "eventually" is exercised (0 by default).
    pub fn set_gc_delay(&self, delay: Duration) {
        if let Ok(mut d) = self.shared.gc_delay.lock() {
            *d = delay;
        }
    }

    /// Takes the server down: the port refuses connections, open connections are reset and
    /// watches end. History is kept.
    pub fn go_down(&self) {
        self.shared.down.store(true, Ordering::SeqCst);
        self.drop_watches();
        if let Ok(mut task) = self.task.lock()
            && let Some(task) = task.take()
        {
            task.abort();
        }
    }

    /// Brings the server back on the same port.
    pub async fn come_back(&self) -> std::io::Result<()> {
        let listener = TcpListener::bind(self.address).await?;
        self.shared.down.store(false, Ordering::SeqCst);
        if let Ok(mut task) = self.task.lock() {
            *task = Some(serve(listener, self.shared.clone()));
        }
        Ok(())
    }
}

fn serve(listener: TcpListener, shared: Arc<Shared>) -> JoinHandle<()> {
    let app = axum::Router::new()
        .fallback(handler::handle)
        .with_state(shared);
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    })
}
