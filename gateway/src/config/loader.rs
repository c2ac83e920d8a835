//! `Loader`: read → compile → build snapshot → swap, or reject and keep the previous one.
//!
//! Every rejection is reported three ways: a log line naming each object and field, a
//! `llm_config_reloads_total{result="error"}` increment, and the errors in `/health/detailed`.
//! None of them quotes configuration content (`crds::manifest` describes errors without
//! values), and they last only while they are true: a reload that finds the served
//! configuration current again (applied, or unchanged since it was applied) clears them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use llm_gateway_crds::compile::{CompileInputs, ConfigError, RuleCache, compile};
use llm_gateway_crds::compiled::{CompiledJwt, CompiledProvider};
use llm_gateway_crds::manifest::{DocumentCache, Manifests};

use super::{Snapshot, SnapshotHandle, source_dir};
use crate::metrics::{Metrics, ResultLabels};
use crate::notices::Notice;
use crate::targets::TargetRegistry;
use crate::upstream_http::{Transport, TransportSettings};

#[cfg(test)]
#[path = "loader_tests.rs"]
mod tests;

/// Result of one reload attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// The files did not change since the last successful load (so any error reported since
    /// is stale: what is served is what the source holds).
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
    limits: source_dir::DirLimits,
    /// `--dev`: published keys and an empty pepper are served (see `key_policy`).
    dev: bool,
    transport: TransportSettings,
    /// ServiceAccount token keys, kept across reloads.
    issuers: crate::service_accounts::IssuerRegistry,
    /// JWT keys from a JWKS URL, kept across reloads.
    jwks: crate::jwt::JwksRegistry,
    state: Mutex<LoaderState>,
}

#[derive(Debug, Default)]
struct LoaderState {
    fingerprint: Option<u64>,
    generation: u64,
    /// Transports by connect timeout and address policy, reused across reloads so connection
    /// pools survive them.
    transports: HashMap<(Duration, bool), Transport>,
    /// The documents of the last read, reused where their text is unchanged.
    documents: DocumentCache,
    /// The CEL rule results of the object versions of the last apply (Kubernetes mode).
    rules: RuleCache,
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
            limits: source_dir::DirLimits::default(),
            dev: false,
            transport: TransportSettings::default(),
            issuers: Default::default(),
            jwks: Default::default(),
            state: Mutex::default(),
        }
    }

    /// Where ServiceAccount token keys come from (the Kubernetes client is set here).
    pub fn issuers(&self) -> &crate::service_accounts::IssuerRegistry {
        &self.issuers
    }

    /// Upstream connection settings (`UPSTREAM_POOL_MAX_IDLE_PER_HOST`, `UPSTREAM_HTTP2`).
    pub fn with_transport(mut self, settings: TransportSettings) -> Self {
        self.transport = settings;
        self
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

    /// Dev mode: skips the key policy (published keys, empty pepper).
    pub fn with_dev_mode(mut self, dev: bool) -> Self {
        self.dev = dev;
        self
    }

    /// Caps on what a directory reload reads (per file, in total, documents).
    pub fn with_dir_limits(mut self, limits: source_dir::DirLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Reloads now (blocking IO, and short sleeps while a file is being written; call from a
    /// blocking context).
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
        let documents = &mut state.documents;
        let contents = match source_dir::read_settled(&self.dir, &self.limits, documents) {
            Ok(contents) => contents,
            Err(errors) => return ReloadOutcome::Rejected(errors),
        };
        // The CEL rules were checked when each document was first parsed.
        let rules = state.documents.take_rule_errors();
        self.apply_locked(
            state,
            &contents.manifests,
            contents.fingerprint,
            Some(rules),
        )
    }

    /// Compiles and serves `manifests` from another source (the Kubernetes watch), unless
    /// `fingerprint` says nothing changed since the last success.
    pub fn apply(&self, manifests: &Manifests, fingerprint: u64) -> ReloadOutcome {
        let Ok(mut state) = self.state.lock() else {
            return ReloadOutcome::Rejected(vec!["loader state poisoned".to_owned()]);
        };
        let started = std::time::Instant::now();
        // The CEL rules of object versions seen before are not checked again.
        let rules =
            (state.fingerprint != Some(fingerprint)).then(|| state.rules.rule_errors(manifests));
        let outcome = self.apply_locked(&mut state, manifests, fingerprint, rules);
        self.record(&outcome, started.elapsed());
        outcome
    }

    fn apply_locked(
        &self,
        state: &mut LoaderState,
        manifests: &Manifests,
        fingerprint: u64,
        checked_rules: Option<Vec<ConfigError>>,
    ) -> ReloadOutcome {
        if state.fingerprint == Some(fingerprint) {
            return ReloadOutcome::Unchanged;
        }
        let env = |name: &str| std::env::var(name).ok();
        let inputs = CompileInputs {
            env: &env,
            key_pepper: &self.key_pepper,
            admitted: checked_rules.is_some(),
        };
        let compiled = match (checked_rules, compile(manifests, &inputs)) {
            (None, compiled) => compiled,
            (Some(rules), Ok(config)) if rules.is_empty() => Ok(config),
            (Some(rules), Ok(_)) => Err(rules),
            (Some(mut rules), Err(errors)) => {
                rules.extend(errors);
                Err(rules)
            }
        };
        let mut config = match compiled {
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
        let transports = &mut state.transports;
        let settings = self.transport;
        let service_accounts = config.auth.service_accounts.as_ref();
        let service_accounts = service_accounts.map(|s| self.issuers.verifier(s));
        let jwt = config.auth.jwt.as_ref().map(|j| self.jwks.verifier(j));
        if service_accounts.is_none() {
            self.issuers.forget();
        }
        if jwt.is_none() {
            self.jwks.forget();
        }
        let mut snapshot = Snapshot::new(config, generation, &self.targets, &mut |p| {
            transport_for(transports, p, settings)
        });
        snapshot.service_accounts = service_accounts;
        snapshot.jwt = jwt;
        if !self.dev
            && let Some(refusal) = super::key_policy::refusal(&snapshot, &self.key_pepper)
        {
            tracing::error!("{refusal}");
            return ReloadOutcome::Rejected(vec![refusal]);
        }
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
            ReloadOutcome::Unchanged => {
                // The source is back to what is served (a rejected edit was reverted): the
                // errors of the attempts in between no longer describe anything.
                let mut cleared = false;
                self.handle.update_status(|s| {
                    s.last_attempt = Some(now);
                    cleared = !s.last_errors.is_empty();
                    s.last_errors.clear();
                });
                if cleared {
                    tracing::info!(
                        "the source matches the served configuration again; earlier errors cleared"
                    );
                }
            }
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

fn transport_for(
    transports: &mut HashMap<(Duration, bool), Transport>,
    provider: &CompiledProvider,
    settings: TransportSettings,
) -> Transport {
    let (connect, allow_local) = (
        provider.timeouts.connect.get(),
        provider.allow_local_addresses,
    );
    transports
        .entry((connect, allow_local))
        .or_insert_with(|| Transport::new(connect, allow_local, settings))
        .clone()
}
