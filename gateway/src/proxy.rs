//! The resilience loop: pick targets, skip what cannot serve, send, retry or fall back before
//! anything reached the client, feed breakers and latency estimates.
//!
//! One loop only (attempts are never nested), walked in passes. A pass tries the route's
//! targets in pick order, then each fallback route's. When a pass ends with attempts left and
//! every attempt it made failed retryably, another pass walks the same chain in the same order,
//! so a route with a single target retries that target; a pass that attempted nothing ends the
//! loop (walking the same skips again changes nothing). All passes share one attempt count
//! (`retry.attempts + 1` in total), one deadline (the route `timeout`) and the route's retry
//! budget, and every attempt after the first waits the retry policy's backoff first. A target is
//! skipped while its provider is unavailable, its breaker is open, it is cooling down after a
//! `Retry-After` (so a target that answered 429 with `Retry-After` is not called again by this
//! request's later passes either), its provider is at `maxConcurrency`, or the request's input
//! exceeds its catalogue context window. When every target was skipped, the answer is 429 with
//! `Retry-After` if one of them is cooling down (callers back off as they would for the provider
//! itself), else 503. Once an upstream answered with a success status the response is the
//! client's: later failures in a stream end it with an error event, never a retry.

use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use http::HeaderMap;
use http_body_util::BodyExt;
use llm_gateway_crds::compiled::CompiledTarget;
use llm_gateway_crds::policy::Retry;

use crate::config::{ProviderRuntime, RouteRuntime, Snapshot};
use crate::error::ApiError;
use crate::limits::Meter;
use crate::metrics::RetryLabels;
use crate::pipeline;
use crate::providers::Call;
use crate::request::ClientRequest;
use crate::state::AppState;
use crate::targets::{Admission, ProviderPermit, TargetState};

mod failures;
mod tally;

use failures::{backoff, counts_against_upstream, honour_retry_after, is_retryable};
use tally::Tally;

/// Retry policy of a RoutePolicy without `retry` (2 retries on 429, 5xx, timeouts, connect).
static DEFAULT_RETRY: LazyLock<Retry> = LazyLock::new(Retry::default);

/// Deadline of a route without a `timeout`.
pub const DEFAULT_ROUTE_TIMEOUT: Duration = Duration::from_secs(600);

/// The client's request as the loop carries it to every attempt.
#[derive(Debug, Clone, Copy)]
pub struct Incoming<'a> {
    /// The parsed request.
    pub request: &'a ClientRequest,
    /// Its headers (only allowlisted ones go upstream).
    pub headers: &'a HeaderMap,
    /// When it arrived.
    pub started: Instant,
    /// Where its real usage goes.
    pub meter: &'a Arc<Meter>,
    /// The caller's key id (empty without authentication): whose kept responses it may use.
    pub caller: &'a str,
}

/// Serves `incoming` on `route`; returns the response (or error) and the provider that gave it
/// (none when no target was tried).
pub async fn serve<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    route: &'s RouteRuntime,
    incoming: Incoming<'_>,
) -> (Result<Response, ApiError>, Option<&'s Arc<str>>) {
    let Incoming {
        request,
        headers,
        started,
        meter,
        caller,
    } = incoming;
    let deadline = started
        + route
            .compiled
            .timeout
            .map_or(DEFAULT_ROUTE_TIMEOUT, |t| t.get());
    let retry: &'s Retry = route.compiled.retry.as_ref().unwrap_or(&DEFAULT_RETRY);
    let max_attempts = if state.settings.retry_enabled {
        retry.attempts + 1
    } else {
        1
    };
    route.budget.deposit();
    let run = Run {
        state,
        snapshot,
        route,
        request,
        headers,
        started,
        meter,
        caller,
        deadline,
        retry,
        max_attempts,
    };
    run.walk().await
}

/// What stays fixed while one request goes through the loop.
struct Run<'a, 's> {
    state: &'a AppState,
    snapshot: &'s Snapshot,
    route: &'s RouteRuntime,
    request: &'a ClientRequest,
    headers: &'a HeaderMap,
    started: Instant,
    meter: &'a Arc<Meter>,
    caller: &'a str,
    deadline: Instant,
    retry: &'s Retry,
    max_attempts: u32,
}

/// What trying a target (or walking a pass) led to.
enum Step<'s> {
    /// Skipped, or failed retryably (or, for a pass, ended without an answer): go on.
    Next,
    /// The attempt count, the retry budget or the deadline is spent: answer with the last
    /// failure.
    Stop,
    /// The client's answer (a response, or an error not worth retrying) and its provider.
    Done(Result<Response, ApiError>, &'s Arc<str>),
}

