//! `ApiError`: every error a client sees, rendered as OpenAI-style JSON with the right status.
//!
//! `{"error": {"message", "type", "param", "code"}}` is what the official SDKs parse into typed
//! exceptions, so every failure path funnels through [`ApiError::into_response`]. The metric
//! label comes from the variant ([`ApiError::label`]), never from the message, and is sent as
//! the reason code in [`REASON_HEADER`] with every error the gateway answers.

use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::json;

/// The header naming why the gateway refused or failed a request, whatever the body's API
/// shape (OpenAI, Anthropic, Gemini): one of the codes `docs/runbook.md` lists.
pub const REASON_HEADER: &str = "x-llm-gateway-reason";

/// A failure answered to the client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON or a field has the wrong type or value.
    #[error("{message}")]
    InvalidRequest {
        /// Human-readable reason.
        message: String,
        /// The offending parameter, when known.
        param: Option<String>,
    },
    /// The body exceeds the configured limit.
    #[error("request body exceeds the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// No credential, or a key or token that is malformed, unknown, disabled, expired or fails
    /// verification. One message for all, so a caller cannot probe which keys exist.
    #[error(
        "invalid credentials; send an API key or token as 'Authorization: Bearer <credential>' (or 'x-api-key: <key>' on /v1/messages)"
    )]
    InvalidApiKey,
    /// The key may not call this model.
    #[error("this API key is not allowed to use model '{model}'")]
    ModelNotAllowed {
        /// The requested route model.
        model: String,
    },
    /// No route serves this model.
    #[error("the model '{model}' does not exist or you do not have access to it")]
    ModelNotFound {
        /// The requested model.
        model: String,
    },
    /// Every target of the route is unavailable (e.g. a missing credential).
    #[error("{message}")]
    ServiceUnavailable {
        /// Why, naming the providers (never a credential).
        message: String,
        /// Hint for the client.
        retry_after: Option<Duration>,
    },
    /// No kept response of this caller has this id.
    #[error(
        "response '{id}' is not kept by this gateway: it expired, belongs to another caller, was stored with store: false, was kept by another replica, or was answered by an upstream that keeps its own"
    )]
    ResponseNotFound {
        /// The id asked for (at most 64 characters of it).
        id: String,
    },
    /// No endpoint at this path (405: none for this method).
    #[error("{method} on this path is not an endpoint of this API")]
    UnknownEndpoint {
        /// The request method. (The path is not echoed: a client that put a credential in it
        /// should not find it in a response or a log.)
        method: http::Method,
        /// Whether the path exists with another method.
        other_method: bool,
    },
    /// The gateway has no configuration loaded yet.
    #[error("the gateway has no configuration loaded yet")]
    NotReady,
    /// The upstream failed or answered something unusable.
    #[error("{message}")]
    Upstream {
        /// The status to answer with (502, or an upstream 4xx/429 passed on).
        status: StatusCode,
        /// What went wrong.
        message: String,
        /// Upstream `Retry-After`, kept for the client.
        retry_after: Option<HeaderValue>,
    },
    /// The upstream did not answer in time.
    #[error("{0}")]
    UpstreamTimeout(String),
    /// The upstream's reply is larger than `MAX_UPSTREAM_BODY_BYTES`: a 502 that is neither
    /// retried (the provider has already billed the call) nor a sign of an unhealthy upstream.
    #[error("{0}")]
    UpstreamReplyTooLarge(String),
    /// No target was called because those that could serve are cooling down after an upstream
    /// 429's `Retry-After`: answered as the provider's own 429 would be, so SDKs back off the
    /// same way instead of treating the gateway as down.
    #[error("{message}")]
    UpstreamRateLimited {
        /// The route and why each target was skipped.
        message: String,
        /// The soonest a target may serve again.
        retry_after: Duration,
    },
    /// A rate or concurrency limit of the caller or route is reached.
    #[error("{message}")]
    RateLimited {
        /// Which limit, and its value.
        message: String,
        /// `requests`, `tokens` or `concurrency` (the OpenAI error `type` uses the first two).
        limit: &'static str,
        /// When the request would fit.
        retry_after: Duration,
    },
    /// The caller's budget for the period is spent.
    #[error("{message}")]
    BudgetExceeded {
        /// The budget and when it starts over.
        message: String,
        /// Time until the next period.
        retry_after: Duration,
    },
    /// An LlmQuota's caps hold the key back: it grants more than its namespace may.
    #[error(
        "this API key is held back by the LlmQuota {quota}: {reason}; ask the namespace's \
         platform team to raise the quota or change the key"
    )]
    KeyOverQuota {
        /// `namespace/name` of the LlmQuota.
        quota: String,
        /// What the key grants that the caps do not allow.
        reason: String,
    },
    /// Limits cannot be checked (Redis unreachable with `failClosed`).
    #[error("rate limits cannot be checked right now (Redis is unreachable); retry shortly")]
    LimiterUnavailable,
}

