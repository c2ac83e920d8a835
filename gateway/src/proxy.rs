//! The resilience loop: pick targets, skip what cannot serve, send, retry or fall back before
//! anything reached the client, feed breakers and latency estimates.
//!
//! One loop only (attempts are never nested): the route's targets in pick order, then each
//! fallback route's, share one attempt count (`retry.attempts + 1`), one deadline (the route
//! `timeout`) and the route's retry budget. A target is skipped while its provider is
//! unavailable, its breaker is open, it is cooling down after a `Retry-After`, its provider is at
//! `maxConcurrency`, or the request's input exceeds its catalogue context window. Once an
//! upstream answered with a success status the response is the client's: later failures in a
//! stream end it with an error event, never a retry.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use llm_gateway_crds::policy::{Retry, RetryOn};

use crate::config::{RouteRuntime, Snapshot};
use crate::error::ApiError;
use crate::limits::Meter;
use crate::metrics::RetryLabels;
use crate::openai::ChatRequest;
use crate::providers::{self, Call};
use crate::state::AppState;

/// Retry policy of a RoutePolicy without `retry` (2 retries on 429, 5xx, timeouts, connect).
static DEFAULT_RETRY: LazyLock<Retry> = LazyLock::new(Retry::default);

/// Deadline of a route without a `timeout`.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(600);

/// Serves `request` on `route`; returns the response (or error) and the provider that gave it.
pub async fn serve<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    route: &'s RouteRuntime,
    request: &ChatRequest,
    headers: &HeaderMap,
    started: Instant,
    meter: &Arc<Meter>,
) -> (Result<Response, ApiError>, &'s str) {
    let settings = &state.settings;
    let deadline = started
        + route
            .compiled
            .timeout
            .map_or(DEFAULT_ROUTE_TIMEOUT, |t| t.get());
    let retry = route.compiled.retry.as_ref().unwrap_or(&DEFAULT_RETRY);
    let max_attempts = if settings.retry_enabled {
        retry.attempts + 1
    } else {
        1
    };
    route.budget.deposit();
    let chain = std::iter::once(route).chain(
        route
            .compiled
            .fallbacks
            .iter()
            .filter_map(|m| snapshot.routes.get(m)),
    );
    let mut attempts = 0;
    let mut skipped: Vec<String> = Vec::new();
    let mut soonest: Option<Duration> = None;
    let mut last: Option<(ApiError, &'s str)> = None;
    'routes: for (position, current) in chain.enumerate() {
        if position > 0 {
            count(state, &route.compiled.model, "fallback");
        }
        for index in current.pick_order() {
            let (target, target_state) = current.target(index);
            let provider = &snapshot.providers[target.provider];
            let name = provider.compiled.name.as_str();
            if let Some(reason) = &provider.compiled.unavailable {
                skipped.push(format!("{name}: {reason}"));
                continue;
            }
            if exceeds_context(request, provider, &target.upstream_model) {
                skipped.push(format!(
                    "{name}/{}: input exceeds the context window",
                    target.upstream_model
                ));
                continue;
            }
            if let Some(wait) = target_state.cooling_for() {
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                skipped.push(format!(
                    "{name}/{}: cooling down after Retry-After",
                    target.upstream_model
                ));
                continue;
            }
            let Some(admission) = target_state.admit(settings.breakers_enabled) else {
                let wait = target_state.retry_in().unwrap_or(Duration::from_secs(1));
                soonest = Some(soonest.map_or(wait, |s| s.min(wait)));
                skipped.push(format!(
                    "{name}/{}: circuit breaker open",
                    target.upstream_model
                ));
                continue;
            };
            let Some(permit) = provider
                .bulkhead
                .try_acquire(provider.compiled.max_concurrency)
            else {
                soonest = Some(Duration::from_secs(1));
                skipped.push(format!("{name}: at maxConcurrency"));
                continue;
            };
            if attempts >= max_attempts {
                break 'routes;
            }
            if attempts > 0 {
                if !route.budget.withdraw() {
                    count(state, &route.compiled.model, "budget_exhausted");
                    break 'routes;
                }
                count(state, &route.compiled.model, "retried");
                let pause = backoff(retry, attempts);
                if Instant::now() + pause >= deadline {
                    break 'routes;
                }
                tokio::time::sleep(pause).await;
            }
            attempts += 1;
            let inflight = target_state.start_call();
            let call = Call {
                request,
                route_model: &current.compiled.model,
                target,
                provider,
                client_headers: headers,
                started,
                metrics: &state.metrics,
                meter,
            };
            let sent = Instant::now();
            let outcome = tokio::time::timeout_at(deadline.into(), providers::chat(call)).await;
            match outcome {
                Ok(Ok(response)) => {
                    admission.settle(true);
                    target_state.observe_ttfb(sent.elapsed());
                    return (Ok(hold_until_body_ends(response, (inflight, permit))), name);
                }
                Ok(Err(error)) => {
                    admission.settle(!counts_against_upstream(&error));
                    if let ApiError::Upstream {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        retry_after: Some(v),
                        ..
                    } = &error
                        && let Some(seconds) =
                            v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok())
                    {
                        target_state.cool_down(Duration::from_secs(seconds));
                    }
                    if !is_retryable(&error, &retry.on) {
                        return (Err(error), name);
                    }
                    last = Some((error, name));
                }
                Err(_) => {
                    admission.settle(false);
                    let message = format!(
                        "route '{}' timed out (deadline of the whole request)",
                        route.compiled.model
                    );
                    return (Err(ApiError::UpstreamTimeout(message)), name);
                }
            }
        }
    }
    match last {
        Some((error, name)) => (Err(error), name),
        None => {
            let message = format!(
                "no target can serve model '{}' now ({})",
                route.compiled.model,
                skipped.join("; ")
            );
            (
                Err(ApiError::ServiceUnavailable {
                    message,
                    retry_after: soonest,
                }),
                "",
            )
        }
    }
}