impl<'s> Run<'_, 's> {
    /// Walks passes over the route chain until an answer, a spent limit, or a pass that made
    /// no attempt (its targets all skipped, so another pass would skip them again).
    async fn walk(&self) -> (Result<Response, ApiError>, Option<&'s Arc<str>>) {
        let (route, snapshot) = (self.route, self.snapshot);
        let chain: Vec<&'s RouteRuntime> = std::iter::once(route)
            .chain(
                route
                    .compiled
                    .fallbacks
                    .iter()
                    .filter_map(|m| snapshot.routes.get(m)),
            )
            .collect();
        // Pick orders are taken once per route (a weighted schedule advances on every pick)
        // and only when a pass reaches the route, then reused by later passes.
        let mut orders: Vec<Option<Vec<usize>>> = vec![None; chain.len()];
        let mut tally = Tally::default();
        let mut first = true;
        loop {
            let before = tally.attempts;
            match self.pass(&chain, &mut orders, first, &mut tally).await {
                Step::Done(result, name) => return (result, Some(name)),
                Step::Stop => break,
                Step::Next => {}
            }
            if tally.attempts == before || tally.attempts >= self.max_attempts {
                break;
            }
            first = false;
        }
        tally.finish(&route.compiled.model)
    }

    /// One pass: the chain's targets in pick order; `Next` when it ended without an answer.
    async fn pass(
        &self,
        chain: &[&'s RouteRuntime],
        orders: &mut [Option<Vec<usize>>],
        first: bool,
        tally: &mut Tally<'s>,
    ) -> Step<'s> {
        for (position, (&current, order)) in chain.iter().zip(orders.iter_mut()).enumerate() {
            if position > 0 && first {
                count(self.state, &self.route.compiled.model, "fallback");
            }
            let order = order.get_or_insert_with(|| current.pick_order(self.affinity(current)));
            for &index in order.iter() {
                let step = self.attempt(current, index, tally).await;
                if !matches!(step, Step::Next) {
                    return step;
                }
            }
        }
        Step::Next
    }

    /// Where `route`'s cache affinity puts this request, if anywhere.
    fn affinity(&self, route: &RouteRuntime) -> Option<u64> {
        let mode = route.compiled.cache_affinity;
        (route.compiled.targets.len() > 1)
            .then(|| {
                self.request
                    .affinity
                    .hash(&self.request.body, self.caller, mode)
            })
            .flatten()
    }

    /// Tries the target at `index` of `current`: skips it, or calls it once.
    async fn attempt(
        &self,
        current: &'s RouteRuntime,
        index: usize,
        tally: &mut Tally<'s>,
    ) -> Step<'s> {
        let snapshot: &'s Snapshot = self.snapshot;
        let (target, target_state) = current.target(index);
        let provider = &snapshot.providers[target.provider];
        let name = &provider.name;
        let Some((admission, permit)) = self.admit(provider, target, target_state, tally) else {
            return Step::Next;
        };
        let mut call = Call {
            request: self.request,
            route_model: &current.model,
            slots: &current.metrics[index],
            target,
            provider,
            client_headers: self.headers,
            started: self.started,
            metrics: &self.state.metrics,
            meter: self.meter,
            limits: self.state.settings.upstream_limits,
            responses: &self.state.responses,
            caller: self.caller,
            trace: None,
            capture_content: crate::traces::content::captured(current.compiled.capture_content),
        };
        let prepared = match pipeline::prepare(&call).await {
            Ok(prepared) => prepared,
            Err(refusal) => {
                // Nothing was sent: the breaker learns nothing (the admission is abandoned),
                // and no attempt is spent; another target may serve the request.
                drop((admission, permit));
                tally.refuse(refusal, name);
                return Step::Next;
            }
        };
        if !self.may_call(tally.attempts).await {
            return Step::Stop;
        }
        tally.attempts += 1;
        if crate::traces::enabled() {
            call.trace = self.client_span(provider, target, tally.attempts);
        }
        let span = crate::traces::EndOnDrop(call.trace.as_ref().map(|(c, _)| c.clone()));
        let inflight = target_state.start_call();
        let sent = Instant::now();
        let attempt = pipeline::send(call, prepared);
        match tokio::time::timeout_at(self.deadline.into(), attempt).await {
            Ok(Ok(response)) => {
                admission.settle(true);
                target_state.observe_ttfb(sent.elapsed());
                if let Some(context) = &span.0 {
                    let status = i64::from(response.status().as_u16());
                    crate::traces::annotate(context, || {
                        [opentelemetry::KeyValue::new(
                            "http.response.status_code",
                            status,
                        )]
                    });
                }
                let guards = (inflight, permit, span);
                Step::Done(Ok(hold_until_body_ends(response, guards)), name)
            }
            Ok(Err(error)) => {
                crate::traces::fail(&span, error.label());
                admission.settle(!counts_against_upstream(&error));
                honour_retry_after(&error, target_state);
                if !is_retryable(&error, &self.retry.on) {
                    return Step::Done(Err(error), name);
                }
                tally.last = Some((error, name));
                Step::Next
            }
            Err(_) => {
                crate::traces::fail(&span, "upstream_timeout");
                admission.settle(false);
                let message = format!(
                    "route '{}' timed out (deadline of the whole request)",
                    self.route.compiled.model
                );
                Step::Done(Err(ApiError::UpstreamTimeout(message)), name)
            }
        }
    }

    /// The client span of attempt number `attempt` on `target` (traces on), and the headers
    /// that carry its context upstream.
    fn client_span(
        &self,
        provider: &ProviderRuntime,
        target: &CompiledTarget,
        attempt: u32,
    ) -> Option<(opentelemetry::Context, HeaderMap)> {
        use opentelemetry::KeyValue;
        let operation = crate::genai_metrics::operation(self.request.protocol);
        let genai = crate::genai_metrics::provider_name(provider.compiled.provider_type);
        let attributes = || {
            vec![
                KeyValue::new("gen_ai.operation.name", operation),
                KeyValue::new("gen_ai.provider.name", genai),
                KeyValue::new("gen_ai.request.model", target.upstream_model.clone()),
                KeyValue::new("llm_gateway.provider", provider.compiled.name.clone()),
                KeyValue::new("llm_gateway.attempt", i64::from(attempt)),
            ]
        };
        let name = || format!("{operation} {}", target.upstream_model);
        crate::traces::client_span(name, attributes)
    }

    /// The breaker admission and bulkhead slot to call `target` with, or `None` (the skip
    /// recorded in `tally`) when it cannot serve now.
    fn admit(
        &self,
        provider: &ProviderRuntime,
        target: &CompiledTarget,
        target_state: &Arc<TargetState>,
        tally: &mut Tally<'s>,
    ) -> Option<(Admission, ProviderPermit)> {
        let name = provider.compiled.name.as_str();
        let model = target.upstream_model.as_str();
        if let Some(reason) = &provider.compiled.unavailable {
            tally.skip(format!("{name}: {reason}"), None);
            return None;
        }
        if exceeds_context(self.request, provider, model) {
            let reason = format!("{name}/{model}: input exceeds the context window");
            tally.skip(reason, None);
            return None;
        }
        if let Some(wait) = target_state.cooling_for() {
            tally.cooling = true;
            let reason = format!("{name}/{model}: cooling down after Retry-After");
            tally.skip(reason, Some(wait));
            return None;
        }
        let Some(admission) = target_state.admit(self.state.settings.breakers_enabled) else {
            let wait = target_state.retry_in().unwrap_or(Duration::from_secs(1));
            tally.skip(format!("{name}/{model}: circuit breaker open"), Some(wait));
            return None;
        };
        let Some(permit) = provider
            .bulkhead
            .try_acquire(provider.compiled.max_concurrency)
        else {
            let reason = format!("{name}: at maxConcurrency");
            tally.skip(reason, Some(Duration::from_secs(1)));
            return None;
        };
        Some((admission, permit))
    }

    /// Whether one more call may go out after `attempts` calls: within the attempt count, and
    /// for a retry within the budget and the deadline, after the backoff (waited here).
    async fn may_call(&self, attempts: u32) -> bool {
        if attempts >= self.max_attempts {
            return false;
        }
        if attempts == 0 {
            return true;
        }
        let model = &self.route.compiled.model;
        if !self.route.budget.withdraw() {
            count(self.state, model, "budget_exhausted");
            return false;
        }
        count(self.state, model, "retried");
        let pause = backoff(self.retry, attempts);
        if Instant::now() + pause >= self.deadline {
            return false;
        }
        tokio::time::sleep(pause).await;
        true
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

/// Whether the request's input (about four bytes a token) exceeds the target's context window.
fn exceeds_context(request: &ClientRequest, provider: &ProviderRuntime, model: &str) -> bool {
    let window = provider
        .compiled
        .model(model)
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
