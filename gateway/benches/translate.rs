//! Micro-benchmarks of the stream translators: a 100-event upstream stream (98 text deltas
//! plus framing) translated to the client's protocol, fed in network-sized chunks. Divide the
//! reported time by 100 for the cost per event.
//!
//! Run: `cargo bench -p llm-gateway --bench translate`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use llm_gateway::translate::anthropic_stream::AnthropicToOpenAi;
use llm_gateway::translate::gemini_stream::GeminiToOpenAi;
use llm_gateway::translate::messages_stream::OpenAiToMessages;
use llm_gateway::translate::responses_stream::HubToResponses;
use llm_gateway::translate::stream::translate_all;

const EVENTS: usize = 100;
const CHUNK: usize = 1460;

fn anthropic_stream() -> Vec<u8> {
    let mut s = String::from(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":1}}}\n\n",
    );
    for i in 0..EVENTS - 2 {
        s.push_str(&format!("event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":\"token {i} \"}}}}\n\n"));
    }
    s.push_str("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
    s.into_bytes()
}

fn gemini_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS {
        let finish = if i == EVENTS - 1 {
            ",\"finishReason\":\"STOP\""
        } else {
            ""
        };
        s.push_str(&format!("data: {{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{{\"text\":\"token {i} \"}}]}},\"index\":0{finish}}}]}}\r\n\r\n"));
    }
    s.into_bytes()
}

fn openai_stream() -> Vec<u8> {
    let mut s = String::new();
    for i in 0..EVENTS - 1 {
        s.push_str(&format!("data: {{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"created\":1,\"model\":\"gpt\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"token {i} \"}},\"finish_reason\":null}}]}}\n\n"));
    }
    s.push_str("data: [DONE]\n\n");
    s.into_bytes()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("stream_translation_100_events");
    group.throughput(Throughput::Elements(EVENTS as u64));
    let anthropic = anthropic_stream();
    group.bench_function("anthropic_to_openai", |b| {
        b.iter(|| {
            translate_all(
                AnthropicToOpenAi::new("claude", 1, true),
                black_box(&anthropic),
                CHUNK,
            )
        })
    });
    let gemini = gemini_stream();
    group.bench_function("gemini_to_openai", |b| {
        b.iter(|| {
            translate_all(
                GeminiToOpenAi::new("gemini", 1, true),
                black_box(&gemini),
                CHUNK,
            )
        })
    });
    let openai = openai_stream();
    group.bench_function("openai_to_anthropic_messages", |b| {
        b.iter(|| translate_all(OpenAiToMessages::new("gpt"), black_box(&openai), CHUNK))
    });
    group.bench_function("openai_to_responses", |b| {
        b.iter(|| translate_all(HubToResponses::new("gpt", 1), black_box(&openai), CHUNK))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
