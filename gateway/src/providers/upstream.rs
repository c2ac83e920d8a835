//! HTTP plumbing shared by every adapter: send with the first-byte timeout, read with the
//! total deadline and the body cap, and map upstream failures to client errors.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::stream::BoxStream;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use super::Call;
use crate::error::ApiError;
use crate::sanitize::sanitize;
use crate::upstream_http::{Error as TransportError, UpstreamBody};

/// Default of `MAX_UPSTREAM_BODY_BYTES`. A chat completion is kilobytes; the largest replies
/// are embeddings: OpenAI's biggest batch (2048 inputs) of 3072-dimension vectors in base64,
/// the official SDKs' default encoding, is about 33.7 MB, just over 32 MiB, so the default is
/// twice that. (The same batch as JSON floats is about 88 MB: raise the cap for it.) Reading a
/// capped reply costs up to twice its size for a moment (chunks, then one contiguous copy).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub use crate::sse::DEFAULT_MAX_EVENT_BYTES;

/// Caps on what one upstream reply may make the gateway hold in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Largest non-streamed reply body read whole (`MAX_UPSTREAM_BODY_BYTES`).
    pub body_bytes: usize,
    /// Largest SSE event a translated stream assembles (`MAX_UPSTREAM_EVENT_BYTES`).
    pub event_bytes: usize,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        Self {
            body_bytes: DEFAULT_MAX_BODY_BYTES,
            event_bytes: DEFAULT_MAX_EVENT_BYTES,
        }
    }
}

/// What came back from an upstream that answered successfully.
pub enum Reply {
    /// A `text/event-stream` body, not yet read.
    Stream(http::Response<UpstreamBody>),
    /// Events the gateway makes itself (the fake provider), in the hub's format.
    Events(BoxStream<'static, Result<Bytes, Infallible>>),
    /// A complete body.
    Body(StatusCode, Bytes),
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Stream(response) => f.debug_tuple("Stream").field(response).finish(),
            Self::Events(_) => f.write_str("Events"),
            Self::Body(status, body) => f.debug_tuple("Body").field(status).field(body).finish(),
        }
    }
}

/// Sends `request` and reads the reply: an SSE body is left unread, anything else is read
/// within the total deadline and up to the call's body cap; error statuses become
/// [`ApiError`]s.
pub async fn exchange(
    call: &Call<'_>,
    request: reqwest::RequestBuilder,
) -> Result<Reply, ApiError> {
    let compiled = &call.provider.compiled;
    let timeouts = &compiled.timeouts;
    let request = match &call.trace {
        Some((_, headers)) => request.headers(headers.clone()),
        None => request,
    };
    let request = request
        .build()
        .map_err(|e| send_error(&compiled.name, &e.into()))?;
    let sent = call.provider.transport.send(request);
    let response = match tokio::time::timeout(timeouts.first_byte.get(), sent).await {
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
    let limit = call.limits.body_bytes;
    let body = match tokio::time::timeout(remaining(call), read_capped(response, limit)).await {
        Err(_) => {
            return Err(timeout(
                &compiled.name,
                "send the response body",
                timeouts.total.get(),
            ));
        }
        // An error reply too large to read is still that error: its status decides.
        Ok(Err(BodyError::TooLarge)) if !status.is_success() => Bytes::new(),
        Ok(Err(BodyError::TooLarge)) => return Err(too_large(&compiled.name, limit)),
        Ok(Err(BodyError::Read(e))) => return Err(read_error(&compiled.name, e)),
        Ok(Ok(body)) => body,
    };
    if !status.is_success() {
        let credential = compiled.credential.as_ref().map(|c| c.expose());
        return Err(upstream_error(
            &compiled.name,
            status,
            &headers,
            &body,
            credential,
        ));
    }
    Ok(Reply::Body(status, body))
}

/// Why a capped read failed.
#[derive(Debug)]
pub enum BodyError {
    /// The body is longer than the cap.
    TooLarge,
    /// The connection failed while reading.
    Read(Box<dyn std::error::Error + Send + Sync>),
}

/// Reads a whole upstream body of at most `limit` bytes. A longer one is refused as soon as
/// its `Content-Length`, or the bytes read so far, exceed the cap; what was read is freed and
/// the rest never read: dropping the unfinished body closes the connection instead of
/// draining it (a reply hundreds of MB long once cost as much RSS).
pub async fn read_capped(
    response: http::Response<UpstreamBody>,
    limit: usize,
) -> Result<Bytes, BodyError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX);
    let body = response.into_body();
    if http_body::Body::size_hint(&body)
        .exact()
        .is_some_and(|length| length > cap)
    {
        return Err(BodyError::TooLarge);
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(e)),
    }
}

