//! HTTP plumbing shared by every adapter: send with the first-byte timeout, read with the
//! total deadline, and map upstream failures to client errors.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::Call;
use crate::error::ApiError;

/// What came back from an upstream that answered successfully.
#[derive(Debug)]
pub enum Reply {
    /// A `text/event-stream` body, not yet read.
    Stream(reqwest::Response),
    /// A complete body.
    Body(StatusCode, Bytes),
}

/// Sends `request` and reads the reply: an SSE body is left unread, anything else is read
/// within the total deadline; error statuses become [`ApiError`]s.
pub async fn exchange(
    call: &Call<'_>,
    request: reqwest::RequestBuilder,
) -> Result<Reply, ApiError> {
    let compiled = &call.provider.compiled;
    let timeouts = &compiled.timeouts;
    let response = match tokio::time::timeout(timeouts.first_byte.get(), request.send()).await {
        Err(_) => {
            return Err(timeout(
                &compiled.name,
                "send response headers",
                timeouts.first_byte.get(),
            ));
        }
        Ok(Err(e)) => return Err(send_error(&compiled.name, &e)),
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if status.is_success() && is_sse {
        return Ok(Reply::Stream(response));
    }
    let headers = response.headers().clone();
    let body = match tokio::time::timeout(remaining(call), response.bytes()).await {
        Err(_) => {
            return Err(timeout(
                &compiled.name,
                "send the response body",
                timeouts.total.get(),
            ));
        }
        Ok(Err(e)) => return Err(send_error(&compiled.name, &e)),
        Ok(Ok(body)) => body,
    };
    if !status.is_success() {
        return Err(upstream_error(&compiled.name, status, &headers, &body));
    }
    Ok(Reply::Body(status, body))
}

/// Time left before the call's total deadline.
pub fn remaining(call: &Call<'_>) -> Duration {
    call.provider
        .compiled
        .timeouts
        .total
        .get()
        .saturating_sub(call.started.elapsed())
}

/// A 200 SSE response with the headers proxies need to not buffer it.
pub fn sse_response(body: Body) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (
                HeaderName::from_static("x-accel-buffering"),
                HeaderValue::from_static("no"),
            ),
        ],
        body,
    )
        .into_response()
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: impl Into<Body>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.into(),
    )
        .into_response()
}

/// An upstream body that could not be understood.
pub fn undecodable(provider: &str, error: &serde_json::Error) -> ApiError {
    tracing::warn!(provider, error = %error, "undecodable upstream response");
    ApiError::Upstream {
        status: StatusCode::BAD_GATEWAY,
        message: format!("upstream {provider} sent a response the gateway could not decode"),
        retry_after: None,
    }
}

fn timeout(provider: &str, what: &str, limit: Duration) -> ApiError {
    ApiError::UpstreamTimeout(format!(
        "upstream {provider} did not {what} within {}ms",
        limit.as_millis()
    ))
}

fn send_error(provider: &str, error: &reqwest::Error) -> ApiError {
    if error.is_timeout() {
        return ApiError::UpstreamTimeout(format!("upstream {provider} timed out"));
    }
    let what = if error.is_connect() {
        "cannot connect to"
    } else {
        "request failed at"
    };
    let cause = std::error::Error::source(error)
        .map(ToString::to_string)
        .unwrap_or_default();
    tracing::warn!(provider, error = %error, %cause, "upstream request failed");
    ApiError::Upstream {
        status: StatusCode::BAD_GATEWAY,
        message: format!("{what} upstream {provider}"),
        retry_after: None,
    }
}

/// Maps an upstream error status. Client mistakes the upstream caught (400, 413, 422) and
/// rate limits (429, with `Retry-After`) pass through with the upstream message (OpenAI,
/// Anthropic and Gemini all put it at `/error/message`); overload (503, Anthropic's 529) is a
/// retryable 503; anything else is a 502 that does not echo the upstream body (a provider's
/// 401 message can quote part of the provider key).
pub fn upstream_error(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ApiError {
    let upstream_message = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(|m| m.as_str())
                .map(str::to_owned)
        });
    let retry_after = headers.get(header::RETRY_AFTER).cloned();
    match status.as_u16() {
        400 | 413 | 422 | 429 => ApiError::Upstream {
            status,
            message: upstream_message
                .unwrap_or_else(|| format!("upstream {provider} answered {status}")),
            retry_after,
        },
        503 | 529 => ApiError::Upstream {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "upstream {provider} is overloaded (HTTP {})",
                status.as_u16()
            ),
            retry_after,
        },
        _ => {
            tracing::warn!(
                provider,
                status = status.as_u16(),
                "upstream answered an error"
            );
            ApiError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: format!("upstream {provider} answered HTTP {}", status.as_u16()),
                retry_after: None,
            }
        }
    }
}
