//! Running the gateway: initial load, directory watch, listener, graceful shutdown.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::args::ServeArgs;
use crate::config::SnapshotHandle;
use crate::config::loader::{Loader, ReloadOutcome};
use crate::config::source_dir;
use crate::listener::WriteTimeoutListener;
use crate::metrics::Metrics;
use crate::state::{AppState, RequestSettings};
use crate::targets::TargetRegistry;

/// Serves until SIGTERM/SIGINT, then drains: readiness off at once, listener closed after
/// `shutdown_delay`, in-flight requests and streams given `drain_timeout` to finish.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let Some(dir) = args.config.clone() else {
        bail!("no configuration source: pass --config DIR (or set CONFIG_DIR)");
    };
    let metrics = Arc::new(Metrics::new());
    let snapshots = Arc::new(SnapshotHandle::default());
    let pepper = args.api_key_pepper.as_bytes().to_vec();
    let targets = Arc::new(TargetRegistry::new(metrics.clone()));
    let loader = Arc::new(
        Loader::new(
            dir.clone(),
            pepper.clone(),
            snapshots.clone(),
            metrics.clone(),
            targets.clone(),
        )
        .with_default_jwt(args.jwt().map_err(anyhow::Error::msg)?),
    );
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
    let _watcher = source_dir::watch(loader, &dir).context("cannot watch the config directory")?;

    let settings = RequestSettings {
        max_body_bytes: args.max_request_body_bytes,
        key_pepper: pepper.into(),
        retry_enabled: args.retry_enabled,
        breakers_enabled: args.circuit_breaker_enabled,
    };
    let limiter =
        crate::limits::Limiter::new(args.limiter().map_err(anyhow::Error::msg)?, metrics.clone())
            .context("invalid REDIS_URL")?;
    let state = AppState::new(snapshots, metrics, targets, settings, Arc::new(limiter));
    let app = crate::router(state.clone());
    let listener = TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address: SocketAddr = listener.local_addr()?;
    let listener = WriteTimeoutListener::new(listener, *args.write_timeout);
    tracing::info!(%address, config = %dir.display(), "llm-gateway listening");

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async {
        let _ = stop_rx.await;
    });
    let mut server = tokio::spawn(async move { server.await });
    tokio::select! {
        result = &mut server => return Ok(result??),
        () = shutdown_signal() => {}
    }
    tracing::info!("shutdown signal received; readiness is now false");
    state.start_draining();
    tokio::time::sleep(*args.shutdown_delay).await;
    let _ = stop_tx.send(());
    match tokio::time::timeout(*args.drain_timeout, server).await {
        Ok(result) => result??,
        Err(_) => tracing::warn!(
            in_flight = state.metrics.in_flight.get(),
            "drain timeout passed; closing remaining connections"
        ),
    }
    tracing::info!("llm-gateway stopped");
    Ok(())
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
