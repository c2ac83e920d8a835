#![no_main]
//! Fuzz target `openai_request`: see `llm_gateway::fuzzing::openai_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::openai_request(data));