fn count(state: &AppState, model: &str, outcome: &'static str) {
    state
        .metrics
        .retries
        .get_or_create(&RetryLabels {
            model: model.to_owned(),
            outcome,
        })
        .inc();
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
fn backoff(retry: &Retry, attempt: u32) -> Duration {
    let base = retry.backoff.base.get();
    let capped = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(retry.backoff.max.get());
    let half = capped / 2;
    half + half.mul_f64(jitter())
}

fn jitter() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether a failure says the upstream is unhealthy (5xx, timeouts, connection failures), as
/// opposed to the client's mistake or a rate limit.
fn counts_against_upstream(error: &ApiError) -> bool {
    match error {
        ApiError::UpstreamTimeout(_) => true,
        ApiError::Upstream { status, .. } => status.is_server_error(),
        _ => false,
    }
}

fn is_retryable(error: &ApiError, on: &[RetryOn]) -> bool {
    match error {
        ApiError::UpstreamTimeout(_) => on.contains(&RetryOn::Timeout),
        ApiError::Upstream {
            status, message, ..
        } => {
            (*status == StatusCode::TOO_MANY_REQUESTS && on.contains(&RetryOn::TooManyRequests))
                || (status.is_server_error() && on.contains(&RetryOn::ServerError))
                || (message.starts_with("cannot connect") && on.contains(&RetryOn::Connect))
        }
        _ => false,
    }
}

/// Whether the request's input (about four bytes a token) exceeds the target's context window.
fn exceeds_context(
    request: &ChatRequest,
    provider: &crate::config::ProviderRuntime,
    model: &str,
) -> bool {
    let window = provider
        .compiled
        .models
        .get(model)
        .and_then(|m| m.context_window);
    window.is_some_and(|w| (request.prompt_bytes as u64).div_ceil(4) > u64::from(w))
}

/// Keeps `guards` (in-flight count, bulkhead slot) alive until the response body is dropped.
pub fn hold_until_body_ends<G: Send + Sync + 'static>(response: Response, guards: G) -> Response {
    response.map(move |body| {
        Body::new(body.map_frame(move |frame| {
            let _held = &guards;
            frame
        }))
    })
}
