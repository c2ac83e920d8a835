//! OpenAI-style `x-ratelimit-*` response headers, and the errors of refused requests.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};

use super::demand::Demand;
use super::{RateKind, RateStatus, Refused, Scope};
use crate::error::ApiError;

/// Adds `x-ratelimit-{limit,remaining,reset}-{requests,tokens}` for the tightest bucket of each
/// kind (the one with the fewest units left).
pub fn stamp(headers: &mut HeaderMap, demand: &Demand, statuses: &[RateStatus]) {
    for kind in [RateKind::Requests, RateKind::Tokens] {
        let tightest = demand
            .rates
            .iter()
            .zip(statuses)
            .filter(|(rate, _)| rate.kind == kind)
            .min_by_key(|(_, status)| status.remaining);
        let Some((rate, status)) = tightest else {
            continue;
        };
        let suffix = kind.header_suffix();
        for (name, value) in [
            ("limit", HeaderValue::from(rate.limit)),
            ("remaining", HeaderValue::from(status.remaining)),
            ("reset", duration_value(status.reset)),
        ] {
            if let Ok(name) = HeaderName::try_from(format!("x-ratelimit-{name}-{suffix}")) {
                headers.insert(name, value);
            }
        }
    }
}

/// OpenAI's reset format: `20ms`, `1.5s`, `6m0s`.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    let mut out = String::new();
    if millis < 1000 {
        let _ = write!(out, "{millis}ms");
    } else if millis < 60_000 {
        let seconds = duration.as_secs_f64();
        let _ = write!(out, "{}s", (seconds * 1000.0).round() / 1000.0);
    } else {
        let seconds = duration.as_secs();
        let _ = write!(out, "{}m{}s", seconds / 60, seconds % 60);
    }
    out
}

fn duration_value(duration: Duration) -> HeaderValue {
    HeaderValue::from_str(&format_duration(duration)).unwrap_or(HeaderValue::from_static("0s"))
}

/// The client error for a refusal by `what`.
pub fn refusal(demand: &Demand, what: Refused, retry_after: Option<Duration>) -> ApiError {
    let whose = |scope: Scope, key: &str| match scope {
        Scope::Caller => "this API key".to_owned(),
        Scope::Route => "this model (shared by all callers)".to_owned(),
        Scope::Quota => format!("the LlmQuota {} (shared by its callers)", quota_of(key)),
    };
    match what {
        Refused::Rate(index) => {
            let Some(rate) = demand.rates.get(index) else {
                return ApiError::LimiterUnavailable;
            };
            let unit = rate.kind.header_suffix();
            let Some(retry_after) = retry_after else {
                return ApiError::invalid(
                    format!(
                        "this request reserves {} tokens (prompt estimate plus max_tokens), more than the limit of {} tokens per minute for {}; lower max_tokens",
                        rate.cost,
                        rate.limit,
                        whose(rate.scope, &rate.key)
                    ),
                    Some("max_tokens"),
                );
            };
            ApiError::RateLimited {
                message: format!(
                    "rate limit of {} {unit} per minute reached for {}; retry after {}",
                    rate.limit,
                    whose(rate.scope, &rate.key),
                    format_duration(retry_after)
                ),
                limit: unit,
                retry_after,
            }
        }
        Refused::Slots(index) => ApiError::RateLimited {
            message: format!(
                "limit of {} concurrent requests reached for {}",
                demand.slots.get(index).map_or(0, |s| s.limit),
                demand
                    .slots
                    .get(index)
                    .map_or_else(String::new, |s| whose(s.scope, &s.key))
            ),
            limit: "concurrency",
            retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
        },
        Refused::Budget(index) => {
            let Some(account) = demand.accounts.get(index) else {
                return ApiError::LimiterUnavailable;
            };
            let budget = account.budget.map_or(0.0, |b| b.limit_nanos as f64 / 1e9);
            let period = &account.usage.period;
            let whose = match &account.quota {
                None => "the budget".to_owned(),
                Some(quota) => format!("the shared budget of the LlmQuota {quota}"),
            };
            ApiError::BudgetExceeded {
                message: format!(
                    "{whose} of ${budget:.2} for this period is spent; it starts over at {}",
                    period.end
                ),
                retry_after: period.remaining(jiff::Timestamp::now()),
            }
        }
    }
}

/// `namespace/name` of the quota a store key (`lgw:{quota:<namespace>/<name>}:<limit>`) is of.
fn quota_of(key: &str) -> &str {
    let rest = key.split_once("{quota:").map_or(key, |(_, rest)| rest);
    rest.split_once('}').map_or(rest, |(quota, _)| quota)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_look_like_openai_s() {
        assert_eq!(format_duration(Duration::from_millis(20)), "20ms");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1.5s");
        assert_eq!(format_duration(Duration::from_secs(360)), "6m0s");
    }
}
