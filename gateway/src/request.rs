//! The client's request as the gateway reads it (OpenAI wire shapes, whichever protocol it
//! came in): just enough of a chat request to route and validate it, and the usage block of
//! responses and stream chunks. Apart from `translate/openai_types.rs`, the hub's full types
//! translators build, and `providers/openai.rs`, the adapter that sends them.
//!
//! The request body is never re-serialised: [`ClientRequest::parse`] borrows from the raw bytes,
//! and [`ClientRequest::with_model`] splices a new model name into a copy of them when a route
//! maps it, leaving every other byte as the client sent it.

use bytes::{Bytes, BytesMut};
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;

use crate::affinity::Affinity;
use crate::error::ApiError;

mod completions;
mod responses;

/// The parts of a chat completion request the gateway needs.
#[derive(Debug)]
pub struct ClientRequest {
    /// Which API the body speaks.
    pub protocol: Protocol,
    /// The raw body as received.
    pub body: Bytes,
    /// Requested model (route name).
    pub model: String,
    /// Byte range of the `model` JSON string (quotes included) inside `body`.
    pub(crate) model_span: (usize, usize),
    /// Whether the client asked for server-sent events.
    pub stream: bool,
    /// Whether a streamed response should end with a usage chunk.
    pub include_usage: bool,
    /// Rough prompt size in bytes of message content (for the fake provider's token count).
    pub prompt_bytes: usize,
    /// Bytes of the other fields the model reads as input (tools, functions, a JSON schema,
    /// Anthropic's `system`), which admission reserves tokens for as well.
    pub other_prompt_bytes: usize,
    /// The completion cap the client asked for (`max_completion_tokens` or `max_tokens`).
    pub max_tokens: Option<u32>,
    /// Completions asked for (`n`): each may use the whole completion cap.
    pub choices: u32,
    /// Whether the response is kept for continuations (a Responses request's `store` not
    /// false; never for other APIs).
    pub keep: bool,
    /// What keeps its conversation on one target of a weighted route.
    pub affinity: crate::affinity::Affinity,
}

/// The API a client request body speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// OpenAI chat completions.
    OpenAi,
    /// Anthropic Messages.
    Anthropic,
    /// OpenAI Responses.
    Responses,
    /// OpenAI legacy completions (pass-through only).
    Completions,
    /// OpenAI embeddings.
    Embeddings,
}

#[derive(Deserialize)]
struct MessagesView<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    max_tokens: u32,
    messages: Vec<MessagesMessageView<'a>>,
    stream: Option<bool>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessagesMessageView<'a> {
    #[allow(dead_code)] // validated for type, not read
    role: MessagesRole,
    #[serde(borrow)]
    content: &'a RawValue,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum MessagesRole {
    User,
    Assistant,
}

/// Decodes a JSON body into a borrowed view; errors say what is wrong and name the parameter.
pub(crate) fn decode<'a, V: Deserialize<'a>>(body: &'a Bytes) -> Result<V, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::invalid(
            "the request body is empty; send a JSON object",
            None,
        ));
    }
    if nesting_depth_exceeds(body, MAX_NESTING_DEPTH) {
        return Err(ApiError::invalid(
            format!("the request body nests JSON deeper than {MAX_NESTING_DEPTH} levels"),
            None,
        ));
    }
    // Path tracking (for the error's `param`) costs about a third of the parse; it runs only
    // to explain a body that failed.
    let mut de = serde_json::Deserializer::from_slice(body);
    if let Ok(view) = V::deserialize(&mut de)
        && de.end().is_ok()
    {
        return Ok(view);
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let view: V = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let param = (!matches!(path.as_str(), "." | "?" | "")).then_some(path);
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the request body is not valid JSON: {inner}")
        } else {
            format!("invalid request: {inner}")
        };
        ApiError::InvalidRequest { message, param }
    })?;
    de.end()
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}"), None))?;
    Ok(view)
}

/// The model name and the byte range of its JSON string inside `body`.
pub(crate) fn model_of(body: &Bytes, raw: &RawValue) -> Result<(String, (usize, usize)), ApiError> {
    let model: String = serde_json::from_str(raw.get())
        .map_err(|_| ApiError::invalid("'model' must be a string", Some("model")))?;
    let start = raw.get().as_ptr() as usize - body.as_ptr() as usize;
    Ok((model, (start, start + raw.get().len())))
}

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    messages: Vec<MessageView<'a>>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<u32>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    functions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt_cache_key: Option<&'a RawValue>,
}

