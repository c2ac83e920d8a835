//! How a failed attempt is judged: whether it is retried, whether it counts against the
//! upstream's breaker, whether it cools the target down; and how long to wait before the next.

use std::time::Duration;

use http::StatusCode;
use llm_gateway_crds::policy::{Retry, RetryOn};

use crate::error::ApiError;
use crate::targets::TargetState;

/// Cools the target down for an upstream 429's `Retry-After` (whole seconds), so no request,
/// this one's later passes included, calls it before the provider asked.
pub(super) fn honour_retry_after(error: &ApiError, target_state: &TargetState) {
    if let ApiError::Upstream {
        status: StatusCode::TOO_MANY_REQUESTS,
        retry_after: Some(v),
        ..
    } = error
        && let Some(seconds) = v.to_str().ok().and_then(|s| s.trim().parse::<u64>().ok())
    {
        target_state.cool_down(Duration::from_secs(seconds));
    }
}

/// Exponential backoff with "equal jitter": half the delay fixed, half random.
pub(super) fn backoff(retry: &Retry, attempt: u32) -> Duration {
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
pub(super) fn counts_against_upstream(error: &ApiError) -> bool {
    match error {
        ApiError::UpstreamTimeout(_) => true,
        ApiError::Upstream { status, .. } => status.is_server_error(),
        _ => false,
    }
}

/// Whether the retry policy's `on` list covers this failure.
pub(super) fn is_retryable(error: &ApiError, on: &[RetryOn]) -> bool {
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
