//! Running the gateway: initial load, directory watch, listener, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::args::ServeArgs;
use crate::config::SnapshotHandle;
use crate::config::loader::{Loader, ReloadOutcome};
use crate::config::{source_dir, source_kube};
use crate::listener::WriteTimeoutListener;
use crate::metrics::Metrics;
use crate::state::{AppState, RequestSettings};
use crate::targets::TargetRegistry;

/// The configuration loader `serve` starts its source with, from the arguments (public so an
/// in-process test builds exactly what the binary builds).
pub fn loader(
    args: &ServeArgs,
    snapshots: &Arc<SnapshotHandle>,
    metrics: &Arc<Metrics>,
    targets: &Arc<TargetRegistry>,
) -> anyhow::Result<Loader> {
    let source_dir_path = args
        .config
        .clone()
        .or_else(|| args.last_known_good.clone())
        .unwrap_or_default();
    Ok(Loader::new(
        source_dir_path,
        args.api_key_pepper.as_bytes().to_vec(),
        snapshots.clone(),
        metrics.clone(),
        targets.clone(),
    )
    .with_default_jwt(args.jwt().map_err(anyhow::Error::msg)?)
    .with_dir_limits(args.config_limits())
    .with_transport(args.transport())
    .with_dev_mode(args.dev))
}

/// What every handler shares, from the arguments: request settings and the limiter around
/// the snapshots a loader fills (public for the same reason as [`loader`]).
pub fn app_state(
    args: &ServeArgs,
    snapshots: Arc<SnapshotHandle>,
    metrics: Arc<Metrics>,
    targets: Arc<TargetRegistry>,
) -> anyhow::Result<AppState> {
    let settings = RequestSettings {
        max_body_bytes: args.max_request_body_bytes,
        key_pepper: args.api_key_pepper.as_bytes().into(),
        retry_enabled: args.retry_enabled,
        breakers_enabled: args.circuit_breaker_enabled,
        upstream_limits: args.upstream_limits(),
        auth_failures_per_minute: args.auth_failures_per_minute,
        body_read_timeout: *args.body_read_timeout,
        cors: args.cors().layer().map_err(anyhow::Error::msg)?,
    };
    let responses = crate::response_store::ResponseStore::new(&args.response_store())
        .map_err(|e| anyhow::anyhow!("invalid REDIS_URL: {e}"))?;
    let limiter =
        crate::limits::Limiter::new(args.limiter().map_err(anyhow::Error::msg)?, metrics.clone())
            .context("invalid REDIS_URL")?;
    // A tracing setup that cannot work leaves traces off rather than the gateway down.
    match crate::traces::init_from_env(metrics.trace_spans.clone()) {
        Ok(true) => tracing::info!("traces are exported over OTLP"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "traces are off"),
    }
    let usage_events =
        crate::usage_events::Sink::start(&args.usage_events, metrics.usage_events.clone())
            .context("cannot write usage events to USAGE_EVENTS_PATH")?;
    Ok(AppState::new(
        snapshots,
        metrics,
        targets,
        settings,
        Arc::new(limiter),
        Arc::new(responses),
    )
    .with_usage_events(usage_events))
}

