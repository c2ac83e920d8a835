//! Entry points shared by the `cargo fuzz` targets in `fuzz/` and the corpus replay test
//! (`gateway/tests/fuzz_corpus.rs`), so every input a fuzzer ever saved keeps being run by
//! `cargo test`. Each function must never panic, whatever the bytes.

use bytes::Bytes;

use crate::request::ClientRequest;
use crate::translate::anthropic_stream::AnthropicToOpenAi;
use crate::translate::gemini_stream::GeminiToOpenAi;
use crate::translate::messages_stream::OpenAiToMessages;
use crate::translate::responses_stream::HubToResponses;
use crate::translate::stream::translate_all;
use crate::translate::{anthropic, gemini, messages, responses, responses_reply};

/// Names of the fuzz targets, as directories under `fuzz/corpus/`.
pub const TARGETS: [&str; 5] = [
    "stream_translators",
    "openai_request",
    "messages_request",
    "responses_request",
    "upstream_responses",
];

/// Runs the named target on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "stream_translators" => stream_translators(data),
        "openai_request" => openai_request(data),
        "messages_request" => messages_request(data),
        "responses_request" => responses_request(data),
        "upstream_responses" => upstream_responses(data),
        other => panic!("unknown fuzz target {other}"),
    }
}

/// Every stream translator, fed `data` whole and in small chunks (split events, split UTF-8).
pub fn stream_translators(data: &[u8]) {
    for chunk in [1, 7, usize::MAX] {
        let _ = translate_all(AnthropicToOpenAi::new("m", 0, true), data, chunk);
        let _ = translate_all(GeminiToOpenAi::new("m", 0, true), data, chunk);
        let _ = translate_all(OpenAiToMessages::new("m"), data, chunk);
        let _ = translate_all(HubToResponses::new("m", 0), data, chunk);
    }
}

/// The OpenAI request parser, then both request translators on whatever parses.
pub fn openai_request(data: &[u8]) {
    let _ = ClientRequest::parse(Bytes::copy_from_slice(data));
    let _ = ClientRequest::parse_embeddings(Bytes::copy_from_slice(data));
    if let Ok(request) = serde_json::from_slice::<crate::translate::openai_types::ChatRequest>(data)
    {
        let _ = anthropic::to_anthropic(request.clone(), None);
        let _ = gemini::to_gemini(request);
    }
}

/// The Messages request parser and its translation to OpenAI.
pub fn messages_request(data: &[u8]) {
    let _ = ClientRequest::parse_messages(Bytes::copy_from_slice(data));
    if let Ok(request) = serde_json::from_slice::<messages::InboundRequest>(data) {
        let _ = messages::to_openai(request);
    }
}

/// The Responses request parser and its translation to OpenAI chat.
pub fn responses_request(data: &[u8]) {
    let _ = ClientRequest::parse_responses(Bytes::copy_from_slice(data));
    if let Ok(request) = serde_json::from_slice::<responses::ResponsesRequest>(data) {
        let _ = responses::to_openai(request);
    }
}

/// Every JSON response translator.
pub fn upstream_responses(data: &[u8]) {
    let _ = anthropic::to_openai_completion(data, 0);
    let _ = gemini::to_openai_completion(data, "m", 0);
    let _ = messages::to_anthropic_message(data, "m");
    let _ = responses_reply::to_response(data, "m", 0, None);
}
