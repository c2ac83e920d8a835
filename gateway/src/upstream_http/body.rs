//! The body of an upstream reply. A pooled reply's body also drives its connection: each poll
//! first lets hyper's connection future read from the socket, then takes what it decoded, all
//! in the task that relays the reply, so no chunk waits for another task to be woken. At the
//! end of the body the connection goes back to the pool; a body dropped early closes it.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures_util::FutureExt;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use super::pool::{Conn, Pool};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// An upstream reply body, from either transport.
pub enum UpstreamBody {
    /// Read from a pooled connection this body drives.
    Pooled(PooledBody),
    /// Read through the general-purpose client (forward proxy, HTTP/2).
    Client(reqwest::Body),
}

impl std::fmt::Debug for UpstreamBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Pooled(_) => f.write_str("Pooled"),
            Self::Client(body) => f.debug_tuple("Client").field(body).finish(),
        }
    }
}

/// A reply body and the connection it arrives on.
pub struct PooledBody {
    body: Incoming,
    /// The connection, until the body ends (then it is parked) or the driver finishes.
    conn: Option<Conn>,
    pool: Arc<Pool>,
    origin: Box<str>,
}

impl std::fmt::Debug for PooledBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PooledBody")
            .field("origin", &self.origin)
            .field("connected", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

impl PooledBody {
    pub(super) fn new(
        body: Incoming,
        conn: Option<Conn>,
        pool: Arc<Pool>,
        origin: Box<str>,
    ) -> Self {
        Self {
            body,
            conn,
            pool,
            origin,
        }
    }

    /// The next frame: the connection reads what it can, then the body takes it, in one poll
    /// of the connection's waker. A finished driver means the connection is gone (the body
    /// then sees its end or its error).
    fn next_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let Some(conn) = &mut self.conn else {
            return Pin::new(&mut self.body).poll_frame(cx);
        };
        let (driver, wake) = (&mut conn.driver, &conn.wake);
        let mut finished = false;
        let body = &mut self.body;
        let frame = wake.poll(cx, |cx| {
            if !finished && driver.poll_unpin(cx).is_ready() {
                finished = true;
            }
            Pin::new(&mut *body).poll_frame(cx)
        });
        if finished {
            self.conn = None;
        }
        frame
    }

    /// The body ended: one more poll lets hyper finish the message and mark the connection
    /// idle, and a connection ready for another request is parked.
    fn release(&mut self, cx: &mut Context<'_>) {
        if let Some(conn) = &mut self.conn {
            let (driver, wake) = (&mut conn.driver, &conn.wake);
            if wake.poll(cx, |cx| driver.poll_unpin(cx)).is_ready() {
                self.conn = None;
            }
        }
        if let Some(conn) = self.conn.take()
            && conn.sender.is_ready()
        {
            self.pool.release(&self.origin, conn);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let frame = ready!(this.next_frame(cx));
        match &frame {
            None => this.release(cx),
            Some(Ok(_)) if this.body.is_end_stream() => this.release(cx),
            Some(Err(_)) => this.conn = None,
            Some(Ok(_)) => {}
        }
        Poll::Ready(frame.map(|f| f.map_err(Into::into)))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            Self::Pooled(body) => Pin::new(body).poll_frame(cx),
            Self::Client(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Pooled(body) => body.is_end_stream(),
            Self::Client(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Pooled(body) => body.size_hint(),
            Self::Client(body) => body.size_hint(),
        }
    }
}
