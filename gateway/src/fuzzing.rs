//! Entry points shared by the `cargo fuzz` targets in `fuzz/` and the corpus replay test
//! (`gateway/tests/fuzz_corpus.rs`), so every input a fuzzer ever saved keeps being run by
//! `cargo test`. Each function must never panic, whatever the bytes.

use bytes::Bytes;

use crate::request::ClientRequest;
use crate::translate::anthropic_stream::AnthropicToOpenAi;
use crate::translate::gemini_stream::GeminiToOpenAi;
use crate::translate::messages_stream::OpenAiToMessages;
use crate::translate::stream::translate_all;
use crate::translate::{anthropic, gemini, messages};

/// Names of the fuzz targets, as directories under `fuzz/corpus/`.
pub const TARGETS: [&str; 4] = [
    "stream_translators",
    "openai_request",
    "messages_request",
    "upstream_responses",
];

/// Runs the named target on `data`.
pub fn run(target: &str, data: &[u8]) {
    match target {
        "stream_translators" => stream_translators(data),
        "openai_request" => openai_request(data),
        "messages_request" => messages_request(data),
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

/// Every JSON response translator.
pub fn upstream_responses(data: &[u8]) {
    let _ = anthropic::to_openai_completion(data, 0);
    let _ = gemini::to_openai_completion(data, "m", 0);
    let _ = messages::to_anthropic_message(data, "m");
}
