#![no_main]
//! Fuzz target `responses_request`: see `llm_gateway::fuzzing::responses_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::responses_request(data));
