//! Usage in a pass-through event stream: complete events are found in a copy-free scan of
//! each upstream chunk (only an incomplete tail is kept), the ones carrying completion text
//! are counted, and the usage report is decoded when one passes. A Responses stream's final
//! response can be handed on as it passes too (to keep it for continuations).

use bytes::BytesMut;

use crate::sse::event_end;

/// Largest partial event kept for inspection; longer events are forwarded but not inspected.
const MAX_PENDING: usize = 1 << 20;

/// Largest partial event kept while watching for a Responses stream's final response, which
/// carries the whole output (the response store's cap per response).
const MAX_WATCHED: usize = crate::response_store::MAX_RESPONSE_BYTES;

/// Called with the data of a Responses stream's terminal event (`response.completed` or
/// `response.incomplete`), whose `response` is the whole response.
pub type Watch = Box<dyn FnOnce(&serde_json::Value) + Send>;

/// Finds complete SSE events in a byte stream and reports usage carried in their data.
#[derive(Default)]
pub struct UsageScanner {
    pending: BytesMut,
    seen: crate::request::TokenUsage,
    delivered: u64,
    watch: Option<Watch>,
}

impl std::fmt::Debug for UsageScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageScanner")
            .field("delivered", &self.delivered)
            .field("watching", &self.watch.is_some())
            .finish_non_exhaustive()
    }
}

impl UsageScanner {
    /// A scanner that also hands a Responses stream's terminal event to `watch`.
    pub fn watching(watch: Watch) -> Self {
        Self {
            watch: Some(watch),
            ..Self::default()
        }
    }

    /// Feeds a chunk; returns usage found in any event it completed.
    ///
    /// Upstream reads usually end on an event boundary, so the chunk is scanned where it lies
    /// and only an incomplete tail is copied.
    pub fn feed(&mut self, chunk: &[u8]) -> Option<crate::request::TokenUsage> {
        let mut found = None;
        if self.pending.is_empty() {
            let mut rest = chunk;
            while let Some(end) = event_end(rest) {
                self.inspect(&rest[..end], &mut found);
                rest = &rest[end..];
            }
            self.pending.extend_from_slice(rest);
        } else {
            self.pending.extend_from_slice(chunk);
            while let Some(end) = event_end(&self.pending) {
                let event = self.pending.split_to(end);
                self.inspect(&event, &mut found);
            }
        }
        let cap = if self.watch.is_some() {
            MAX_WATCHED
        } else {
            MAX_PENDING
        };
        if self.pending.len() > cap {
            self.pending.clear();
        }
        found
    }

    fn inspect(&mut self, event: &[u8], found: &mut Option<crate::request::TokenUsage>) {
        if carries_completion(event) {
            self.delivered += 1;
        }
        let terminal = self.watch.is_some()
            && [&b"response.completed"[..], b"response.incomplete"]
                .iter()
                .any(|name| memchr::memmem::find(event, name).is_some());
        if !terminal && memchr::memmem::find(event, b"\"usage\"").is_none() {
            return;
        }
        let Some(data) = data_of(event) else {
            return;
        };
        if terminal
            && matches!(
                data["type"].as_str(),
                Some("response.completed" | "response.incomplete")
            )
            && let Some(watch) = self.watch.take()
        {
            watch(&data);
        }
        if let Some(usage) = usage_in(&data) {
            // Anthropic reports input tokens at message_start and the final output count at
            // message_delta; counts only grow, so the maximum of each is the total.
            self.seen = self.seen.max(usage);
            *found = Some(self.seen);
        }
    }

    /// Complete events that carried completion text or tool-call arguments.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }
}

/// Whether an event carries generated text or tool-call arguments (about one token per event;
/// used to bill a stream that ends without a usage report): an OpenAI chat chunk's `content` or
/// `arguments`, a Responses delta event's string `delta`, or the `text` of a legacy completion
/// chunk or an Anthropic text delta.
pub(crate) fn carries_completion(event: &[u8]) -> bool {
    [
        &b"\"content\":\""[..],
        b"\"arguments\":\"",
        b"\"delta\":\"",
        b"\"text\":\"",
    ]
    .iter()
    .any(|needle| {
        memchr::memmem::find(event, needle)
            .is_some_and(|at| event.get(at + needle.len()).is_some_and(|b| *b != b'"'))
    })
}

/// An event's data, decoded.
fn data_of(event: &[u8]) -> Option<serde_json::Value> {
    let text = std::str::from_utf8(event).ok()?;
    let data: String = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.strip_prefix(' ').unwrap_or(d))
        .collect::<Vec<_>>()
        .join("\n");
    serde_json::from_str(&data).ok()
}

fn usage_in(value: &serde_json::Value) -> Option<crate::request::TokenUsage> {
    let usage = value
        .get("usage")
        .or_else(|| value.pointer("/message/usage"))
        .or_else(|| value.pointer("/response/usage"))?;
    crate::request::TokenUsage::from_json(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_usage_across_split_reads_and_line_endings() {
        let stream = b"data: {\"choices\":[],\"usage\":null}\r\n\r\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":5}}\r\n\r\ndata: [DONE]\r\n\r\n";
        for split in 1..stream.len() {
            let mut scanner = UsageScanner::default();
            let a = scanner.feed(&stream[..split]);
            let b = scanner.feed(&stream[split..]);
            let usage = a.or(b).expect("usage found");
            assert_eq!(
                (usage.prompt_tokens, usage.completion_tokens),
                (3, 5),
                "split at {split}"
            );
        }
    }

    #[test]
    fn counts_delivered_text_in_every_api_it_relays() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n",
            "data: {\"choices\":[{\"text\":\"b\",\"index\":0}]}\n\n",
            "event: content_block_delta\ndata: {\"delta\":{\"type\":\"text_delta\",\"text\":\"c\"}}\n\n",
            "event: response.output_text.delta\ndata: {\"delta\":\"d\"}\n\n",
            "event: content_block_start\ndata: {\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        );
        let mut scanner = UsageScanner::default();
        scanner.feed(stream.as_bytes());
        assert_eq!(
            scanner.delivered(),
            4,
            "an empty text is not a delivered token"
        );
    }
}
