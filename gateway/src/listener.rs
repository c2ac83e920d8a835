//! The TCP listener: every accepted connection gets `TCP_NODELAY` and a write timeout, so a
//! client that stops reading (its window full, the gateway's writes pending) is disconnected
//! after `WRITE_TIMEOUT` instead of pinning a stream, its upstream request and its buffers
//! forever. Hyper has no write timeout of its own, hence this wrapper.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_io_timeout::TimeoutStream;

/// Accept-queue depth (the kernel caps it at `net.core.somaxconn`). Clients open many
/// streams at once (a batch job, a reconnect storm after a deploy); tokio's default of 1,024
/// overflowed at 1,000 simultaneous connections in the benchmark, and each dropped SYN costs
/// its client a one-second retransmit.
pub const ACCEPT_BACKLOG: u32 = 4096;

/// Binds `host:port` (the first address `host` resolves to) with [`ACCEPT_BACKLOG`].
pub async fn bind(host: &str, port: u16) -> io::Result<TcpListener> {
    let address = tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "host resolved to no address"))?;
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(ACCEPT_BACKLOG)
}

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
