#![no_main]
//! Fuzz target `messages_request`: see `llm_gateway::fuzzing::messages_request`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::messages_request(data));
