//! Health endpoints: `/health` (alive), `/ready` (serving; reports Redis but does not depend on
//! it: every replica shares one Redis, so failing readiness on it would turn an outage into
//! connection errors instead of well-formed JSON errors), `/health/detailed` (config,
//! providers, limiter), `/health/system` (process and host), `/health/circuit-breakers`.

use std::time::UNIX_EPOCH;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{Value, json};

use llm_gateway_crds::llm_gateway::OnUnavailable;

use crate::limits::limiter::RedisState;
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
    let redis = state.limiter.probe().await.as_str();
    let body = match reason {
        None => json!({"status": "ready", "redis": redis}),
        Some(reason) => json!({"status": "not_ready", "reason": reason, "redis": redis}),
    };
    (status, Json(body)).into_response()
}

/// Configuration errors listed by `/health/detailed`; the rest are counted. A directory of
/// 10,000 broken keys must not become a response of 10,000 messages (the log has them all).
const MAX_LISTED_ERRORS: usize = 20;

/// Configuration source, generation, last reload result and providers. Reload errors never
/// hold configuration content (see `crds::manifest`) and are cleared once the served
/// configuration is current again (see `config::loader`).
pub async fn detailed(State(state): State<AppState>) -> Json<Value> {
    let reload = state.snapshots.status();
    let error_count = reload.last_errors.len();
    let listed_errors = &reload.last_errors[..error_count.min(MAX_LISTED_ERRORS)];
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
    let redis = state.limiter.probe().await;
    let status = match (&snapshot, reload.last_errors.is_empty(), redis) {
        (None, _, _) => "not_ready",
        (Some(_), false, _) | (Some(_), _, RedisState::Down) => "degraded",
        (Some(_), true, _) => "ok",
    };
    let limits = json!({
        "storage": if redis == RedisState::Disabled { "memory" } else { "redis" },
        "redis": redis.as_str(),
        "on_unavailable": match state.limiter.on_unavailable() {
            OnUnavailable::FailOpen => "failOpen",
            OnUnavailable::FailClosed => "failClosed",
        },
    });
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
                "errors": listed_errors,
                "error_count": error_count,
                "successes": reload.successes,
                "failures": reload.failures,
            },
        },
        "providers": providers,
        "limits": limits,
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
