//! `POST /v1/embeddings` requests: validation of the OpenAI shape, and the fake provider's
//! deterministic vectors.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use crate::error::ApiError;
use crate::request::{ClientRequest, Protocol, decode, model_of};

/// Largest number of inputs in one request (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

#[derive(Deserialize)]
struct View<'a> {
    #[serde(borrow)]
    model: &'a RawValue,
    input: Input,
    #[serde(default)]
    encoding_format: Option<EncodingFormat>,
    #[serde(default)]
    dimensions: Option<u32>,
}

/// `input`: text, texts, tokens or token lists.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Input {
    /// One text.
    Text(String),
    /// Several texts.
    Texts(Vec<String>),
    /// One token list.
    Tokens(
        #[expect(
            dead_code,
            reason = "its shape is validated by deserialising; the raw body is what is forwarded"
        )]
        Vec<u32>,
    ),
    /// Several token lists.
    TokenLists(Vec<Vec<u32>>),
}

impl Input {
    /// The texts, or `None` for token inputs.
    pub fn texts(&self) -> Option<Vec<&str>> {
        match self {
            Self::Text(t) => Some(vec![t.as_str()]),
            Self::Texts(v) => Some(v.iter().map(String::as_str).collect()),
            Self::Tokens(_) | Self::TokenLists(_) => None,
        }
    }

    fn len(&self) -> usize {
        match self {
            Self::Text(_) | Self::Tokens(_) => 1,
            Self::Texts(v) => v.len(),
            Self::TokenLists(v) => v.len(),
        }
    }
}

/// `encoding_format`.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    /// JSON arrays of floats.
    #[default]
    Float,
    /// Base64 of little-endian `f32`s.
    Base64,
}

/// An embeddings request, fully parsed (only translating adapters need this).
#[derive(Debug, Deserialize)]
pub struct EmbeddingsRequest {
    /// The input.
    pub input: Input,
    /// Output encoding.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// Requested vector size.
    #[serde(default)]
    pub dimensions: Option<u32>,
}

impl ClientRequest {
    /// Validates an OpenAI embeddings body.
    pub fn parse_embeddings(body: Bytes) -> Result<Self, ApiError> {
        let view: View<'_> = decode(&body)?;
        let count = view.input.len();
        if count == 0 || count > MAX_INPUTS {
            return Err(ApiError::invalid(
                format!("'input' must hold 1 to {MAX_INPUTS} items"),
                Some("input"),
            ));
        }
        if view.dimensions == Some(0) {
            return Err(ApiError::invalid(
                "'dimensions' must be at least 1",
                Some("dimensions"),
            ));
        }
        let _ = view.encoding_format;
        let (model, model_span) = model_of(&body, view.model)?;
        let prompt_bytes = view
            .input
            .texts()
            .map_or(0, |t| t.iter().map(|s| s.len()).sum());
        Ok(Self {
            protocol: Protocol::Embeddings,
            stream: false,
            include_usage: false,
            max_tokens: Some(0),
            choices: 1,
            keep: false,
            affinity: crate::affinity::Affinity::default(),
            other_prompt_bytes: 0,
            model,
            model_span,
            prompt_bytes,
            body,
        })
    }
}

/// Encodes a vector as OpenAI does for `encoding_format: base64`.
pub fn to_base64(values: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The fake provider's vector for `text`: unit length, derived from the bytes, so equal texts
/// get equal vectors.
pub fn fake_vector(text: &str, dimensions: usize) -> Vec<f32> {
    let mut state: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        state = (state ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let raw: Vec<f32> = (0..dimensions)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect();
    let norm = raw
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(f32::EPSILON);
    raw.into_iter().map(|v| v / norm).collect()
}

/// An OpenAI embeddings response body.
pub fn response_body(
    vectors: Vec<Vec<f32>>,
    format: EncodingFormat,
    model: &str,
    prompt_tokens: u64,
) -> Vec<u8> {
    let data: Vec<serde_json::Value> = vectors
        .iter()
        .enumerate()
        .map(|(index, v)| {
            let embedding = match format {
                EncodingFormat::Float => json!(v),
                EncodingFormat::Base64 => json!(to_base64(v)),
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}})
        .to_string()
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientRequest, ApiError> {
        ClientRequest::parse_embeddings(Bytes::copy_from_slice(text.as_bytes()))
    }

    #[test]
    fn validates_input_and_dimensions() {
        assert_eq!(
            parse(r#"{"model":"e","input":["ab","c"]}"#)
                .unwrap()
                .prompt_bytes,
            3
        );
        assert!(parse(r#"{"model":"e","input":[[1,2],[3]]}"#).is_ok());
        for (body, param) in [
            (r#"{"model":"e","input":[]}"#, "input"),
            (r#"{"model":"e","input":"x","dimensions":0}"#, "dimensions"),
            (r#"{"model":"e","input":{"a":1}}"#, "input"),
            (
                r#"{"model":"e","input":"x","encoding_format":"hex"}"#,
                "encoding_format",
            ),
        ] {
            match parse(body) {
                Err(ApiError::InvalidRequest { param: Some(p), .. }) => {
                    assert_eq!(p, param, "{body}")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn fake_vectors_are_deterministic_unit_vectors() {
        let a = fake_vector("hello", 16);
        assert_eq!(a, fake_vector("hello", 16));
        assert_ne!(a, fake_vector("hellp", 16));
        assert!((a.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn base64_matches_little_endian_f32() {
        assert_eq!(to_base64(&[1.0]), "AACAPw==");
    }
}
