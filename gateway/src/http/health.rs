//! Health endpoints: `/health` (alive), `/ready` (serving), `/health/detailed` (config and
//! providers), `/health/system` (process and host), `/health/circuit-breakers`.

use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use crate::state::AppState;

/// Liveness: the process answers.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// Readiness: a configuration is loaded and shutdown has not begun.
pub async fn ready(State(state): State<AppState>) -> Response {
    let (status, reason) = if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, Some("shutting down"))
    } else if state.snapshots.load().is_none() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Some("no configuration loaded"),
        )
    } else {
        (StatusCode::OK, None)
    };
    let body = match reason {
        None => json!({"status": "ready"}),
        Some(reason) => json!({"status": "not_ready", "reason": reason}),
    };
    (status, Json(body)).into_response()
}

/// Configuration source, generation, last reload result and providers.
pub async fn detailed(State(state): State<AppState>) -> Json<Value> {
    let reload = state.snapshots.status();
    let snapshot = state.snapshots.load();
    let seconds = |t: std::time::SystemTime| t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).ok();
    let providers: Vec<Value> = snapshot
        .iter()
        .flat_map(|s| s.providers.iter())
        .map(|p| {
            json!({
                "name": p.compiled.id,
                "type": p.compiled.provider_type.as_str(),
                "available": p.compiled.unavailable.is_none(),
                "reason": p.compiled.unavailable,
            })
        })
        .collect();
    let status = match (&snapshot, reload.last_errors.is_empty()) {
        (None, _) => "not_ready",
        (Some(_), true) => "ok",
        (Some(_), false) => "degraded",
    };
    Json(json!({
        "status": status,
        "draining": state.is_draining(),
        "uptime_seconds": state.started.elapsed().as_secs_f64(),
        "config": {
            "source": reload.source,
            "generation": snapshot.as_ref().map(|s| s.generation),
            "loaded_at": snapshot.as_ref().and_then(|s| seconds(s.loaded_at)),
            "routes": snapshot.as_ref().map_or(0, |s| s.routes.len()),
            "api_keys": snapshot.as_ref().map_or(0, |s| s.keys.len()),
            "last_reload": {
                "result": if reload.last_errors.is_empty() { "success" } else { "error" },
                "at": reload.last_attempt.and_then(seconds),
                "errors": reload.last_errors,
                "successes": reload.successes,
                "failures": reload.failures,
            },
        },
        "providers": providers,
    }))
}

/// Process and host figures.
pub async fn system(State(state): State<AppState>) -> Json<crate::system::SystemInfo> {
    Json(crate::system::read(state.started.elapsed().as_secs_f64()))
}

/// Circuit-breaker state per target: state, failures in the window, time until half-open,
/// in-flight requests, latency estimate and any `Retry-After` cooldown.
pub async fn circuit_breakers(State(state): State<AppState>) -> Json<Value> {
    let breakers: Vec<_> = state
        .targets
        .all()
        .iter()
        .map(|t| t.report_entry())
        .collect();
    Json(json!({
        "enabled": state.settings.breakers_enabled,
        "retries_enabled": state.settings.retry_enabled,
        "breakers": breakers,
    }))
}
