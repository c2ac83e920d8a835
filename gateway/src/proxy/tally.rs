//! What the resilience loop saw so far, for the answer when no target gave one.

use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;

use crate::error::ApiError;

/// What the loop saw so far, for the answer when no target gave one.
#[derive(Default)]
pub(super) struct Tally<'s> {
    /// Upstream calls made.
    pub(super) attempts: u32,
    /// Why targets were skipped (each reason once, however many passes saw it).
    pub(super) skipped: Vec<String>,
    /// The soonest a skipped target may serve again.
    pub(super) soonest: Option<Duration>,
    /// Whether a target was skipped because it is cooling down after a `Retry-After`.
    pub(super) cooling: bool,
    /// The last retryable failure and its provider.
    pub(super) last: Option<(ApiError, &'s Arc<str>)>,
    /// The first refusal (a target that cannot serve this request) and its provider.
    refused: Option<(ApiError, &'s Arc<str>)>,
    /// Targets skipped for any other reason than a refusal.
    unavailable: usize,
}

impl<'s> Tally<'s> {
    /// Records a skipped target and how soon it may serve again, if known.
    pub(super) fn skip(&mut self, reason: String, wait: Option<Duration>) {
        self.unavailable += 1;
        self.note(reason, wait);
    }

    /// Records a target that cannot serve this request (see `pipeline::prepare`).
    pub(super) fn refuse(&mut self, refusal: ApiError, provider: &'s Arc<str>) {
        self.note(format!("{provider}: {refusal}"), None);
        self.refused.get_or_insert((refusal, provider));
    }

    fn note(&mut self, reason: String, wait: Option<Duration>) {
        if crate::traces::recording() {
            use opentelemetry::trace::TraceContextExt;
            let attribute = opentelemetry::KeyValue::new("llm_gateway.reason", reason.clone());
            let context = opentelemetry::Context::current();
            context
                .span()
                .add_event("llm_gateway.target_skipped", vec![attribute]);
        }
        if let Some(wait) = wait {
            self.soonest = Some(self.soonest.map_or(wait, |s| s.min(wait)));
        }
        if !self.skipped.contains(&reason) {
            self.skipped.push(reason);
        }
    }

    /// The answer when no target gave one: the last retryable failure; else the first refusal
    /// when every target refused the request (it cannot be served as sent); else, targets
    /// having been skipped, 429 while one cools down after an upstream `Retry-After` (so SDKs
    /// back off as they do for the provider's own 429), 503 otherwise (naming the refusals
    /// too).
    pub(super) fn finish(self, model: &str) -> (Result<Response, ApiError>, Option<&'s Arc<str>>) {
        if let Some((error, name)) = self.last {
            return (Err(error), Some(name));
        }
        if let Some((refusal, name)) = self.refused
            && self.unavailable == 0
        {
            return (Err(refusal), Some(name));
        }
        let reasons = self.skipped.join("; ");
        let error = match self.soonest {
            Some(retry_after) if self.cooling => {
                let message = format!("model '{model}' is rate limited upstream ({reasons})");
                ApiError::UpstreamRateLimited {
                    message,
                    retry_after,
                }
            }
            retry_after => ApiError::ServiceUnavailable {
                message: format!("no target can serve model '{model}' now ({reasons})"),
                retry_after,
            },
        };
        (Err(error), None)
    }
}
