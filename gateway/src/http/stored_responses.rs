//! `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`: the Responses the gateway translated and kept (see
//! `response_store.rs`), each caller seeing only its own. Responses an upstream answered in the
//! Responses API itself are kept by that upstream, not here.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde_json::{Value, json};

use super::auth::authenticate;
use crate::auth_throttle::ClientAddress;
use crate::error::ApiError;
use crate::response_store::Kind;
use crate::state::AppState;

/// `GET /v1/responses/{id}`: the kept response object.
pub async fn retrieve(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kept = kept(&state, client, &headers, &id)?;
    Ok(Json(kept["response"].clone()).into_response())
}

/// `GET /v1/responses/{id}/input_items`: the items the response answered, oldest first.
pub async fn input_items(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let kept = kept(&state, client, &headers, &id)?;
    let data: Vec<Value> = kept["input"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, item)| with_id(item, &id, index))
        .collect();
    let (first, last) = (
        data.first().map(|i| i["id"].clone()),
        data.last().map(|i| i["id"].clone()),
    );
    Ok(Json(json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": false})).into_response())
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller(&state, client, &headers)?;
    if !state.responses.remove(&caller, &id) {
        return Err(not_found(&id));
    }
    Ok(Json(json!({"id": id, "object": "response.deleted", "deleted": true})).into_response())
}

/// The caller's key id (empty without authentication): whose kept responses it may see.
fn caller(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let snapshot = state.snapshots.load().ok_or(ApiError::NotReady)?;
    let key = authenticate(state, &snapshot, headers, false, client)?;
    Ok(key.map(|k| k.id()).unwrap_or_default())
}

fn kept(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    id: &str,
) -> Result<std::sync::Arc<Value>, ApiError> {
    let caller = caller(state, client, headers)?;
    state
        .responses
        .get(&caller, Kind::Response, id)
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::ResponseNotFound {
        id: id.chars().take(64).collect(),
    }
}

/// An input item with an id (`msg_…_in{index}` for one the client sent without).
fn with_id(item: &Value, response: &str, index: usize) -> Value {
    let mut item = item.clone();
    if item.get("id").is_none_or(Value::is_null)
        && let Some(fields) = item.as_object_mut()
    {
        let base = response.trim_start_matches("resp_");
        fields.insert("id".to_owned(), json!(format!("msg_{base}_in{index}")));
        fields.entry("type").or_insert(json!("message"));
    }
    item
}
