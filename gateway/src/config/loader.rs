//! `Loader`: read → compile → build snapshot → swap, or reject and keep the previous one.
//!
//! Every rejection is reported three ways: a log line naming each object and field, a
//! `llm_config_reloads_total{result="error"}` increment, and the errors in `/health/detailed`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use llm_gateway_crds::compile::{CompileInputs, compile};
use llm_gateway_crds::compiled::{CompiledJwt, CompiledProvider};
use llm_gateway_crds::manifest::Manifests;

use super::{Snapshot, SnapshotHandle, source_dir};
use crate::metrics::{Metrics, ResultLabels};
use crate::notices::Notice;
use crate::targets::TargetRegistry;

/// Result of one reload attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files did not change since the last successful load.
    Unchanged,
    /// A new snapshot of this generation is being served.
    Applied(u64),
    /// The configuration was rejected; the previous snapshot keeps serving.
    Rejected(Vec<String>),
}

/// Loads a config directory into the shared snapshot handle.
#[derive(Debug)]
pub struct Loader {
    dir: PathBuf,
    key_pepper: Vec<u8>,
    handle: Arc<SnapshotHandle>,
    metrics: Arc<Metrics>,
    targets: Arc<TargetRegistry>,
    default_jwt: Option<CompiledJwt>,
    state: Mutex<LoaderState>,
}

#[derive(Debug, Default)]
struct LoaderState {
    fingerprint: Option<u64>,
    generation: u64,
    /// Clients by connect timeout, reused across reloads so connection pools survive them.
    clients: HashMap<Duration, reqwest::Client>,
}

impl Loader {
    /// A loader for `dir` feeding `handle`.
    pub fn new(
        dir: PathBuf,
        key_pepper: Vec<u8>,
        handle: Arc<SnapshotHandle>,
        metrics: Arc<Metrics>,
        targets: Arc<TargetRegistry>,
    ) -> Self {
        handle.update_status(|s| s.source = format!("directory:{}", dir.display()));
        Self {
            dir,
            key_pepper,
            handle,
            metrics,
            targets,
            default_jwt: None,
            state: Mutex::default(),
        }
    }

    /// Where rejections (and, through the target registry, breaker transitions) are reported.
    pub fn notices(&self) -> &crate::notices::NoticeSink {
        &self.targets.notices
    }

    /// JWT settings used when the configuration has none (standalone flags and environment).
    pub fn with_default_jwt(mut self, jwt: Option<CompiledJwt>) -> Self {
        self.default_jwt = jwt;
        self
    }

    /// Reloads now (blocking IO; call from a blocking context).
    pub fn reload(&self) -> ReloadOutcome {
        let Ok(mut state) = self.state.lock() else {
            return ReloadOutcome::Rejected(vec!["loader state poisoned".to_owned()]);
        };
        let started = std::time::Instant::now();
        let outcome = self.reload_locked(&mut state);
        self.record(&outcome, started.elapsed());
        outcome
    }

    fn reload_locked(&self, state: &mut LoaderState) -> ReloadOutcome {
        let contents = match source_dir::read(&self.dir) {
            Ok(contents) => contents,
            Err(errors) => return ReloadOutcome::Rejected(errors),
        };
        self.apply_locked(state, &contents.manifests, contents.fingerprint)
    }

    /// Compiles and serves `manifests` from another source (the Kubernetes watch), unless
    /// `fingerprint` says nothing changed since the last success.
    pub fn apply(&self, manifests: &Manifests, fingerprint: u64) -> ReloadOutcome {
        let Ok(mut state) = self.state.lock() else {
            return ReloadOutcome::Rejected(vec!["loader state poisoned".to_owned()]);
        };
        let started = std::time::Instant::now();
        let outcome = self.apply_locked(&mut state, manifests, fingerprint);
        self.record(&outcome, started.elapsed());
        outcome
    }

    fn apply_locked(
        &self,
        state: &mut LoaderState,
        manifests: &Manifests,
        fingerprint: u64,
    ) -> ReloadOutcome {
        if state.fingerprint == Some(fingerprint) {
            return ReloadOutcome::Unchanged;
        }
        let env = |name: &str| std::env::var(name).ok();
        let inputs = CompileInputs {
            env: &env,
            key_pepper: &self.key_pepper,
            admitted: false,
        };
        let mut config = match compile(manifests, &inputs) {
            Ok(config) => config,
            Err(errors) => {
                for error in &errors {
                    self.targets.notices.send(Notice::Rejected {
                        kind: error.kind.to_owned(),
                        object: error.object.clone(),
                        message: format!("{}: {}", error.field, error.message),
                    });
                }
                return ReloadOutcome::Rejected(errors.iter().map(ToString::to_string).collect());
            }
        };
        if config.auth.jwt.is_none() {
            config.auth.jwt.clone_from(&self.default_jwt);
        }
        let generation = state.generation + 1;
        let clients = &mut state.clients;
        let snapshot = Snapshot::new(config, generation, &self.targets, &mut |p| {
            client_for(clients, p)
        });
        self.handle.store(snapshot);
        self.targets.prune();
        state.generation = generation;
        state.fingerprint = Some(fingerprint);
        ReloadOutcome::Applied(generation)
    }

    fn record(&self, outcome: &ReloadOutcome, took: Duration) {
        let took_ms = took.as_secs_f64() * 1000.0;
        let now = SystemTime::now();
        match outcome {
            ReloadOutcome::Unchanged => {}
            ReloadOutcome::Applied(generation) => {
                tracing::info!(generation, took_ms, source = %self.handle.status().source, "configuration applied");
                self.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "success" })
                    .inc();
                self.metrics
                    .config_generation
                    .set(i64::try_from(*generation).unwrap_or(i64::MAX));
                self.handle.update_status(|s| {
                    s.last_attempt = Some(now);
                    s.last_errors.clear();
                    s.successes += 1;
                });
            }
            ReloadOutcome::Rejected(errors) => {
                for error in errors {
                    tracing::error!(error = %error, took_ms, "configuration rejected; previous configuration keeps serving");
                }
                self.metrics
                    .config_reloads
                    .get_or_create(&ResultLabels { result: "error" })
                    .inc();
                self.handle.update_status(|s| {
                    s.last_attempt = Some(now);
                    s.last_errors.clone_from(errors);
                    s.failures += 1;
                });
            }
        }
    }
}

fn client_for(
    clients: &mut HashMap<Duration, reqwest::Client>,
    provider: &CompiledProvider,
) -> reqwest::Client {
    let connect = provider.timeouts.connect.get();
    clients
        .entry(connect)
        .or_insert_with(|| {
            reqwest::Client::builder()
                .connect_timeout(connect)
                .pool_idle_timeout(Duration::from_secs(90))
                .tcp_nodelay(true)
                // An upstream's redirect is its answer, passed to the client as is; following
                // it would send the provider credential wherever the upstream points.
                .redirect(reqwest::redirect::Policy::none())
                .build()
                // Only fails when the TLS backend cannot initialise; fall back to defaults.
                .unwrap_or_default()
        })
        .clone()
}