impl ApiError {
    /// Shorthand for a 400 naming a parameter.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            param: param.map(str::to_owned),
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest { .. } => StatusCode::BAD_REQUEST,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidApiKey => StatusCode::UNAUTHORIZED,
            Self::ModelNotAllowed { .. } | Self::KeyOverQuota { .. } => StatusCode::FORBIDDEN,
            Self::ModelNotFound { .. } | Self::ResponseNotFound { .. } => StatusCode::NOT_FOUND,
            Self::UnknownEndpoint {
                other_method: true, ..
            } => StatusCode::METHOD_NOT_ALLOWED,
            Self::UnknownEndpoint { .. } => StatusCode::NOT_FOUND,
            Self::ServiceUnavailable { .. } | Self::NotReady => StatusCode::SERVICE_UNAVAILABLE,
            Self::Upstream { status, .. } => *status,
            Self::UpstreamReplyTooLarge(_) => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::RateLimited { .. }
            | Self::BudgetExceeded { .. }
            | Self::UpstreamRateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::LimiterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// Bounded metric label for `llm_requests_errors_total{type}`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. } => "invalid_request",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::InvalidApiKey => "invalid_api_key",
            Self::ModelNotAllowed { .. } => "model_not_allowed",
            Self::KeyOverQuota { .. } => "key_over_quota",
            Self::ModelNotFound { .. } => "model_not_found",
            Self::UnknownEndpoint { .. } => "unknown_endpoint",
            Self::ResponseNotFound { .. } => "response_not_found",
            Self::ServiceUnavailable { .. } => "service_unavailable",
            Self::NotReady => "not_ready",
            Self::Upstream { .. } => "upstream_error",
            Self::UpstreamTimeout(_) => "upstream_timeout",
            Self::UpstreamReplyTooLarge(_) => "upstream_reply_too_large",
            Self::UpstreamRateLimited { .. } => "upstream_rate_limited",
            Self::RateLimited { .. } => "rate_limited",
            Self::BudgetExceeded { .. } => "budget_exceeded",
            Self::LimiterUnavailable => "limiter_unavailable",
        }
    }

    fn error_type(&self) -> &'static str {
        match self {
            Self::InvalidRequest { .. }
            | Self::PayloadTooLarge { .. }
            | Self::ModelNotFound { .. }
            | Self::UnknownEndpoint { .. }
            | Self::ResponseNotFound { .. } => "invalid_request_error",
            Self::InvalidApiKey => "authentication_error",
            Self::ModelNotAllowed { .. } | Self::KeyOverQuota { .. } => "permission_error",
            Self::ServiceUnavailable { .. } | Self::NotReady => "service_unavailable",
            Self::Upstream { status, .. } if *status == StatusCode::TOO_MANY_REQUESTS => {
                "rate_limit_error"
            }
            Self::UpstreamRateLimited { .. } => "rate_limit_error",
            Self::Upstream { .. } | Self::UpstreamTimeout(_) | Self::UpstreamReplyTooLarge(_) => {
                "upstream_error"
            }
            Self::RateLimited { limit, .. } => match *limit {
                "requests" | "tokens" => limit,
                _ => "rate_limit_error",
            },
            Self::BudgetExceeded { .. } => "insufficient_quota",
            Self::LimiterUnavailable => "service_unavailable",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            Self::InvalidApiKey => Some("invalid_api_key"),
            Self::ModelNotFound { .. } => Some("model_not_found"),
            Self::ResponseNotFound { .. } => Some("response_not_found"),
            Self::ModelNotAllowed { .. } => Some("model_not_allowed"),
            Self::KeyOverQuota { .. } => Some("key_over_quota"),
            Self::PayloadTooLarge { .. } => Some("request_too_large"),
            Self::UpstreamTimeout(_) => Some("upstream_timeout"),
            Self::UpstreamReplyTooLarge(_) => Some("upstream_reply_too_large"),
            Self::RateLimited { .. } | Self::UpstreamRateLimited { .. } => {
                Some("rate_limit_exceeded")
            }
            Self::BudgetExceeded { .. } => Some("insufficient_quota"),
            Self::LimiterUnavailable => Some("rate_limiter_unavailable"),
            _ => None,
        }
    }

    /// The OpenAI-style error body.
    pub fn body(&self) -> serde_json::Value {
        let param = match self {
            Self::InvalidRequest { param, .. } => param.as_deref(),
            Self::ModelNotFound { .. } | Self::ModelNotAllowed { .. } => Some("model"),
            _ => None,
        };
        json!({"error": {
            "message": self.to_string(),
            "type": self.error_type(),
            "param": param,
            "code": self.code(),
        }})
    }
}

impl ApiError {
    /// The Anthropic Messages API error type for this error's status.
    fn anthropic_type(&self) -> &'static str {
        match self.status().as_u16() {
            400 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 | 405 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            _ => "api_error",
        }
    }

    /// The error in the Anthropic Messages API's shape, for `/v1/messages` clients.
    pub fn into_anthropic_response(self) -> Response {
        let body = json!({"type": "error", "error": {"type": self.anthropic_type(), "message": self.to_string()}});
        self.respond(body)
    }

    fn respond(self, body: serde_json::Value) -> Response {
        let mut response = (self.status(), Json(body)).into_response();
        let retry_after = match &self {
            Self::ServiceUnavailable {
                retry_after: Some(d),
                ..
            } => HeaderValue::from_str(&d.as_secs().max(1).to_string()).ok(),
            Self::RateLimited { retry_after, .. }
            | Self::BudgetExceeded { retry_after, .. }
            | Self::UpstreamRateLimited { retry_after, .. } => Some(HeaderValue::from(
                retry_after.as_secs_f64().ceil().max(1.0) as u64,
            )),
            Self::LimiterUnavailable => Some(HeaderValue::from_static("1")),
            Self::Upstream { retry_after, .. } => retry_after.clone(),
            _ => None,
        };
        if let Some(value) = retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        let reason = HeaderValue::from_static(self.label());
        response.headers_mut().insert(REASON_HEADER, reason);
        response.extensions_mut().insert(ErrorLabel(self.label()));
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = self.body();
        self.respond(body)
    }
}

/// Response extension carrying the error label, so the access log and metrics middleware
/// count errors once without re-parsing bodies.
#[derive(Clone, Copy, Debug)]
pub struct ErrorLabel(pub &'static str);
