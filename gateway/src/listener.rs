//! The TCP listener: every accepted connection gets `TCP_NODELAY` and a write timeout, so a
//! client that stops reading (its window full, the gateway's writes pending) is disconnected
//! after `WRITE_TIMEOUT` instead of pinning a stream, its upstream request and its buffers
//! forever. Hyper has no write timeout of its own, hence this wrapper.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_io_timeout::TimeoutStream;

/// A listener whose connections time out stalled writes.
#[derive(Debug)]
pub struct WriteTimeoutListener {
    inner: TcpListener,
    write_timeout: Duration,
}

impl WriteTimeoutListener {
    /// Wraps a bound listener.
    pub fn new(inner: TcpListener, write_timeout: Duration) -> Self {
        Self {
            inner,
            write_timeout,
        }
    }
}

impl axum::serve::Listener for WriteTimeoutListener {
    type Io = Pin<Box<TimeoutStream<TcpStream>>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let (stream, address) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = stream.set_nodelay(true);
        let mut stream = TimeoutStream::new(stream);
        stream.set_write_timeout(Some(self.write_timeout));
        (Box::pin(stream), address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
