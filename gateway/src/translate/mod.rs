//! Translation between the OpenAI API and other providers' wire formats.
//!
//! The hub is OpenAI chat: each provider has a request translator (OpenAI → provider), a
//! response translator (provider JSON → OpenAI) and a stream translator (provider SSE →
//! OpenAI chunks). Pass-through paths never enter this module.

pub mod anthropic;
mod anthropic_events;
pub mod anthropic_stream;
pub mod anthropic_types;
pub mod chunks;
pub mod gemini;
pub mod gemini_stream;
pub mod gemini_types;
pub mod hub_chunk;
pub mod messages;
pub mod messages_stream;
mod openai_tools;
pub mod openai_types;
pub mod responses;
mod responses_events;
mod responses_input;
pub mod responses_reply;
pub mod responses_stream;
mod responses_stream_message;
mod responses_stream_reasoning;
pub mod stream;
