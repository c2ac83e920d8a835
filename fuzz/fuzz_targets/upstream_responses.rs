#![no_main]
//! Fuzz target `upstream_responses`: see `llm_gateway::fuzzing::upstream_responses`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::upstream_responses(data));
