//! Event-by-event stream translation: upstream SSE events in, client SSE events out.

use bytes::{Bytes, BytesMut};

use crate::request::TokenUsage;
use crate::sse::DEFAULT_MAX_EVENT_BYTES;
use crate::sse::{SseEvent, Transform, next_event, parse_event};

/// Translates one upstream stream protocol into another, one event at a time.
pub trait EventTranslator: Send + 'static {
    /// Handles one upstream event, appending client events to `out`.
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut);
    /// Appends the closing client events when the upstream ended.
    fn end(&mut self, out: &mut BytesMut);
    /// The terminal error event in the client's protocol.
    fn error_event(&self, message: &str, code: &str) -> Bytes;
    /// Usage seen so far.
    fn usage(&self) -> Option<TokenUsage>;
    /// Whether the client's stream is complete (its terminal event sent): nothing more is
    /// read, and a later failure adds no second terminal event.
    fn finished(&self) -> bool {
        false
    }
}

/// What one event of a hub (OpenAI chat) stream says, for translators to a client protocol.
#[derive(Debug)]
pub enum HubEvent<T> {
    /// `[DONE]`.
    Done,
    /// An error object; its message, sanitised.
    Error(String),
    /// A chunk.
    Chunk(T),
    /// Neither of those.
    Undecodable,
}

impl<T: serde::de::DeserializeOwned> HubEvent<T> {
    /// Reads one event's data.
    pub fn of(sse: &SseEvent<'_>) -> Self {
        if sse.data == "[DONE]" {
            return Self::Done;
        }
        let value: serde_json::Value = serde_json::from_str(&sse.data).unwrap_or_default();
        if let Some(message) = value
            .pointer("/error/message")
            .and_then(serde_json::Value::as_str)
        {
            return Self::Error(crate::sanitize::sanitize(message, None));
        }
        serde_json::from_value(value).map_or(Self::Undecodable, Self::Chunk)
    }
}

/// Adapts an [`EventTranslator`] to the relay's [`Transform`]: buffers bytes until events are
/// complete (line endings and UTF-8 may be split anywhere), then translates them.
///
/// The buffer is bounded: an event longer than `max_event_bytes` (complete or still being
/// assembled) ends the stream with the translator's error event naming
/// `MAX_UPSTREAM_EVENT_BYTES`, and everything after it is discarded unread, so an upstream
/// that never terminates an event cannot grow the gateway's memory. Whether an event is over
/// the cap depends only on its length, never on how the upstream split it into reads.
#[derive(Debug)]
pub struct EventTransform<T> {
    buffer: BytesMut,
    translator: T,
    max_event_bytes: usize,
    /// Set once the cap was exceeded: the error event went out, nothing more will.
    overflowed: bool,
    /// Upstream events that carried completion text or arguments (billing a stream cut short).
    delivered: u64,
}

impl<T> EventTransform<T> {
    /// Wraps a translator, with the default event cap.
    pub fn new(translator: T) -> Self {
        Self {
            buffer: BytesMut::new(),
            translator,
            max_event_bytes: DEFAULT_MAX_EVENT_BYTES,
            overflowed: false,
            delivered: 0,
        }
    }

    /// Sets the longest upstream event (in bytes, blank line included) assembled.
    pub fn with_max_event_bytes(mut self, limit: usize) -> Self {
        self.max_event_bytes = limit;
        self
    }
}

impl<T: EventTranslator> EventTransform<T> {
    /// Ends the stream over the cap: frees the buffer and returns the terminal error event.
    fn overflow(&mut self) -> Bytes {
        self.overflowed = true;
        self.buffer = BytesMut::new();
        let limit = self.max_event_bytes;
        tracing::warn!(
            limit,
            "upstream stream event exceeded MAX_UPSTREAM_EVENT_BYTES; stream ended"
        );
        self.translator.error_event(
            &format!(
                "the upstream sent a stream event larger than MAX_UPSTREAM_EVENT_BYTES ({limit} bytes)"
            ),
            "upstream_error",
        )
    }
}

impl<T: EventTranslator> Transform for EventTransform<T> {
    fn delivered(&self) -> u64 {
        self.delivered
    }

