//! Replies too large for a gateway to hold: a JSON body of any length, and an SSE event that
//! is never terminated. Both are generated piece by piece as the connection takes them (the
//! mock allocates neither), and count the bytes handed over, so a test can tell whether the
//! gateway read the whole reply or dropped the connection.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};

/// Bytes per generated piece.
const PIECE: usize = 64 * 1024;
/// What every generated piece is cut from.
static FILLER: [u8; PIECE] = [b'x'; PIECE];

/// What an [`Oversized`] reply looks like.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A 200 `application/json` object with one long string, sent chunked (no
    /// `Content-Length`, so the gateway can only find out by reading).
    Json,
    /// A 200 `text/event-stream` whose first event is a `data:` line that never ends; the
    /// stream then stays open without sending anything more.
    UnterminatedEvent,
}

/// An oversized reply, scripted with [`crate::Fault::oversized`] (for every endpoint).
#[derive(Clone, Debug)]
pub struct Oversized {
    /// Its shape.
    pub shape: Shape,
    /// Its length in bytes.
    pub bytes: usize,
    sent: Arc<AtomicUsize>,
}

impl Oversized {
    /// A JSON body of `bytes` bytes.
    pub fn json(bytes: usize) -> Self {
        Self::new(Shape::Json, bytes)
    }

    /// An SSE stream whose first event is `bytes` bytes long and never terminated.
    pub fn unterminated_event(bytes: usize) -> Self {
        Self::new(Shape::UnterminatedEvent, bytes)
    }

    fn new(shape: Shape, bytes: usize) -> Self {
        Self {
            shape,
            bytes,
            sent: Arc::default(),
        }
    }

    /// Bytes handed to the connection so far, over every reply sent with this script.
    pub fn sent(&self) -> usize {
        self.sent.load(Ordering::Relaxed)
    }

    /// The reply.
    pub(crate) fn response(&self) -> Response {
        match self.shape {
            Shape::Json => {
                let head: &'static [u8] = b"{\"padding\":\"";
                let tail: &'static [u8] = b"\"}";
                let filler = self.bytes.saturating_sub(head.len() + tail.len());
                let end = futures_util::stream::iter([Ok(Bytes::from_static(tail))]);
                let pieces = generated(head, filler, self.sent.clone()).chain(end);
                let body = Body::from_stream(pieces);
                ([("content-type", "application/json")], body).into_response()
            }
            Shape::UnterminatedEvent => {
                let head: &'static [u8] = b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"";
                let filler = self.bytes.saturating_sub(head.len());
                let pieces = generated(head, filler, self.sent.clone())
                    .chain(futures_util::stream::pending());
                let body = Body::from_stream(pieces);
                ([("content-type", "text/event-stream")], body).into_response()
            }
        }
    }
}

/// `head`, then `filler` bytes of `x`, one piece at a time, counted into `sent` as they go.
fn generated(
    head: &'static [u8],
    filler: usize,
    sent: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    let pieces = (0..filler.div_ceil(PIECE))
        .map(move |i| Bytes::from_static(&FILLER[..PIECE.min(filler - i * PIECE)]));
    futures_util::stream::iter(std::iter::once(Bytes::from_static(head)).chain(pieces)).map(
        move |piece| {
            sent.fetch_add(piece.len(), Ordering::Relaxed);
            Ok(piece)
        },
    )
}
