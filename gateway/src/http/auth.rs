//! API-key authentication: `Authorization: Bearer <key>`, or `x-api-key` on the
//! Anthropic-compatible endpoint; never the query string.

use http::{HeaderMap, header};
use llm_gateway_crds::compiled::CompiledKey;

use crate::config::Snapshot;
use crate::error::ApiError;
use crate::state::AppState;

/// The authenticated caller, or `None` when the configuration requires no key.
pub fn authenticate<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    headers: &HeaderMap,
    accept_x_api_key: bool,
) -> Result<Option<&'s CompiledKey>, ApiError> {
    if !snapshot.require_api_key {
        return Ok(None);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| {
            accept_x_api_key
                .then(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
                .flatten()
        });
    let Some(presented) = presented else {
        state.metrics.reject_key("missing");
        return Err(ApiError::InvalidApiKey);
    };
    match snapshot.authenticate(presented, &state.settings.key_pepper) {
        Ok(key) => Ok(Some(key)),
        Err(reason) => {
            state.metrics.reject_key(reason);
            Err(ApiError::InvalidApiKey)
        }
    }
}
