//! Admission of one request: build its demand (caller and route limits, budget, usage),
//! decide it in the limiter, and hand back a [`Reservation`] that settles when the response
//! body is dropped, plus the `x-ratelimit-*` headers to send.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use http::HeaderMap;

use super::auth::Caller;
use crate::config::{RouteRuntime, Snapshot};
use crate::error::ApiError;
use crate::limits::demand::{CallerAccount, TokenReserve};
use crate::limits::limiter::Store;
use crate::limits::meter::Price;
use crate::limits::reservation::CallerLabel;
use crate::limits::{Demand, Meter, Reservation, Verdict, headers};
use crate::request::ClientRequest;
use crate::state::AppState;

/// An admitted request.
#[derive(Debug)]
pub struct Admitted {
    reservation: Option<Reservation>,
    headers: HeaderMap,
}

impl Admitted {
    /// Stamps the rate-limit headers and ties the reservation to the response body.
    pub fn attach(self, mut response: Response) -> Response {
        response.headers_mut().extend(self.headers);
        match self.reservation {
            Some(reservation) => crate::proxy::hold_until_body_ends(response, reservation),
            None => response,
        }
    }
}

/// Decides whether `caller` may send a request that generates nothing (a token count) to
/// `route` now: it is held to the request rates and concurrency that apply, and reserves and
/// counts no tokens, spend or usage.
pub async fn admit_request_only(
    state: &AppState,
    caller: Option<&Caller<'_>>,
    route: &RouteRuntime,
) -> Result<Admitted, ApiError> {
    let account = caller.map(Caller::account);
    let caller_account = caller_account(caller, account.as_deref());
    let reserve = TokenReserve {
        prompt: 0,
        completion: 0,
        asked: true,
    };
    let demand = Demand::build(
        caller_account,
        &route.compiled.model,
        route.compiled.limits.as_ref(),
        reserve,
        Price::default(),
        crate::proxy::DEFAULT_ROUTE_TIMEOUT,
    );
    decide(state, demand.requests_only(), &Arc::default(), None).await
}

/// Decides whether `caller` may send `request` to `route` now.
pub async fn admit(
    state: &AppState,
    snapshot: &Snapshot,
    caller: Option<&Caller<'_>>,
    label: Option<Arc<CallerLabel>>,
    route: &RouteRuntime,
    request: &ClientRequest,
    meter: &Arc<Meter>,
) -> Result<Admitted, ApiError> {
    let account = caller.map(Caller::account);
    let caller_account = caller_account(caller, account.as_deref());
    let max_price = if caller.is_some_and(Caller::has_budget) {
        route_max_price(snapshot, route)
    } else {
        Price::default()
    };
    let lease_ttl = route
        .compiled
        .timeout
        .map_or(crate::proxy::DEFAULT_ROUTE_TIMEOUT, |t| t.get())
        + Duration::from_secs(5);
    // The completion reserve matters only to token limits and budgets; the catalogue walk is
    // skipped for every other request.
    let reserves_completion = caller.is_some_and(|c| c.has_budget() || c.has_token_limit())
        || route
            .compiled
            .limits
            .as_ref()
            .is_some_and(|limits| limits.tokens_per_minute.is_some());
    let output_cap = reserves_completion
        .then(|| route_output_cap(snapshot, route))
        .flatten();
    let demand = Demand::build(
        caller_account,
        &route.compiled.model,
        route.compiled.limits.as_ref(),
        TokenReserve::of(request, output_cap),
        max_price,
        lease_ttl,
    );
    decide(state, demand, meter, label).await
}

/// The limiter's view of `caller`, kept under `account`.
fn caller_account<'a>(
    caller: Option<&'a Caller<'_>>,
    account: Option<&'a str>,
) -> Option<CallerAccount<'a>> {
    caller.zip(account).map(|(c, account)| CallerAccount {
        account,
        limits: c.limits(),
        budget: c.budget(),
        quotas: c.quotas(),
    })
}

/// Decides `demand` in the limiter.
async fn decide(
    state: &AppState,
    mut demand: Demand,
    meter: &Arc<Meter>,
    label: Option<Arc<CallerLabel>>,
) -> Result<Admitted, ApiError> {
    if demand.is_empty() {
        meter.admitted(demand.prompt_estimate, false);
        return Ok(Admitted {
            reservation: None,
            headers: HeaderMap::new(),
        });
    }
    let (store, verdict) = state
        .limiter
        .admit(&mut demand)
        .await
        .map_err(|_| ApiError::LimiterUnavailable)?;
    if crate::traces::recording() {
        annotate_decision(store, &verdict);
    }
    let statuses = match verdict {
        Verdict::Admitted(statuses) => statuses,
        Verdict::Refused { what, retry_after } => {
            return Err(headers::refusal(&demand, what, retry_after));
        }
    };
    let mut rate_headers = HeaderMap::new();
    headers::stamp(&mut rate_headers, &demand, &statuses);
    meter.admitted(demand.prompt_estimate, true);
    let reservation = Reservation::new(
        state.limiter.clone(),
        state.metrics.clone(),
        store,
        demand,
        meter.clone(),
        label,
    );
    Ok(Admitted {
        reservation: Some(reservation),
        headers: rate_headers,
    })
}

/// Puts the limiter's decision on the request's server span (the current context).
fn annotate_decision(store: Store, verdict: &Verdict) {
    use opentelemetry::KeyValue;
    let decision = match verdict {
        Verdict::Admitted(_) => "admitted",
        Verdict::Refused { .. } => "refused",
    };
    let store = match store {
        Store::Redis => "redis",
        Store::Local => "local",
    };
    let attributes = [
        KeyValue::new("llm_gateway.limiter.decision", decision),
        KeyValue::new("llm_gateway.limiter.store", store),
    ];
    crate::traces::annotate(&opentelemetry::Context::current(), || attributes);
}

/// Every target the request may reach: the route's and its fallbacks' (admission reserves for
/// the worst of them, since the target is picked later).
fn reachable_targets<'s>(
    snapshot: &'s Snapshot,
    route: &'s RouteRuntime,
) -> impl Iterator<Item = (&'s llm_gateway_crds::compiled::CompiledProvider, &'s str)> {
    let fallbacks = route
        .compiled
        .fallbacks
        .iter()
        .filter_map(|model| snapshot.routes.get(model));
    std::iter::once(route)
        .chain(fallbacks)
        .flat_map(|r| &r.compiled.targets)
        .map(|target| {
            let provider = &snapshot.providers[target.provider].compiled;
            (provider, target.upstream_model.as_str())
        })
}

/// The highest catalogue prices among the reachable targets.
fn route_max_price(snapshot: &Snapshot, route: &RouteRuntime) -> Price {
    reachable_targets(snapshot, route)
        .map(|(provider, model)| Price::of(provider.model(model)))
        .fold(Price::default(), Price::max)
}

/// The largest completion any reachable target may produce, when every one of them lists its
/// maximum in the catalogue (a target without one could produce any amount).
fn route_output_cap(snapshot: &Snapshot, route: &RouteRuntime) -> Option<u32> {
    reachable_targets(snapshot, route)
        .map(|(provider, model)| provider.max_output_tokens(model))
        .try_fold(0, |cap, max| max.map(|m| cap.max(m)))
}
