//! OpenAI and OpenAI-compatible upstreams: pass-through.
//!
//! The client body goes upstream unchanged except for the `model` value when the route maps
//! it; the response body (JSON or SSE) comes back unchanged. Only allowlisted client headers
//! are forwarded, and the client's own credential never is: the provider's is added instead.

use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};

use super::Call;
use super::sse::Relay;
use crate::error::ApiError;
use crate::openai::UsageEnvelope;

/// Client headers passed upstream; everything else (credentials, cookies, hop-by-hop,
/// forwarding headers) stays at the gateway.
const FORWARDED_HEADERS: [HeaderName; 3] = [
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
];

/// Forwards a chat completion request.
pub async fn chat(call: Call<'_>) -> Result<Response, ApiError> {
    let compiled = &call.provider.compiled;
    let base = compiled.base_url.as_deref().unwrap_or_default();
    let mut request = call
        .provider
        .client
        .post(format!("{base}/chat/completions"))
        .header(header::CONTENT_TYPE, "application/json")
        .body(call.request.with_model(&call.target.upstream_model));
    for name in &FORWARDED_HEADERS {
        if let Some(value) = call.client_headers.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(id) = call.client_headers.get("x-request-id") {
        request = request.header("x-request-id", id);
    }
    if let Some(credential) = &compiled.credential {
        request = request.bearer_auth(credential.expose());
    }
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
    let remaining = timeouts.total.get().saturating_sub(call.started.elapsed());
    let status = response.status();
    let is_sse = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if status.is_success() && is_sse {
        let relay = Relay::new(response.bytes_stream(), call.accounting(), remaining);
        return Ok(sse_response(Body::from_stream(relay)));
    }
    let headers = response.headers().clone();
    let body = match tokio::time::timeout(remaining, response.bytes()).await {
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
    if let Ok(UsageEnvelope { usage: Some(usage) }) = serde_json::from_slice::<UsageEnvelope>(&body)
    {
        call.accounting().usage(usage);
    }
    Ok(json_response(status, body))
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

fn json_response(status: StatusCode, body: Bytes) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
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
    tracing::warn!(provider, error = %error, "upstream request failed");
    ApiError::Upstream {
        status: StatusCode::BAD_GATEWAY,
        message: format!("{what} upstream {provider}"),
        retry_after: None,
    }
}

/// Maps an upstream error status. Client mistakes the upstream caught (400, 413, 422) and
/// rate limits (429, with `Retry-After`) pass through with the upstream message; anything
/// else is the gateway's problem, a 502 that does not echo the upstream body (a provider's 401
/// message can quote part of the provider key).
fn upstream_error(
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
    match status.as_u16() {
        400 | 413 | 422 | 429 => ApiError::Upstream {
            status,
            message: upstream_message
                .unwrap_or_else(|| format!("upstream {provider} answered {status}")),
            retry_after: headers.get(header::RETRY_AFTER).cloned(),
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
