//! The built-in `fake` provider: deterministic answers with no network, for demos and tests.
//!
//! The answer text, chunking, latency and failure rate come from `LlmProvider.spec.fake`.
//! Failures are spread evenly and deterministically: with rate `r`, request `n` fails when
//! `floor((n+1)·r) > floor(n·r)`, so exactly `r` of every `1/r` requests fail.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::response::Response;
use bytes::Bytes;
use futures_util::stream;
use http::StatusCode;
use serde_json::json;

use super::Call;
use super::upstream::{Reply, json_response};
use crate::error::ApiError;
use crate::request::TokenUsage;

/// What a chat request asks of the fake, in the hub's terms.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Whether to answer with server-sent events.
    pub stream: bool,
    /// Whether a streamed answer ends with a usage chunk.
    pub include_usage: bool,
}

/// Answers a chat request in the hub's format (as an OpenAI upstream would), with the usage
/// the answer reports.
pub async fn chat(call: &Call<'_>, ask: Ask) -> Result<(Reply, TokenUsage), ApiError> {
    let settings = call.provider.compiled.fake.clone().unwrap_or_default();
    let sequence = call.provider.fake_sequence.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(settings.latency.get()).await;
    if fails(sequence, settings.failure_rate) {
        return Err(ApiError::Upstream {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "upstream {} answered HTTP 503 (injected failure)",
                call.provider.compiled.name
            ),
            retry_after: None,
        });
    }
    let usage = TokenUsage::new(
        (call.request.prompt_bytes as u64).div_ceil(4).max(1),
        settings.response.split_whitespace().count() as u64,
    );
    let answer = Answer {
        id: format!("chatcmpl-fake-{sequence}"),
        created: call.created(),
        model: call.target.upstream_model.clone(),
        usage,
    };
    if !ask.stream {
        let body = answer.completion(&settings.response).to_string();
        return Ok((Reply::Body(StatusCode::OK, body.into()), usage));
    }
    let events = answer.stream_events(&settings.response, settings.chunks, ask.include_usage);
    let interval = settings.chunk_interval.get();
    let body = stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let event = it.next()?;
            if !first && interval > Duration::ZERO {
                tokio::time::sleep(interval).await;
            }
            Some((Ok(event), (it, false)))
        },
    );
    Ok((Reply::Events(Box::pin(body)), usage))
}

fn fails(sequence: u64, rate: f64) -> bool {
    rate > 0.0 && ((sequence + 1) as f64 * rate).floor() > (sequence as f64 * rate).floor()
}

struct Answer {
    id: String,
    created: u64,
    model: String,
    usage: TokenUsage,
}

impl Answer {
    fn usage_json(&self) -> serde_json::Value {
        json!({
            "prompt_tokens": self.usage.prompt_tokens,
            "completion_tokens": self.usage.completion_tokens,
            "total_tokens": self.usage.prompt_tokens + self.usage.completion_tokens,
        })
    }

    fn completion(&self, text: &str) -> serde_json::Value {
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": null},
                "logprobs": null,
                "finish_reason": "stop",
            }],
            "usage": self.usage_json(),
        })
    }

    fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> Bytes {
        let chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Bytes::from(format!("data: {chunk}\n\n"))
    }

    fn stream_events(&self, text: &str, chunks: u32, include_usage: bool) -> Vec<Bytes> {
        let mut events = vec![self.chunk(json!({"role": "assistant", "content": ""}), None)];
        events.extend(
            split_evenly(text, chunks).map(|piece| self.chunk(json!({"content": piece}), None)),
        );
        events.push(self.chunk(json!({}), Some("stop")));
        if include_usage {
            let chunk = json!({
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": self.usage_json(),
            });
            events.push(Bytes::from(format!("data: {chunk}\n\n")));
        }
        events.push(Bytes::from_static(b"data: [DONE]\n\n"));
        events
    }
}

/// Splits `text` into at most `parts` non-empty pieces of near-equal length, on char
/// boundaries.
fn split_evenly(text: &str, parts: u32) -> impl Iterator<Item = &str> {
    let chars: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect();
    let count = chars.len() - 1;
    let parts = (parts as usize).clamp(1, count.max(1));
    (0..parts).filter_map(move |p| {
        let (from, to) = (chars[p * count / parts], chars[(p + 1) * count / parts]);
        (from < to).then(|| &text[from..to])
    })
}

/// Answers an embeddings request with deterministic unit vectors (8 dimensions unless asked).
pub async fn embeddings(call: Call<'_>) -> Result<Response, ApiError> {
    let request: crate::embeddings::EmbeddingsRequest = serde_json::from_slice(&call.request.body)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
    let settings = call.provider.compiled.fake.clone().unwrap_or_default();
    tokio::time::sleep(settings.latency.get()).await;
    let texts: Vec<String> = match request.input.texts() {
        Some(texts) => texts.into_iter().map(str::to_owned).collect(),
        None => vec![format!("{:?}", request.input)],
    };
    let dimensions = request.dimensions.unwrap_or(8) as usize;
    let vectors = texts
        .iter()
        .map(|t| crate::embeddings::fake_vector(t, dimensions))
        .collect();
    let prompt_tokens = (call.request.prompt_bytes as u64)
        .div_ceil(4)
        .max(texts.len() as u64);
    call.accounting().usage(TokenUsage::new(prompt_tokens, 0));
    let format = request.encoding_format.unwrap_or_default();
    let body = crate::embeddings::response_body(
        vectors,
        format,
        &call.target.upstream_model,
        prompt_tokens,
    );
    Ok(json_response(StatusCode::OK, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_rate_is_exact_and_spread() {
        let failures: Vec<u64> = (0..20).filter(|&n| fails(n, 0.25)).collect();
        assert_eq!(failures, [3, 7, 11, 15, 19]);
        assert!(!(0..100).any(|n| fails(n, 0.0)));
        assert!((0..100).all(|n| fails(n, 1.0)));
    }

    #[test]
    fn splits_text_on_char_boundaries() {
        let pieces: Vec<&str> = split_evenly("héllo wörld", 4).collect();
        assert_eq!(pieces.concat(), "héllo wörld");
        assert_eq!(pieces.len(), 4);
        assert_eq!(split_evenly("ab", 10).count(), 2);
    }
}