/// The 502 for a reply over `MAX_UPSTREAM_BODY_BYTES`, naming the setting so an operator
/// knows what to raise.
pub fn too_large(provider: &str, limit: usize) -> ApiError {
    tracing::warn!(
        provider,
        limit,
        "upstream reply exceeded MAX_UPSTREAM_BODY_BYTES; connection closed unread"
    );
    ApiError::UpstreamReplyTooLarge(format!(
        "the reply of upstream {provider} exceeded MAX_UPSTREAM_BODY_BYTES ({limit} bytes)"
    ))
}

fn read_error(provider: &str, error: Box<dyn std::error::Error + Send + Sync>) -> ApiError {
    match error.downcast::<reqwest::Error>() {
        Ok(error) => send_error(provider, &TransportError::Client(*error)),
        Err(error) => {
            tracing::warn!(provider, error = %error, "upstream body could not be read");
            ApiError::Upstream {
                status: StatusCode::BAD_GATEWAY,
                message: format!("request failed at upstream {provider}"),
                retry_after: None,
            }
        }
    }
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

fn send_error(provider: &str, error: &TransportError) -> ApiError {
    if error.is_timeout() {
        return ApiError::UpstreamTimeout(format!("upstream {provider} timed out"));
    }
    if let Some(refusal) = error.refusal() {
        tracing::warn!(provider, %refusal, "upstream refused by the egress guard");
        // Not "cannot connect": a configuration problem that no retry can fix.
        return ApiError::Upstream {
            status: StatusCode::BAD_GATEWAY,
            message: format!("upstream {provider} refused by the egress guard: {refusal}"),
            retry_after: None,
        };
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
/// Anthropic and Gemini all put it at `/error/message`), sanitised first: providers quote the
/// gateway's own credentials in these (a wrong key, the organisation or project it belongs
/// to), so [`sanitize`] masks those and `credential`, the key this call sent, wherever it
/// appears, and caps the length. Overload (503, Anthropic's 529) is a retryable 503; anything
/// else is a 502 that does not echo the upstream body at all (a provider's 401 message can
/// quote part of the provider key).
pub fn upstream_error(
    provider: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    credential: Option<&str>,
) -> ApiError {
    let retry_after = headers.get(header::RETRY_AFTER).cloned();
    match status.as_u16() {
        400 | 413 | 422 | 429 => ApiError::Upstream {
            status,
            message: upstream_message(body, credential)
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

/// The upstream's `/error/message`, sanitised; `None` when the body has none (or it is empty
/// once sanitised, which would tell the client nothing).
fn upstream_message(body: &[u8], credential: Option<&str>) -> Option<String> {
    let value = serde_json::from_slice::<serde_json::Value>(body).ok()?;
    let message = value.pointer("/error/message")?.as_str()?;
    let clean = sanitize(message, credential);
    (!clean.trim().is_empty()).then_some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_body_cap_holds_the_largest_openai_embeddings_batch() {
        // 2048 embeddings of 3072 float32s in base64 (16384 characters), each in its
        // `{"object":"embedding","index":…,"embedding":"…"}` wrapper.
        let batch = 2048 * (16_384 + 64);
        assert!(DEFAULT_MAX_BODY_BYTES > batch);
    }

    fn message(error: &ApiError) -> &str {
        match error {
            ApiError::Upstream { message, .. } => message,
            _ => "",
        }
    }

    #[test]
    fn passed_on_messages_are_sanitised_with_the_call_credential() {
        let body = br#"{"error":{"message":"key sk-proj-abcdef1234567890abcdef of org-AbCdEf123456 (plain-upstream-key) is over quota","type":"insufficient_quota"}}"#;
        for status in [400, 413, 422, 429] {
            let status = StatusCode::from_u16(status).expect("valid status");
            let error = upstream_error(
                "p",
                status,
                &HeaderMap::new(),
                body,
                Some("plain-upstream-key"),
            );
            assert_eq!(error.status(), status);
            assert_eq!(message(&error), "key sk-*** of org-*** (***) is over quota");
        }
    }

    #[test]
    fn other_statuses_never_echo_the_body() {
        let body = br#"{"error":{"message":"Incorrect API key provided: sk-abc"}}"#;
        let error = upstream_error("p", StatusCode::UNAUTHORIZED, &HeaderMap::new(), body, None);
        assert_eq!(message(&error), "upstream p answered HTTP 401");
    }

    #[test]
    fn a_body_without_a_message_names_the_status() {
        let error = upstream_error(
            "p",
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            b"not json",
            None,
        );
        assert_eq!(message(&error), "upstream p answered 400 Bad Request");
    }
}
