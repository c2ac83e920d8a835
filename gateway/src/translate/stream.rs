//! Event-by-event stream translation: upstream SSE events in, client SSE events out.

use bytes::{Bytes, BytesMut};

use crate::openai::Usage;
use crate::providers::sse::{SseEvent, Transform, next_event, parse_event};

/// Translates one upstream stream protocol into another, one event at a time.
pub trait EventTranslator: Send + 'static {
    /// Handles one upstream event, appending client events to `out`.
    fn event(&mut self, event: &SseEvent<'_>, out: &mut BytesMut);
    /// Appends the closing client events when the upstream ended.
    fn end(&mut self, out: &mut BytesMut);
    /// The terminal error event in the client's protocol.
    fn error_event(&self, message: &str, code: &str) -> Bytes;
    /// Usage seen so far.
    fn usage(&self) -> Option<Usage>;
}

/// Adapts an [`EventTranslator`] to the relay's [`Transform`]: buffers bytes until events are
/// complete (line endings and UTF-8 may be split anywhere), then translates them.
#[derive(Debug)]
pub struct EventTransform<T> {
    buffer: BytesMut,
    translator: T,
}

impl<T> EventTransform<T> {
    /// Wraps a translator.
    pub fn new(translator: T) -> Self {
        Self {
            buffer: BytesMut::new(),
            translator,
        }
    }
}

impl<T: EventTranslator> Transform for EventTransform<T> {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        self.buffer.extend_from_slice(&chunk);
        let mut out = BytesMut::new();
        while let Some(raw) = next_event(&mut self.buffer) {
            if let Some(event) = parse_event(&raw) {
                self.translator.event(&event, &mut out);
            }
        }
        out.freeze()
    }

    fn end(&mut self) -> Bytes {
        // A final event without its blank line is incomplete and discarded (WHATWG).
        let mut out = BytesMut::new();
        self.translator.end(&mut out);
        out.freeze()
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        self.translator.error_event(message, code)
    }

    fn usage(&self) -> Option<Usage> {
        self.translator.usage()
    }
}

/// Runs a translator over a whole recorded stream (fixtures, benchmarks, fuzzing).
pub fn translate_all<T: EventTranslator>(
    translator: T,
    input: &[u8],
    chunk_size: usize,
) -> Vec<u8> {
    let mut transform = EventTransform::new(translator);
    let mut out = Vec::new();
    for chunk in input.chunks(chunk_size.max(1)) {
        out.extend_from_slice(&transform.push(Bytes::copy_from_slice(chunk)));
    }
    out.extend_from_slice(&transform.end());
    out
}