/// Serves until SIGTERM/SIGINT, then drains: readiness off at once, listener closed after
/// `shutdown_delay`, in-flight requests and streams given `drain_timeout` to finish.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if args.dev {
        tracing::warn!(
            "DEV MODE: the repository's example key is accepted and API_KEY_PEPPER may be empty; never expose this gateway"
        );
    }
    let metrics = Arc::new(Metrics::new());
    let snapshots = Arc::new(SnapshotHandle::default());
    let targets = Arc::new(TargetRegistry::new(metrics.clone()));
    let loader = Arc::new(loader(&args, &snapshots, &metrics, &targets)?);
    let _watcher = match (&args.watch_namespace, &args.config) {
        (Some(namespace), None) => {
            start_kubernetes(&args, namespace, &loader, &snapshots).await?;
            None
        }
        (None, Some(dir)) => Some(start_directory(dir, &loader).await?),
        (Some(_), Some(_)) => bail!("pass either --config DIR or --watch-namespace NS, not both"),
        (None, None) => bail!(
            "no configuration source: pass --config DIR (CONFIG_DIR) or --watch-namespace NS (WATCH_NAMESPACE)"
        ),
    };
    let source = snapshots.status().source;

    let state = app_state(&args, snapshots, metrics, targets)?;
    let app = crate::router(state.clone());
    let (admin, admin_stop) = start_admin(&args, &state).await?;
    let listener = crate::listener::bind(&args.host, args.port)
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address: SocketAddr = listener.local_addr()?;
    let listener = WriteTimeoutListener::new(listener, *args.write_timeout);
    tracing::info!(%address, %source, "llm-gateway listening");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let limits = crate::serve::ConnectionLimits {
        header_read_timeout: *args.header_read_timeout,
        max_connections: args.max_connections,
    };
    let mut server = tokio::spawn(crate::serve::run(listener, app, limits, async {
        let _ = stop_rx.await;
    }));
    tokio::select! {
        result = &mut server => return Ok(result?),
        () = shutdown_signal() => {}
    }
    tracing::info!("shutdown signal received; readiness is now false");
    state.start_draining();
    tokio::time::sleep(*args.shutdown_delay).await;
    let _ = stop_tx.send(());
    let served = match tokio::time::timeout(*args.drain_timeout, &mut server).await {
        Ok(result) => result,
        Err(_) => {
            end_remaining_streams(&state, &mut server).await;
            Ok(())
        }
    };
    settle_before_exit(&state).await;
    let _ = admin_stop.send(());
    let _ = admin.await;
    served?;
    tracing::info!("llm-gateway stopped");
    Ok(())
}

