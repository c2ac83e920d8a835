//! `GET /v1/models` and `GET /v1/models/{id}`: the route models the caller may use, in OpenAI's
//! shape, or in Anthropic's when the request carries `anthropic-version` (the Anthropic SDK's
//! `models.list` / `models.retrieve`; errors are then Anthropic-shaped too).

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use super::auth::authenticate;
use super::is_anthropic;
use crate::auth_throttle::ClientAddress;
use crate::config::Snapshot;
use crate::error::ApiError;
use crate::state::AppState;

fn render(error: ApiError, headers: &HeaderMap) -> Response {
    if is_anthropic(headers) {
        error.into_anthropic_response()
    } else {
        error.into_response()
    }
}

/// Lists routed models, filtered by the caller's allowed models.
pub async fn list(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    allowed_models(&state, client, &headers).map_or_else(
        |error| render(error, &headers),
        |(snapshot, models)| {
            let data: Vec<Value> = models
                .iter()
                .map(|id| model(&snapshot, id, &headers))
                .collect();
            let body = if is_anthropic(&headers) {
                json!({"data": data, "has_more": false, "first_id": models.first(), "last_id": models.last()})
            } else {
                json!({"object": "list", "data": data})
            };
            Json(body).into_response()
        },
    )
}

/// One routed model, if the caller may use it; 404 `model_not_found` otherwise (a model the
/// caller may not use is not revealed to exist).
pub async fn retrieve(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let found = allowed_models(&state, client, &headers).and_then(|(snapshot, models)| {
        if models.contains(&id) {
            Ok(model(&snapshot, &id, &headers))
        } else {
            Err(ApiError::ModelNotFound { model: id })
        }
    });
    found.map_or_else(
        |error| render(error, &headers),
        |body| Json(body).into_response(),
    )
}

/// The snapshot and the caller's routed models, sorted.
fn allowed_models(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<Snapshot>, Vec<String>), ApiError> {
    let snapshot = state.snapshots.load().ok_or(ApiError::NotReady)?;
    let key = authenticate(state, &snapshot, headers, true, client)?;
    let mut models: Vec<String> = snapshot
        .routes
        .keys()
        .filter(|m| key.as_ref().is_none_or(|k| k.allows_model(m)))
        .cloned()
        .collect();
    models.sort_unstable();
    Ok((snapshot, models))
}

/// A model object in the client's shape; `created` is when the configuration was loaded.
fn model(snapshot: &Snapshot, id: &str, headers: &HeaderMap) -> Value {
    let created = snapshot
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if is_anthropic(headers) {
        let created_at = i64::try_from(created)
            .ok()
            .and_then(|s| jiff::Timestamp::from_second(s).ok())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        json!({"type": "model", "id": id, "display_name": id, "created_at": created_at.to_string()})
    } else {
        json!({"id": id, "object": "model", "created": created, "owned_by": "llm-gateway"})
    }
}
