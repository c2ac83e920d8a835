//! Server-sent events: relaying an upstream stream to the client through a `Transform`
//! (byte for byte for pass-through, event by event for translation).
//!
//! The relay forwards each upstream chunk unchanged as soon as it arrives (no re-encoding, no
//! added latency) and lets `usage_scan` read the usage chunk from it in place. This is
//! hand-written rather than `eventsource-stream` because that crate yields decoded events,
//! and re-encoding them would not be byte-identical. Event boundaries follow WHATWG: a blank
//! line ends an event, with LF, CRLF or CR line endings, split anywhere across reads.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::Stream;
use serde_json::json;
use tokio::time::{Instant, Sleep};

use crate::accounting::Accounting;

pub mod chain;
pub mod transcript;
pub mod usage_scan;

pub use chain::Then;
pub use usage_scan::UsageScanner;

/// Default of `MAX_UPSTREAM_EVENT_BYTES`: one SSE event of a translated stream is a token or
/// a tool-call fragment (hundreds of bytes; Gemini sends a whole function call in one), so
/// 1 MiB only ever stops an upstream that never ends its event.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 1024 * 1024;

/// Index just past the blank line ending the first complete event, if any.
pub(super) fn event_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    // Jump from line ending to line ending (SIMD search): events are hundreds of bytes.
    while let Some(found) = memchr::memchr2(b'\n', b'\r', &buf[i..]) {
        i += found;
        let line_end = match buf[i] {
            b'\n' => i + 1,
            b'\r' if buf.get(i + 1) == Some(&b'\n') => i + 2,
            // A CR at the end of the buffer may be the first half of a CRLF.
            b'\r' if i + 1 == buf.len() => return None,
            b'\r' => i + 1,
            _ => {
                i += 1;
                continue;
            }
        };
        match buf.get(line_end) {
            Some(b'\n') => return Some(line_end + 1),
            Some(b'\r') if buf.get(line_end + 1) == Some(&b'\n') => return Some(line_end + 2),
            Some(b'\r') if line_end + 1 < buf.len() => return Some(line_end + 1),
            _ => i = line_end,
        }
    }
    None
}

/// The terminal event sent when a stream fails after the 200 was committed: an OpenAI-style
/// error object, and deliberately no `[DONE]`, so clients see the stream as failed.
pub fn error_event(message: &str, code: &str) -> Bytes {
    let body = json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": code}});
    Bytes::from(format!("data: {body}\n\n"))
}

/// One parsed SSE event.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SseEvent<'a> {
    /// The `event:` field, if any.
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Parses one complete event (as found by [`next_event`]); comments and unknown fields are
/// skipped. Returns `None` for an event without data (e.g. only a comment).
pub fn parse_event(raw: &[u8]) -> Option<SseEvent<'_>> {
    let text = std::str::from_utf8(raw).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut event = SseEvent::default();
    let mut has_data = false;
    for line in text
        .split(['\n', '\r'])
        .filter(|l| !l.is_empty() && !l.starts_with(':'))
    {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = Some(value),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            _ => {}
        }
    }
    has_data.then_some(event)
}

/// Splits the first complete event off `buf`, if there is one.
pub fn next_event(buf: &mut BytesMut) -> Option<BytesMut> {
    event_end(buf).map(|end| buf.split_to(end))
}

/// Turns upstream stream bytes into client stream bytes.
pub trait Transform: Send + 'static {
    /// Client bytes for one upstream chunk (may be empty while an event is incomplete).
    fn push(&mut self, chunk: Bytes) -> Bytes;
    /// Client bytes when the upstream ended cleanly.
    fn end(&mut self) -> Bytes;
    /// The terminal event for a failure after the response started, in the client's format.
    fn error_event(&self, message: &str, code: &str) -> Bytes;
    /// Token usage seen so far.
    fn usage(&self) -> Option<crate::request::TokenUsage>;
    /// Completion events relayed so far (for billing a stream without a usage report).
    fn delivered(&self) -> u64 {
        0
    }
    /// Whether the transform has ended the client's stream (after a terminal error event of
    /// its own, e.g. an event over `MAX_UPSTREAM_EVENT_BYTES`): the relay stops reading.
    fn is_finished(&self) -> bool {
        false
    }
}