/// Total length of the raw JSON values present.
fn raw_len(values: &[Option<&RawValue>]) -> usize {
    values.iter().flatten().map(|v| v.get().len()).sum()
}

#[derive(Deserialize)]
struct MessageView<'a> {
    #[allow(dead_code)] // validated for type, not read
    role: Role,
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
    #[serde(flatten)]
    _rest: std::collections::BTreeMap<String, IgnoredAny>,
}

pub use crate::token_usage::{TokenUsage, UsageEnvelope};

impl ClientRequest {
    /// Validates the body and extracts what routing needs; errors name the parameter.
    pub fn parse(body: Bytes) -> Result<Self, ApiError> {
        let view: View<'_> = decode(&body)?;
        view.check_ranges()?;
        let (model, model_span) = model_of(&body, view.model)?;
        let prompt_bytes = view
            .messages
            .iter()
            .filter_map(|m| m.content.map(|c| c.get().len()))
            .sum();
        Ok(Self {
            protocol: Protocol::OpenAi,
            stream: view.stream.unwrap_or(false),
            include_usage: view
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            max_tokens: view.max_completion_tokens.or(view.max_tokens),
            choices: view.n.unwrap_or(1),
            keep: false,
            affinity: Affinity::of(
                &body,
                view.prompt_cache_key,
                view.messages.first().and_then(|m| m.content),
            ),
            other_prompt_bytes: raw_len(&[view.tools, view.functions, view.response_format]),
            model,
            model_span,
            prompt_bytes,
            body,
        })
    }

    /// Validates an Anthropic Messages API body (`POST /v1/messages`) the same way.
    pub fn parse_messages(body: Bytes) -> Result<Self, ApiError> {
        let view: MessagesView<'_> = decode(&body)?;
        if view.max_tokens == 0 {
            return Err(ApiError::invalid(
                "'max_tokens' must be at least 1",
                Some("max_tokens"),
            ));
        }
        if view.messages.is_empty() {
            return Err(ApiError::invalid(
                "'messages' must contain at least one message",
                Some("messages"),
            ));
        }
        let (model, model_span) = model_of(&body, view.model)?;
        let prompt_bytes = view.messages.iter().map(|m| m.content.get().len()).sum();
        Ok(Self {
            protocol: Protocol::Anthropic,
            stream: view.stream.unwrap_or(false),
            include_usage: false,
            max_tokens: Some(view.max_tokens),
            choices: 1,
            keep: false,
            affinity: Affinity::of(
                &body,
                None,
                view.system.or(view.messages.first().map(|m| m.content)),
            ),
            other_prompt_bytes: raw_len(&[view.system, view.tools]),
            model,
            model_span,
            prompt_bytes,
            body,
        })
    }

    /// The body with `model` replaced, or the original bytes when the name is unchanged.
    pub fn with_model(&self, upstream_model: &str) -> Bytes {
        if upstream_model == self.model {
            return self.body.clone();
        }
        // Serialising a &str to JSON cannot fail.
        let quoted = serde_json::to_string(upstream_model).unwrap_or_default();
        let (start, end) = self.model_span;
        let mut out = BytesMut::with_capacity(self.body.len() + quoted.len());
        out.extend_from_slice(&self.body[..start]);
        out.extend_from_slice(quoted.as_bytes());
        out.extend_from_slice(&self.body[end..]);
        out.freeze()
    }
}

/// Deepest JSON nesting accepted. Pass-through values (message content) are skipped by the
/// parser without recursion limits, so depth is checked separately, in one linear scan.
const MAX_NESTING_DEPTH: usize = 128;

