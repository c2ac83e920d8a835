//! `POST /v1/completions` bodies (the legacy completions API that self-hosted code models serve
//! for fill-in-the-middle autocompletion): what routing and admission need, borrowed from the
//! raw bytes; the body itself only ever passes through.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ClientRequest, Protocol, StreamOptions, decode, model_of, raw_len};
use crate::error::ApiError;

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    #[serde(borrow)]
    prompt: &'a RawValue,
    #[serde(borrow, default)]
    suffix: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    n: Option<u32>,
}

impl ClientRequest {
    /// Validates a legacy completions body; errors name the parameter.
    pub fn parse_completions(body: Bytes) -> Result<Self, ApiError> {
        let view: View<'_> = decode(&body)?;
        if view.n == Some(0) {
            return Err(ApiError::invalid("'n' must be at least 1", Some("n")));
        }
        let (model, model_span) = model_of(&body, view.model)?;
        Ok(Self {
            protocol: Protocol::Completions,
            stream: view.stream.unwrap_or(false),
            include_usage: view
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
            max_tokens: view.max_tokens,
            choices: view.n.unwrap_or(1),
            keep: false,
            affinity: crate::affinity::Affinity::default(),
            other_prompt_bytes: raw_len(&[view.suffix]),
            prompt_bytes: view.prompt.get().len(),
            model,
            model_span,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_prompt_and_the_cap_and_requires_a_prompt() {
        let body =
            r#"{"model":"coder","prompt":"def f(","suffix":"\n","max_tokens":32,"stream":true}"#;
        let request = ClientRequest::parse_completions(Bytes::from(body)).expect("valid");
        assert_eq!(request.protocol, Protocol::Completions);
        assert_eq!((request.max_tokens, request.stream), (Some(32), true));
        assert_eq!(request.prompt_bytes, "\"def f(\"".len());
        let missing = ClientRequest::parse_completions(Bytes::from(r#"{"model":"coder"}"#));
        assert!(matches!(missing, Err(ApiError::InvalidRequest { .. })));
    }
}