    fn is_finished(&self) -> bool {
        self.overflowed || self.translator.finished()
    }

    fn push(&mut self, chunk: Bytes) -> Bytes {
        if self.overflowed {
            return Bytes::new();
        }
        self.buffer.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(raw) = next_event(&mut self.buffer) {
            if raw.len() > self.max_event_bytes {
                out.extend_from_slice(&self.overflow());
                return out.freeze();
            }
            if crate::sse::usage_scan::carries_completion(&raw) {
                self.delivered += 1;
            }
            if let Some(event) = parse_event(&raw) {
                self.translator.event(&event, &mut out);
            }
        }
        if self.buffer.len() > self.max_event_bytes {
            out.extend_from_slice(&self.overflow());
        }
        out.freeze()
    }

    fn end(&mut self) -> Bytes {
        if self.overflowed {
            return Bytes::new();
        }
        // A final event without its blank line is incomplete and discarded (WHATWG).
        let mut out = BytesMut::new();
        self.translator.end(&mut out);
        out.freeze()
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        // After the cap or the translator ended the stream, a later failure (timeout, lost
        // upstream) has nothing left to end: the client already got its one terminal event.
        if self.overflowed || self.translator.finished() {
            return Bytes::new();
        }
        self.translator.error_event(message, code)
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.translator.usage()
    }
}

/// Runs a translator over a whole recorded stream (fixtures, benchmarks, fuzzing).
pub fn translate_all<T: EventTranslator>(
    translator: T,
    input: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    translate_all_with(EventTransform::new(translator), input, chunk_size)
}

/// Runs a transform over a whole recorded stream, `chunk_size` bytes per read.
pub fn translate_all_with<T: EventTranslator>(
    mut transform: EventTransform<T>,
    input: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in input.chunks(chunk_size.max(1)) {
        out.extend_from_slice(&transform.push(Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&transform.end());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::anthropic_stream::AnthropicToOpenAi;

    const START: &[u8] =
        b"data: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"model\":\"c\"}}\n\n";

    fn run(input: &[u8], limit: usize, chunk: usize) -> String {
        let transform =
            EventTransform::new(AnthropicToOpenAi::new("c", 0, false)).with_max_event_bytes(limit);
        String::from_utf8_lossy(&translate_all_with(transform, input, chunk)).into_owned()
    }

    #[test]
    fn an_event_over_the_cap_ends_the_stream_with_one_error_naming_the_limit() {
        let mut input = START.to_vec();
        input.extend_from_slice(b"data: ");
        input.extend(std::iter::repeat_n(b'x', 4096));
        for chunk in [1, 100, 4096, usize::MAX] {
            let output = run(&input, 1024, chunk);
            let errors = output
                .matches("MAX_UPSTREAM_EVENT_BYTES (1024 bytes)")
                .count();
            assert_eq!(errors, 1, "split at {chunk}: {output}");
            assert!(output.starts_with("data: {\"id\":\"m\""), "{output}");
            // The upstream's end adds nothing (no second error about a missing message_stop).
            assert!(!output.contains("before message_stop"), "{output}");
        }
        // Nor does a later failure the relay reports (a timeout, a lost upstream).
        let mut transform =
            EventTransform::new(AnthropicToOpenAi::new("c", 0, false)).with_max_event_bytes(16);
        let ended = transform.push(Bytes::from_static(b"data: 0123456789abcdef"));
        assert!(!ended.is_empty());
        let later = transform.error_event("timed out", "upstream_timeout");
        assert!(later.is_empty());
    }

    #[test]
    fn a_terminated_event_over_the_cap_fails_however_it_was_split() {
        let mut input = START.to_vec();
        input.extend_from_slice(b"data: ");
        input.extend(std::iter::repeat_n(b'x', 2000));
        input.extend_from_slice(b"\n\n");
        for chunk in [1, 7, usize::MAX] {
            assert!(run(&input, 1024, chunk).contains("MAX_UPSTREAM_EVENT_BYTES"));
        }
        assert!(!run(START, START.len(), 1).contains("MAX_UPSTREAM_EVENT_BYTES"));
    }
}
