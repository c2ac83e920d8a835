//! Transforms composed in one relay: a stream that is translated twice (an upstream's events
//! to the hub's, then the hub's to the client's) is read, timed and accounted once.

use bytes::{Bytes, BytesMut};

use super::Transform;
use crate::request::TokenUsage;

/// A boxed transform is a transform: the relay's transform is chosen per request (pass-through
/// or translated), and one dynamic call per chunk costs nothing beside the chunk's own work.
impl Transform for Box<dyn Transform> {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        (**self).push(chunk)
    }

    fn end(&mut self) -> Bytes {
        (**self).end()
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        (**self).error_event(message, code)
    }

    fn usage(&self) -> Option<TokenUsage> {
        (**self).usage()
    }

    fn delivered(&self) -> u64 {
        (**self).delivered()
    }

    fn is_finished(&self) -> bool {
        (**self).is_finished()
    }
}

/// `first`'s output fed to `second`. Usage and delivered events are `first`'s, which sees the
/// upstream's own bytes; failures are reported in `second`'s format, the client's.
#[derive(Debug)]
pub struct Then<A, B> {
    first: A,
    second: B,
}

impl<A, B> Then<A, B> {
    /// Composes `first`, then `second`.
    pub fn new(first: A, second: B) -> Self {
        Self { first, second }
    }
}

impl<A: Transform, B: Transform> Transform for Then<A, B> {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        let middle = self.first.push(chunk);
        if middle.is_empty() {
            return middle;
        }
        self.second.push(middle)
    }

    fn end(&mut self) -> Bytes {
        let middle = self.first.end();
        let mut out = BytesMut::new();
        if !middle.is_empty() {
            out.extend_from_slice(&self.second.push(middle));
        }
        out.extend_from_slice(&self.second.end());
        out.freeze()
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        // A first stage that ended the stream itself already sent its one terminal event.
        if self.first.is_finished() {
            return Bytes::new();
        }
        self.second.error_event(message, code)
    }

    fn usage(&self) -> Option<TokenUsage> {
        self.first.usage().or_else(|| self.second.usage())
    }

    fn delivered(&self) -> u64 {
        self.first.delivered()
    }

    fn is_finished(&self) -> bool {
        self.first.is_finished() || self.second.is_finished()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::PassThrough;
    use crate::translate::messages_stream::OpenAiToMessages;
    use crate::translate::stream::EventTransform;

    const STREAM: &[u8] = b"data: {\"id\":\"c\",\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":1}}\n\ndata: [DONE]\n\n";

    fn chained() -> Then<PassThrough, EventTransform<OpenAiToMessages>> {
        Then::new(
            PassThrough::default(),
            EventTransform::new(OpenAiToMessages::new("route")),
        )
    }

    #[test]
    fn usage_and_delivered_events_come_from_the_upstream_bytes() {
        for split in [1, 7, STREAM.len()] {
            let mut chain = chained();
            let mut out = Vec::new();
            for chunk in STREAM.chunks(split) {
                out.extend_from_slice(&chain.push(Bytes::copy_from_slice(chunk)));
            }
            out.extend_from_slice(&chain.end());
            let text = String::from_utf8_lossy(&out);
            assert!(
                text.contains("event: message_stop"),
                "split {split}: {text}"
            );
            let usage = chain.usage().expect("usage seen in the upstream bytes");
            assert_eq!((usage.prompt_tokens, usage.completion_tokens), (5, 1));
        }
    }

    #[test]
    fn a_failure_is_reported_in_the_clients_format() {
        let mut chain = chained();
        let _ = chain.push(Bytes::from_static(&STREAM[..80]));
        let event = chain.error_event("stalled", "upstream_timeout");
        assert!(event.starts_with(b"event: error\n"), "{event:?}");
    }
}