/// Serves the admin router on `ADMIN_ADDRESS` until the returned sender fires (after the
/// drain, so metrics and health stay visible while the gateway shuts down).
async fn start_admin(
    args: &ServeArgs,
    state: &AppState,
) -> anyhow::Result<(
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
)> {
    let (host, port) = args
        .admin_address
        .rsplit_once(':')
        .and_then(|(host, port)| Some((host.trim_matches(['[', ']']), port.parse().ok()?)))
        .with_context(|| format!("ADMIN_ADDRESS {:?} is not host:port", args.admin_address))?;
    let listener = crate::listener::bind(host, port)
        .await
        .with_context(|| format!("cannot listen on ADMIN_ADDRESS {}", args.admin_address))?;
    tracing::info!(address = %listener.local_addr()?, "admin endpoints listening");
    let listener = WriteTimeoutListener::new(listener, *args.write_timeout);
    let limits = crate::serve::ConnectionLimits {
        header_read_timeout: *args.header_read_timeout,
        max_connections: 1024,
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let app = crate::http::admin_router(state.clone());
    let task = tokio::spawn(crate::serve::run(listener, app, limits, async {
        let _ = stop_rx.await;
    }));
    Ok((task, stop_tx))
}

/// How long streams ended at the drain deadline get to deliver their error event.
const CUT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long the last settlements get to reach Redis before the process exits.
const SETTLE_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// At the drain deadline: ends every stream still running with an error event (which settles
/// it and writes its access-log line), then gives the connections a moment to close.
async fn end_remaining_streams(state: &AppState, server: &mut tokio::task::JoinHandle<()>) {
    tracing::warn!(
        in_flight = state.metrics.in_flight.get(),
        "drain timeout passed; ending the remaining streams with an error event"
    );
    state.end_streams();
    if tokio::time::timeout(CUT_GRACE, &mut *server).await.is_err() {
        tracing::warn!(
            in_flight = state.metrics.in_flight.get(),
            "connections still open after the streams ended; closing them"
        );
        // Dropped here, in a live runtime, so what they reserved is settled before exit.
        server.abort();
        let _ = server.await;
    }
}

/// Waits (bounded) until every settlement and compensation reached Redis.
async fn settle_before_exit(state: &AppState) {
    let left = state.limiter.flush(SETTLE_GRACE).await;
    // Settled requests' events are queued by now; each settlement still running is lost.
    if let Some(sink) = &state.usage_events {
        let _ = tokio::time::timeout(SETTLE_GRACE, sink.flush()).await;
    }
    // After the settlements (they matter more), off the runtime: the flush waits on the
    // export task.
    let _ = tokio::task::spawn_blocking(crate::traces::shutdown).await;
    if left == 0 {
        tracing::info!("every settlement written");
    } else {
        tracing::error!(
            left,
            "settlements not written to Redis before exit (usage of these requests is lost)"
        );
    }
}

/// Loads the directory (an invalid configuration is fatal) and watches it.
async fn start_directory(
    dir: &std::path::Path,
    loader: &Arc<Loader>,
) -> anyhow::Result<notify::RecommendedWatcher> {
    let initial = {
        let loader = loader.clone();
        tokio::task::spawn_blocking(move || loader.reload()).await?
    };
    if let ReloadOutcome::Rejected(errors) = initial {
        bail!(
            "configuration in {} is invalid:\n  {}",
            dir.display(),
            errors.join("\n  ")
        );
    }
    source_dir::watch(loader.clone(), dir).context("cannot watch the config directory")
}

/// Watches the namespace's resources. If the first complete sync does not arrive within
/// `--initial-sync-timeout`, serves the last-known-good directory meanwhile (when given);
/// the watch keeps trying and replaces it once synced. A rejected first sync leaves the
/// gateway unready (no configuration) rather than exiting: fixing the resources fixes it.
async fn start_kubernetes(
    args: &ServeArgs,
    namespace: &str,
    loader: &Arc<Loader>,
    snapshots: &Arc<SnapshotHandle>,
) -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration (in-cluster service account or KUBECONFIG)")?;
    loader.issuers().use_client(client.clone());
    if let Some(notices) = loader.notices().attach(256) {
        crate::kube_events::spawn(client.clone(), notices);
    }
    let label = format!("kubernetes:{namespace}");
    snapshots.update_status(|s| s.source.clone_from(&label));
    let source = source_kube::KubeSource {
        namespace: namespace.to_owned(),
        gateway_name: args.gateway_name.clone(),
        credentials_secret: args.credentials_secret.clone(),
    };
    let mut sync = tokio::spawn(source_kube::start(client, source, loader.clone()));
    let synced = tokio::time::timeout(*args.initial_sync_timeout, &mut sync).await;
    let outcome = match synced {
        Ok(joined) => joined?,
        Err(_) => {
            let Some(dir) = &args.last_known_good else {
                tracing::warn!(
                    "no complete sync with the Kubernetes API yet; still trying (not ready)"
                );
                spawn_sync_report(sync, snapshots.clone(), label);
                return Ok(());
            };
            tracing::warn!(dir = %dir.display(), "the Kubernetes API is unreachable; serving the last-known-good configuration");
            snapshots.update_status(|s| {
                s.source = format!(
                    "last-known-good:{} (Kubernetes API unreachable)",
                    dir.display()
                );
            });
            let loader = loader.clone();
            let outcome = tokio::task::spawn_blocking(move || loader.reload()).await?;
            if let ReloadOutcome::Rejected(errors) = outcome {
                tracing::error!(errors = ?errors, "the last-known-good configuration is invalid");
            }
            spawn_sync_report(sync, snapshots.clone(), label);
            return Ok(());
        }
    };
    report_first_sync(&outcome);
    Ok(())
}

/// Once the first sync completes in the background, says so and switches the reported source.
fn spawn_sync_report(
    sync: tokio::task::JoinHandle<ReloadOutcome>,
    snapshots: Arc<SnapshotHandle>,
    label: String,
) {
    tokio::spawn(async move {
        if let Ok(outcome) = sync.await {
            snapshots.update_status(|s| s.source = label);
            report_first_sync(&outcome);
        }
    });
}

fn report_first_sync(outcome: &ReloadOutcome) {
    match outcome {
        ReloadOutcome::Rejected(_) => tracing::error!(
            "the resources in the namespace do not form a valid configuration; not ready until they do"
        ),
        _ => tracing::info!("first complete sync with the Kubernetes API applied"),
    }
}

async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