fn nesting_depth_exceeds(body: &[u8], limit: usize) -> bool {
    let (mut depth, mut i) = (0usize, 0usize);
    while let Some(&b) = body.get(i) {
        i += 1;
        match b {
            // Inside a string only a quote or a backslash matters: jump to the next one (SIMD
            // search; prompts are long strings, and a byte loop was most of a big body's parse).
            b'"' => loop {
                let Some(at) = body
                    .get(i..)
                    .and_then(|rest| memchr::memchr2(b'"', b'\\', rest))
                else {
                    return false;
                };
                i += at + 1;
                if body[i - 1] == b'"' {
                    break;
                }
                i += 1; // the escaped byte
            },
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return true;
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

impl View<'_> {
    fn check_ranges(&self) -> Result<(), ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::invalid(
                "'messages' must contain at least one message",
                Some("messages"),
            ));
        }
        if self.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(ApiError::invalid(
                "'temperature' must be between 0 and 2",
                Some("temperature"),
            ));
        }
        if self.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return Err(ApiError::invalid(
                "'top_p' must be between 0 and 1",
                Some("top_p"),
            ));
        }
        if self.n.is_some_and(|n| !(1..=128).contains(&n)) {
            return Err(ApiError::invalid(
                "'n' must be between 1 and 128",
                Some("n"),
            ));
        }
        for (name, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if value == Some(0) {
                return Err(ApiError::invalid(
                    format!("'{name}' must be at least 1"),
                    Some(name),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientRequest, ApiError> {
        ClientRequest::parse(Bytes::copy_from_slice(text.as_bytes()))
    }

    fn param_of(text: &str) -> Option<String> {
        match parse(text) {
            Err(ApiError::InvalidRequest { param, .. }) => param,
            other => panic!("expected 400, got {other:?}"),
        }
    }

    #[test]
    fn rewrites_only_the_model_bytes() {
        let text = r#"{ "messages":[{"role":"user","content":"hi"}], "model" : "alias", "x": {"model":"keep"} }"#;
        let req = parse(text).unwrap();
        assert_eq!(req.model, "alias");
        let rewritten = req.with_model("gpt-4o\"mini");
        assert_eq!(
            std::str::from_utf8(&rewritten).unwrap(),
            r#"{ "messages":[{"role":"user","content":"hi"}], "model" : "gpt-4o\"mini", "x": {"model":"keep"} }"#
        );
        assert_eq!(req.with_model("alias").as_ptr(), req.body.as_ptr());
    }

    #[test]
    fn errors_name_the_parameter() {
        assert_eq!(
            param_of(r#"{"model":"m","messages":{}}"#).as_deref(),
            Some("messages")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}],"temperature":"hot"}"#)
                .as_deref(),
            Some("temperature")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}],"max_tokens":-1}"#).as_deref(),
            Some("max_tokens")
        );
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"wizard"}]}"#).as_deref(),
            Some("messages[0].role")
        );
        assert_eq!(
            param_of(r#"{"model":7,"messages":[{"role":"user"}]}"#).as_deref(),
            Some("model")
        );
        assert_eq!(param_of(r#"{"messages":[{"role":"user"}]}"#), None);
        assert_eq!(param_of("{not json"), None);
        assert_eq!(
            param_of(r#"{"model":"m","messages":[{"role":"user"}]} trailing"#),
            None
        );
    }

    #[test]
    fn nesting_ignores_brackets_in_strings_and_escapes() {
        let deep = |n: usize| "[".repeat(n) + &"]".repeat(n);
        assert!(nesting_depth_exceeds(deep(5).as_bytes(), 4));
        assert!(!nesting_depth_exceeds(deep(4).as_bytes(), 4));
        let quoted = format!(r#"{{"a":"{}","b":"\"[[[[[\\"}}"#, deep(10));
        assert!(!nesting_depth_exceeds(quoted.as_bytes(), 2));
        let after_escapes = format!(r#"{{"a":"x\\"{}}}"#, deep(3));
        assert!(nesting_depth_exceeds(after_escapes.as_bytes(), 3));
        for truncated in [&b"{\"abc\\"[..], b"{\"abc\\\\", b"[\"", b"\"\\"] {
            assert!(!nesting_depth_exceeds(truncated, 4));
        }
    }

    #[test]
    fn deep_nesting_is_rejected_not_a_crash() {
        let deep = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":{}1{}}}]}}"#,
            "[".repeat(10_000),
            "]".repeat(10_000)
        );
        assert!(parse(&deep).is_err());
        let string_brackets = format!(
            r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
            "[".repeat(1000)
        );
        assert!(parse(&string_brackets).is_ok());
    }

    #[test]
    fn reads_stream_options() {
        let req = parse(r#"{"model":"m","messages":[{"role":"user","content":"hello"}],"stream":true,"stream_options":{"include_usage":true}}"#).unwrap();
        assert!(req.stream && req.include_usage);
        assert_eq!(req.prompt_bytes, 7);
    }
}