/// The identity transform: bytes go through untouched, a copy is scanned for usage.
#[derive(Debug, Default)]
pub struct PassThrough {
    scanner: UsageScanner,
    usage: Option<crate::request::TokenUsage>,
}

impl PassThrough {
    /// Also hands a Responses stream's terminal event to `watch` as it passes.
    pub fn watching(watch: usage_scan::Watch) -> Self {
        Self {
            scanner: UsageScanner::watching(watch),
            usage: None,
        }
    }
}

impl Transform for PassThrough {
    fn push(&mut self, chunk: Bytes) -> Bytes {
        if let Some(usage) = self.scanner.feed(&chunk) {
            self.usage = Some(usage);
        }
        chunk
    }

    fn end(&mut self) -> Bytes {
        Bytes::new()
    }

    fn error_event(&self, message: &str, code: &str) -> Bytes {
        error_event(message, code)
    }

    fn usage(&self) -> Option<crate::request::TokenUsage> {
        self.usage
    }

    fn delivered(&self) -> u64 {
        self.scanner.delivered()
    }
}

/// Relays an upstream byte stream to the client through a [`Transform`], enforcing a
/// deadline; usage is accounted when the relay is dropped (stream end or client gone).
///
/// Timers are armed only while the upstream is silent: with data flowing, the deadline is a
/// clock comparison and the idle timer is not touched (it is pushed back lazily when it
/// fires), so a 200-chunk stream costs no timer-wheel work per chunk.
pub struct Relay<S, T: Transform> {
    inner: S,
    transform: T,
    accounting: Option<Accounting>,
    deadline: Pin<Box<Sleep>>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
    last_data: Instant,
    finished: bool,
    /// Whether the upstream ended its stream (not cut by the client, an error or a timeout).
    ended: bool,
    hold: Option<Hold>,
    /// What a sampled trace records of the reply sent.
    transcript: Option<transcript::Transcript>,
    /// Client bytes waiting for a write registered in `hold` while they were produced.
    held: Option<(Bytes, Pending)>,
}

/// A write still in progress.
pub type Pending = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Where a transform's side effect registers a write the client must not outrun: the relay
/// holds the bytes produced with it until it is done (a kept Responses response lands before
/// the client, seeing it complete, can continue it on another replica).
pub type Hold = std::sync::Arc<std::sync::Mutex<Option<Pending>>>;

impl<S, T: Transform> std::fmt::Debug for Relay<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("finished", &self.finished)
            .finish_non_exhaustive()
    }
}

impl<S, T: Transform> Relay<S, T> {
    /// Wraps `inner`; the stream is cut with an error event once `remaining` has passed.
    /// Without `accounting` (an outer translation of an already accounted stream) nothing is
    /// recorded.
    pub fn new(
        inner: S,
        transform: T,
        accounting: Option<Accounting>,
        remaining: Duration,
    ) -> Self {
        let now = Instant::now();
        let transcribes = accounting.as_ref().and_then(Accounting::transcribes);
        Self {
            inner,
            transform,
            accounting,
            transcript: transcribes
                .map(|(protocol, text)| transcript::Transcript::new(protocol, text)),
            deadline: Box::pin(tokio::time::sleep_until(now + remaining)),
            idle: None,
            last_data: now,
            finished: false,
            ended: false,
            hold: None,
            held: None,
        }
    }

    /// Holds client bytes back while a write registered in `hold` is in progress.
    pub fn with_hold(mut self, hold: Option<Hold>) -> Self {
        self.hold = hold;
        self
    }

    /// Also ends the stream with an error event after `limit` without upstream bytes.
    pub fn with_idle_timeout(mut self, limit: Duration) -> Self {
        self.idle = Some((limit, Box::pin(tokio::time::sleep(limit))));
        self
    }
}

impl<S, T: Transform> Drop for Relay<S, T> {
    fn drop(&mut self) {
        let Some(accounting) = self.accounting.as_mut() else {
            return;
        };
        if let Some(transcript) = self.transcript.take() {
            let reasons = transcript.finish_reasons().to_vec();
            accounting.completed(reasons, transcript.text());
        }
        let delivered = self.transform.delivered();
        match self.transform.usage() {
            // A stream cut short may have reported usage before its end (Anthropic's input at
            // `message_start`): its output is at least the completion events delivered.
            Some(mut usage) if !self.ended => {
                usage.completion_tokens = usage.completion_tokens.max(delivered);
                accounting.usage(usage);
            }
            Some(usage) => accounting.usage(usage),
            None => accounting.partial(delivered),
        }
    }
}

