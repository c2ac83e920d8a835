//! The HTTP server loop. `axum::serve` sets no timer on hyper, so it has no header-read or
//! keep-alive idle timeout and no connection cap: 200 slow-loris connections were never cut.
//! This loop is axum's, with those three added: every connection is served by hyper's
//! automatic HTTP/1–HTTP/2 builder with a Tokio timer, at most `max_connections` at once (a
//! semaphore taken before `accept`, so the excess waits in the kernel's accept queue), and the
//! client's address is put in the request extensions for per-address throttling. A connection
//! that sends nothing within the header-read timeout is closed before hyper sees it: the
//! automatic builder reads the first bytes (to tell HTTP/1 from HTTP/2) with no timer at all.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tower::ServiceExt;

use crate::listener::WriteTimeoutListener;

/// Interval of HTTP/2 keep-alive pings, which find peers that vanished without a FIN.
const HTTP2_KEEP_ALIVE: Duration = Duration::from_secs(20);

/// What the server loop enforces per connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnectionLimits {
    /// Longest wait for a request's headers (and between keep-alive requests).
    pub header_read_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `stop` resolves, then lets every connection finish its
/// requests (each is told to shut down gracefully) and returns once all have closed.
pub async fn run(
    mut listener: WriteTimeoutListener,
    app: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()>,
) {
    let builder = Arc::new(builder(&limits));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let (shutdown_tx, shutdown_rx) = watch::channel(());
    let (closed_tx, closed_rx) = watch::channel(());
    let mut stop = pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit,
            () = &mut stop => break,
        };
        let Ok(permit) = permit else { break };
        let (io, address) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut stop => break,
        };
        let connection = Connection {
            builder: builder.clone(),
            header_read_timeout: limits.header_read_timeout,
            app: app.clone(),
            address,
            _permit: permit,
            _open: closed_rx.clone(),
        };
        tokio::spawn(connection.serve(io, shutdown_rx.clone()));
    }
    drop(listener);
    drop(closed_rx);
    drop(shutdown_rx);
    // Every connection task holds a shutdown receiver: sending tells them all.
    let _ = shutdown_tx.send(());
    closed_tx.closed().await;
}

/// Hyper's builder with the timers set (without a timer hyper enforces no timeout at all).
fn builder(limits: &ConnectionLimits) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(HTTP2_KEEP_ALIVE);
    builder
}

/// One accepted connection and what it holds until it closes.
struct Connection {
    builder: Arc<Builder<TokioExecutor>>,
    header_read_timeout: Duration,
    app: Router,
    address: SocketAddr,
    _permit: OwnedSemaphorePermit,
    /// Dropped when the connection closes; the server waits for all of them at shutdown.
    _open: watch::Receiver<()>,
}

impl Connection {
    async fn serve(
        self,
        io: <WriteTimeoutListener as Listener>::Io,
        mut shutdown: watch::Receiver<()>,
    ) {
        if !first_bytes_arrive(&io, self.header_read_timeout).await {
            return;
        }
        let address = ConnectInfo(self.address);
        let service = self
            .app
            .map_request(move |request: http::Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(address);
                request
            });
        let service = TowerToHyperService::new(service);
        let mut connection = pin!(
            self.builder
                .serve_connection_with_upgrades(TokioIo::new(io), service)
        );
        let mut told = false;
        loop {
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(error) = result {
                        tracing::trace!(%error, "connection ended with an error");
                    }
                    break;
                }
                _ = shutdown.changed(), if !told => {
                    told = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// Whether the client sends its first bytes within `limit` (peeked, so hyper still reads them).
async fn first_bytes_arrive(io: &<WriteTimeoutListener as Listener>::Io, limit: Duration) -> bool {
    let mut byte = [0u8; 1];
    let peek = io.as_ref().get_ref().get_ref().peek(&mut byte);
    matches!(tokio::time::timeout(limit, peek).await, Ok(Ok(n)) if n > 0)
}
