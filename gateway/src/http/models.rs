//! `GET /v1/models`: the route models the caller may use.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::json;

use super::auth::authenticate;
use crate::auth_throttle::ClientAddress;
use crate::error::ApiError;
use crate::state::AppState;

/// Lists routed models, filtered by the caller's allowed models.
pub async fn list(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let snapshot = state.snapshots.load().ok_or(ApiError::NotReady)?;
    let key = authenticate(&state, &snapshot, &headers, true, client)?;
    let created = snapshot
        .loaded_at
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut models: Vec<&str> = snapshot
        .routes
        .keys()
        .map(String::as_str)
        .filter(|m| key.as_ref().is_none_or(|k| k.allows_model(m)))
        .collect();
    models.sort_unstable();
    let data: Vec<_> = models
        .into_iter()
        .map(|id| json!({"id": id, "object": "model", "created": created, "owned_by": "llm-gateway"}))
        .collect();
    Ok(Json(json!({"object": "list", "data": data})).into_response())
}