impl<S, E, T> Stream for Relay<S, T>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
    T: Transform + Unpin,
{
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if let Some((_, write)) = this.held.as_mut() {
                if write.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                let bytes = this.held.take().map(|(bytes, _)| bytes).unwrap_or_default();
                return Poll::Ready(Some(Ok(bytes)));
            }
            if this.finished {
                return Poll::Ready(None);
            }
            let out = match Pin::new(&mut this.inner).poll_next(cx) {
                Poll::Pending => return this.poll_timers(cx),
                Poll::Ready(Some(Ok(chunk))) => {
                    let now = Instant::now();
                    if now >= this.deadline.deadline() {
                        return Poll::Ready(Some(Ok(this.total_timeout())));
                    }
                    this.last_data = now;
                    let out = this.transform.push(chunk);
                    this.finished = this.transform.is_finished();
                    out
                }
                Poll::Ready(Some(Err(e))) => {
                    this.finished = true;
                    tracing::warn!(error = %e, "upstream stream failed mid-response");
                    this.transform
                        .error_event("the upstream stream failed mid-response", "upstream_error")
                }
                Poll::Ready(None) => {
                    this.finished = true;
                    this.ended = true;
                    this.transform.end()
                }
            };
            if !out.is_empty() {
                if let Some(accounting) = this.accounting.as_mut() {
                    accounting.first_byte();
                }
                if let Some(transcript) = this.transcript.as_mut() {
                    transcript.push(&out);
                }
                let registered = this.hold.as_ref().and_then(|h| h.lock().ok()?.take());
                if let Some(write) = registered {
                    this.held = Some((out, write));
                    continue;
                }
                return Poll::Ready(Some(Ok(out)));
            }
        }
    }
}

impl<S, T: Transform> Relay<S, T> {
    /// While the upstream is silent: the error event of an expired deadline or idle limit,
    /// else `Pending` with both timers armed.
    fn poll_timers<E>(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, E>>> {
        if self.deadline.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Ok(self.total_timeout())));
        }
        if let Some((limit, idle)) = self.idle.as_mut() {
            let due = self.last_data + *limit;
            if idle.deadline() < due {
                idle.as_mut().reset(due);
            }
            if idle.as_mut().poll(cx).is_ready() {
                self.finished = true;
                let event = self.transform.error_event(
                    "the upstream stream stalled (no data within the idle timeout)",
                    "upstream_timeout",
                );
                return Poll::Ready(Some(Ok(event)));
            }
        }
        Poll::Pending
    }

    fn total_timeout(&mut self) -> Bytes {
        self.finished = true;
        self.transform.error_event(
            "the upstream stream exceeded the total timeout",
            "upstream_timeout",
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_end_handles_every_line_ending() {
        assert_eq!(event_end(b"data: a\n\nrest"), Some(9));
        assert_eq!(event_end(b"data: a\r\n\r\nrest"), Some(11));
        assert_eq!(event_end(b"data: a\r\rrest"), Some(9));
        assert_eq!(event_end(b"data: a\r\n"), None);
        assert_eq!(event_end(b"data: a\r"), None);
    }

    #[tokio::test]
    async fn bytes_that_registered_a_write_wait_until_it_lands() {
        use futures_util::{FutureExt, StreamExt};
        let hold = Hold::default();
        let (land, landed) = tokio::sync::oneshot::channel::<()>();
        let slot = hold.clone();
        let watch: usage_scan::Watch = Box::new(move |_| {
            let write: Pending = Box::pin(async {
                let _ = landed.await;
            });
            *slot.lock().unwrap() = Some(write);
        });
        let event = Bytes::from_static(
            b"event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{}}\n\n",
        );
        let upstream = futures_util::stream::iter([Ok::<_, std::io::Error>(event.clone())]);
        let transform = PassThrough::watching(watch);
        let mut relay =
            Relay::new(upstream, transform, None, Duration::from_secs(600)).with_hold(Some(hold));
        assert!(relay.next().now_or_never().is_none(), "held while writing");
        land.send(()).unwrap();
        assert_eq!(relay.next().await.unwrap().unwrap(), event);
        assert!(relay.next().await.is_none());
    }
}
