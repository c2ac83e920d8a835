//! The drain deadline for streams: a stream still running when `DRAIN_TIMEOUT` passes is ended
//! on purpose with a terminal error event in its API's format (no `[DONE]`, so clients see it
//! failed and may retry elsewhere), rather than cut mid-byte by the process exit. Ending it
//! drops the upstream relay and the reservation, so its usage is accounted and settled, and its
//! access-log line is written with `error="shutdown"`.

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use super::Finish;
use crate::error::ErrorLabel;

/// What clients are told when the gateway ends their stream at shutdown.
const MESSAGE: &str = "the gateway shut down before the stream ended; retry the request";

/// The client protocol of a stream, for the shape of its terminal event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamApi {
    /// OpenAI chat completions: `data: {"error": …}`.
    OpenAi,
    /// Anthropic messages: `event: error` with an `overloaded_error`.
    Anthropic,
    /// OpenAI Responses: `event: error` with code `gateway_shutdown`.
    Responses,
}

impl StreamApi {
    /// The event, after a blank line: a pass-through stream may have been cut inside an
    /// event, which the blank line ends (a client skips it, or an empty event, either way)
    /// instead of gluing the error onto it.
    fn terminal_event(self) -> Bytes {
        let event = match self {
            Self::OpenAi => crate::sse::error_event(MESSAGE, "gateway_shutdown"),
            Self::Anthropic => {
                crate::translate::messages_stream::error_event("overloaded_error", MESSAGE)
            }
            Self::Responses => {
                crate::translate::responses_stream::error_event(MESSAGE, "gateway_shutdown")
            }
        };
        [&b"\n\n"[..], &event].concat().into()
    }
}

/// A streamed response body that ends itself when `deadline` is cancelled; it holds the
/// request's [`Finish`] so the access-log line records the cut.
pub struct Cutoff {
    inner: Option<Body>,
    deadline: CancellationToken,
    waiting: Option<Pin<Box<WaitForCancellationFutureOwned>>>,
    api: StreamApi,
    finish: Finish,
}

impl std::fmt::Debug for Cutoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cutoff")
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Cutoff {
    /// Wraps `inner`.
    pub(super) fn new(
        inner: Body,
        deadline: CancellationToken,
        api: StreamApi,
        finish: Finish,
    ) -> Self {
        Self {
            inner: Some(inner),
            deadline,
            waiting: None,
            api,
            finish,
        }
    }

    /// Ends the stream: the inner body (relay, reservation) is dropped now.
    fn cut(&mut self) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        self.inner = None;
        self.waiting = None;
        self.finish.error = Some(ErrorLabel("shutdown"));
        tracing::warn!(
            path = %self.finish.path,
            "drain deadline passed; stream ended with an error event"
        );
        Poll::Ready(Some(Ok(Frame::data(self.api.terminal_event()))))
    }
}

impl HttpBody for Cutoff {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        // Checked before each frame so a stream that never pauses still stops at the deadline.
        if this.deadline.is_cancelled() {
            return this.cut();
        }
        match Pin::new(inner).poll_frame(cx) {
            Poll::Pending => {}
            ready => return ready,
        }
        let waiting = this
            .waiting
            .get_or_insert_with(|| Box::pin(this.deadline.clone().cancelled_owned()));
        match waiting.as_mut().poll(cx) {
            Poll::Ready(()) => this.cut(),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(SizeHint::default, HttpBody::size_hint)
    }
}
