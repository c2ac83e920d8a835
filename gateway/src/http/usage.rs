//! `GET /v1/usage`: the calling key's (or token subject's) own usage in the current budget
//! period, and that of the LlmQuotas it shares. Only ever the caller's own accounts (OWASP
//! API1): there is no parameter naming another one.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::HeaderMap;
use jiff::Timestamp;
use llm_gateway_crds::compiled::CompiledQuota;
use llm_gateway_crds::policy::{Budget, RateLimits};
use serde_json::json;

use super::auth::authenticate;
use crate::auth_throttle::ClientAddress;
use crate::error::ApiError;
use crate::limits::UsageTotals;
use crate::limits::demand::usage_key;
use crate::limits::period::Period;
use crate::state::AppState;

/// Answers the caller's usage, spend, budget and limits.
pub async fn usage(
    State(state): State<AppState>,
    client: ClientAddress,
    headers: HeaderMap,
) -> Response {
    match report(&state, client, &headers).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn report(
    state: &AppState,
    client: ClientAddress,
    headers: &HeaderMap,
) -> Result<serde_json::Value, ApiError> {
    let snapshot = state.snapshots.load().ok_or(ApiError::NotReady)?;
    let caller = authenticate(state, &snapshot, headers, true, client)?.ok_or_else(|| {
        ApiError::invalid(
            "usage is counted per caller, and this gateway accepts anonymous requests",
            None,
        )
    })?;
    let budget = caller.budget();
    let now = Timestamp::now();
    let period = Period::of_budget(budget, now);
    let totals = state
        .limiter
        .usage(&usage_key(&caller.account(), &period))
        .await
        .map_err(|_| ApiError::LimiterUnavailable)?;
    let spend = totals.spend_nanos as f64 / 1e9;
    let mut quotas = Vec::with_capacity(caller.quotas().len());
    for quota in caller.quotas() {
        quotas.push(quota_report(state, quota, now).await?);
    }
    Ok(json!({
        "object": "usage",
        "key_id": caller.id(),
        "owner": caller.owner(),
        "period": period_report(&period),
        "requests": totals.requests,
        "input_tokens": totals.input_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "cache_write_tokens": totals.cache_write_tokens,
        "reasoning_tokens": totals.reasoning_tokens,
        "output_tokens": totals.output_tokens,
        "spend_usd": spend,
        "budget": budget.map(|b| budget_report(b, &totals)),
        "limits": caller.limits().map(limits_report),
        "quotas": quotas,
    }))
}

/// What an LlmQuota the caller shares has counted in its period, from every caller.
async fn quota_report(
    state: &AppState,
    quota: &CompiledQuota,
    now: Timestamp,
) -> Result<serde_json::Value, ApiError> {
    let period = Period::of_budget(quota.budget.as_ref(), now);
    let totals = state
        .limiter
        .usage(&usage_key(&quota.account, &period))
        .await
        .map_err(|_| ApiError::LimiterUnavailable)?;
    Ok(json!({
        "name": quota.id,
        "period": period_report(&period),
        "requests": totals.requests,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "spend_usd": totals.spend_nanos as f64 / 1e9,
        "budget": quota.budget.as_ref().map(|b| budget_report(b, &totals)),
        "limits": quota.limits.as_ref().map(limits_report),
    }))
}

fn budget_report(budget: &Budget, totals: &UsageTotals) -> serde_json::Value {
    let spend = totals.spend_nanos as f64 / 1e9;
    json!({
        "usd": budget.usd,
        "remaining_usd": (budget.usd - spend).max(0.0),
        "reserved_usd": totals.reserved_nanos.max(0) as f64 / 1e9,
    })
}

fn limits_report(limits: &RateLimits) -> serde_json::Value {
    json!({
        "requests_per_minute": limits.requests_per_minute,
        "tokens_per_minute": limits.tokens_per_minute,
        "max_concurrent": limits.max_concurrent,
    })
}

fn period_report(period: &Period) -> serde_json::Value {
    json!({
        "type": period.kind.name(),
        "start": period.start.to_string(),
        "end": period.end.to_string(),
    })
}
