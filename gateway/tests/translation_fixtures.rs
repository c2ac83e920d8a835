//! The translation conformance suite: golden fixtures in `tests/fixtures/translation/<case>/`.
//!
//! Cases named `anthropic_*` and `gemini_*` translate OpenAI clients to those upstreams;
//! `messages_*` translate Anthropic `/v1/messages` clients to OpenAI-protocol upstreams, and
//! `responses_*` OpenAI Responses clients to chat upstreams.
//! Each case holds inputs (`client_request.json`, `upstream_response.json`,
//! `upstream_stream.sse`, `meta.json`) and the expected outputs (`upstream_request.json`,
//! `client_response.json`, `client_stream.sse`). Streams are replayed split at every chunk size
//! in [`CHUNK_SIZES`], so events cut mid-line or mid-UTF-8 must translate identically.
//! `UPDATE_FIXTURES=1 cargo test -p llm-gateway --test translation_fixtures` rewrites the
//! expected outputs (review the diff before committing).

#![allow(clippy::unwrap_used, reason = "fixtures are trusted test data")]

use std::path::{Path, PathBuf};

use llm_gateway::translate::openai_types::ChatRequest;
use llm_gateway::translate::stream::translate_all;
use llm_gateway::translate::{
    anthropic, anthropic_stream, gemini, gemini_stream, messages, messages_stream, responses,
    responses_reply, responses_stream,
};
use serde::Deserialize;
use serde_json::Value;

const CHUNK_SIZES: [usize; 5] = [1, 3, 17, 64, usize::MAX];

#[derive(Deserialize)]
struct Meta {
    provider: String,
    model: String,
    created: u64,
    include_usage: bool,
    default_max_tokens: Option<u32>,
}

fn cases() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/translation");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        cases.len() >= 8,
        "fixtures missing under {}",
        root.display()
    );
    cases
}

fn updating() -> bool {
    std::env::var_os("UPDATE_FIXTURES").is_some()
}

/// Compares `actual` with the expected file, or writes it when updating.
fn check_json(case: &Path, file: &str, actual: &Value) {
    let path = case.join(file);
    if updating() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
        return;
    }
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(&path).unwrap_or_else(|_| panic!("{} missing", path.display())),
    )
    .unwrap();
    assert_eq!(actual, &expected, "{}", path.display());
}

fn check_bytes(case: &Path, file: &str, actual: &[u8]) {
    let path = case.join(file);
    if updating() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read(&path).unwrap_or_else(|_| panic!("{} missing", path.display()));
    assert_eq!(
        String::from_utf8_lossy(actual),
        String::from_utf8_lossy(&expected),
        "{}",
        path.display()
    );
}

fn translate_request(meta: &Meta, text: &str) -> Value {
    match meta.provider.as_str() {
        "anthropic" => {
            let request: ChatRequest = serde_json::from_str(text).unwrap();
            serde_json::to_value(anthropic::to_anthropic(request, meta.default_max_tokens).unwrap())
                .unwrap()
        }
        "gemini" => {
            let request: ChatRequest = serde_json::from_str(text).unwrap();
            serde_json::to_value(gemini::to_gemini(request).unwrap()).unwrap()
        }
        "messages" => {
            let request: messages::InboundRequest = serde_json::from_str(text).unwrap();
            serde_json::to_value(messages::to_openai(request).unwrap()).unwrap()
        }
        "responses" => {
            let request: responses::ResponsesRequest = serde_json::from_str(text).unwrap();
            serde_json::to_value(responses::to_openai(request).unwrap()).unwrap()
        }
        other => panic!("unknown provider {other}"),
    }
}

fn translate_response(meta: &Meta, body: &[u8]) -> Value {
    let bytes = match meta.provider.as_str() {
        "anthropic" => {
            anthropic::to_openai_completion(body, meta.created)
                .unwrap()
                .0
        }
        "gemini" => {
            gemini::to_openai_completion(body, &meta.model, meta.created)
                .unwrap()
                .0
        }
        "responses" => responses_reply::to_response(body, &meta.model, meta.created, None).unwrap(),
        _ => messages::to_anthropic_message(body, &meta.model).unwrap(),
    };
    serde_json::from_slice(&bytes).unwrap()
}

fn translate_stream(meta: &Meta, input: &[u8], chunk: usize) -> Vec<u8> {
    let (model, created, usage) = (meta.model.as_str(), meta.created, meta.include_usage);
    match meta.provider.as_str() {
        "anthropic" => translate_all(
            anthropic_stream::AnthropicToOpenAi::new(model, created, usage),
            input,
            chunk,
        ),
        "gemini" => translate_all(
            gemini_stream::GeminiToOpenAi::new(model, created, usage),
            input,
            chunk,
        ),
        "responses" => translate_all(
            responses_stream::HubToResponses::new(model, created),
            input,
            chunk,
        ),
        _ => translate_all(messages_stream::OpenAiToMessages::new(model), input, chunk),
    }
}

#[test]
fn every_fixture_translates_to_its_golden_output() {
    for case in cases() {
        let meta: Meta =
            serde_json::from_str(&std::fs::read_to_string(case.join("meta.json")).unwrap())
                .unwrap();
        if let Ok(text) = std::fs::read_to_string(case.join("client_request.json")) {
            check_json(
                &case,
                "upstream_request.json",
                &translate_request(&meta, &text),
            );
        }
        if let Ok(body) = std::fs::read(case.join("upstream_response.json")) {
            check_json(
                &case,
                "client_response.json",
                &translate_response(&meta, &body),
            );
        }
        if let Ok(input) = std::fs::read(case.join("upstream_stream.sse")) {
            let whole = translate_stream(&meta, &input, usize::MAX);
            for size in CHUNK_SIZES {
                assert_eq!(
                    translate_stream(&meta, &input, size),
                    whole,
                    "{}: split at {size} bytes",
                    case.display()
                );
            }
            check_bytes(&case, "client_stream.sse", &whole);
        }
    }
}
