//! `POST /v1/responses` bodies: what routing and admission need from an OpenAI Responses
//! request, borrowed from the raw bytes like the chat view.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{ClientRequest, Protocol, decode, model_of, raw_len};
use crate::error::ApiError;

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_output_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    store: Option<bool>,
    #[serde(borrow, default)]
    prompt_cache_key: Option<&'a RawValue>,
}

impl ClientRequest {
    /// Validates a Responses API body; errors name the parameter.
    pub fn parse_responses(body: Bytes) -> Result<Self, ApiError> {
        let view: View<'_> = decode(&body)?;
        if view.max_output_tokens == Some(0) {
            return Err(ApiError::invalid(
                "'max_output_tokens' must be at least 1",
                Some("max_output_tokens"),
            ));
        }
        if view.temperature.is_some_and(|t| !(0.0..=2.0).contains(&t)) {
            return Err(ApiError::invalid(
                "'temperature' must be between 0 and 2",
                Some("temperature"),
            ));
        }
        if view.top_p.is_some_and(|p| !(0.0..=1.0).contains(&p)) {
            return Err(ApiError::invalid(
                "'top_p' must be between 0 and 1",
                Some("top_p"),
            ));
        }
        let (model, model_span) = model_of(&body, view.model)?;
        Ok(Self {
            protocol: Protocol::Responses,
            stream: view.stream.unwrap_or(false),
            include_usage: false,
            max_tokens: view.max_output_tokens,
            choices: 1,
            keep: view.store != Some(false),
            affinity: crate::affinity::Affinity::of(
                &body,
                view.prompt_cache_key,
                view.instructions.or(view.input),
            ),
            other_prompt_bytes: raw_len(&[view.instructions, view.tools, view.text]),
            prompt_bytes: raw_len(&[view.input]),
            model,
            model_span,
            body,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientRequest, ApiError> {
        ClientRequest::parse_responses(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn reads_what_routing_needs_and_names_bad_parameters() {
        let request = parse(r#"{"model":"m","input":"hello","stream":true,"max_output_tokens":9}"#)
            .expect("valid");
        assert_eq!((request.model.as_str(), request.stream), ("m", true));
        assert_eq!(request.max_tokens, Some(9));
        assert_eq!(request.prompt_bytes, "\"hello\"".len());
        for (body, param) in [
            (
                r#"{"model":"m","input":"x","max_output_tokens":0}"#,
                "max_output_tokens",
            ),
            (
                r#"{"model":"m","input":"x","temperature":3}"#,
                "temperature",
            ),
            (r#"{"model":1,"input":"x"}"#, "model"),
        ] {
            match parse(body) {
                Err(ApiError::InvalidRequest { param: Some(p), .. }) => assert_eq!(p, param),
                other => panic!("{body}: {other:?}"),
            }
        }
    }
}
