//! `GET /v1/responses/{id}`, `DELETE /v1/responses/{id}` and
//! `GET /v1/responses/{id}/input_items`: the Responses the gateway translated and kept (see
//! `response_store`), each caller seeing only its own.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use serde::Deserialize;
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
    let kept = kept(&state, client, &headers, &id).await?;
    Ok(Json(kept["response"].clone()).into_response())
}

/// `input_items` paging, as OpenAI's: `limit` 1–100 (20), `order` `asc` or `desc` (the
/// default: newest first), `after` an item id.
#[derive(Debug, Deserialize)]
pub struct Page {
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    order: Option<String>,
    #[serde(default)]
    after: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`: the items the response answered.
pub async fn input_items(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    Query(page): Query<Page>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let limit = page.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("'limit' must be 1 to 100", Some("limit")));
    }
    let ascending = match page.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(ApiError::invalid(
                "'order' must be asc or desc",
                Some("order"),
            ));
        }
    };
    let kept = kept(&state, client, &headers, &id).await?;
    let mut items: Vec<Value> = kept["input"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(index, item)| with_id(item, &id, index))
        .collect();
    if !ascending {
        items.reverse();
    }
    let start = match &page.after {
        Some(after) => items
            .iter()
            .position(|i| i["id"] == after.as_str())
            .map(|at| at + 1)
            .ok_or_else(|| {
                ApiError::invalid("'after' names no item of this response", Some("after"))
            })?,
        None => 0,
    };
    let rest = items.len().saturating_sub(start);
    let data: Vec<Value> = items.into_iter().skip(start).take(limit).collect();
    let (first, last) = (
        data.first().map(|i| i["id"].clone()),
        data.last().map(|i| i["id"].clone()),
    );
    let has_more = rest > limit;
    Ok(Json(json!({"object": "list", "data": data, "first_id": first, "last_id": last, "has_more": has_more})).into_response())
}

/// `DELETE /v1/responses/{id}`.
pub async fn delete(
    State(state): State<AppState>,
    client: ClientAddress,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let caller = caller(&state, client, &headers)?;
    if !state.responses.remove(&caller, &id).await? {
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

async fn kept(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
    id: &str,
) -> Result<std::sync::Arc<Value>, ApiError> {
    let caller = caller(state, client, headers)?;
    state
        .responses
        .get(&caller, Kind::Response, id)
        .await?
        .ok_or_else(|| not_found(id))
}

fn not_found(id: &str) -> ApiError {
    ApiError::ResponseNotFound {
        id: id.chars().take(64).collect(),
    }
}

/// An input item with an id (`msg_…_in{index}` for a message the client sent without one,
/// `item_…_in{index}` for anything else).
fn with_id(item: &Value, response: &str, index: usize) -> Value {
    let mut item = item.clone();
    if item.get("id").is_none_or(Value::is_null)
        && let Some(fields) = item.as_object_mut()
    {
        let message = fields.get("type").is_none_or(|t| t == "message");
        let prefix = if message { "msg" } else { "item" };
        let base = response.trim_start_matches("resp_");
        fields.insert("id".to_owned(), json!(format!("{prefix}_{base}_in{index}")));
        if message {
            fields.entry("type").or_insert(json!("message"));
        }
    }
    // A message's text as the API lists it: a list of parts (`output_text` for the
    // assistant's, `input_text` for the others').
    if let Some(text) = item
        .get("content")
        .and_then(Value::as_str)
        .map(str::to_owned)
    {
        let kind = if item["role"] == "assistant" {
            "output_text"
        } else {
            "input_text"
        };
        item["content"] = json!([{"type": kind, "text": text}]);
    }
    item
}
