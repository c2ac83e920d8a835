#![no_main]
//! Fuzz target `stream_translators`: see `llm_gateway::fuzzing::stream_translators`.

libfuzzer_sys::fuzz_target!(|data: &[u8]| llm_gateway::fuzzing::stream_translators(data));
