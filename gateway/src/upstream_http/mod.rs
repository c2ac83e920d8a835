//! The upstream HTTP transport of model calls. HTTP/1.1 connections come from a per-origin
//! keep-alive pool and are driven inside the request's own task: hyper's connection future is
//! polled by the request while it waits for the head and by the reply body while it is read
//! (`body.rs`). The general-purpose pooled client (reqwest on hyper-util) runs every connection
//! in a task of its own, so every reply and every stream chunk crossed a channel and a task
//! wake-up; it is kept where speed matters less than what it offers: a forward proxy from the
//! environment, and HTTP/2 (`UPSTREAM_HTTP2`).

mod body;
mod connect;
mod local_wake;
mod pool;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{HeaderValue, Request, Response, header};
use http_body_util::{BodyExt, Full};
use url::Position;

pub use body::{PooledBody, UpstreamBody};
pub use pool::PoolLimits;

use crate::egress::{self, GuardedResolver};
use connect::Origin;
use pool::{Conn, Pool};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Default of `UPSTREAM_POOL_MAX_IDLE_PER_HOST`.
pub const DEFAULT_MAX_IDLE_PER_ORIGIN: usize = 256;
/// How long an idle upstream connection is kept.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// How model calls reach their upstreams (one per connect timeout and address policy).
#[derive(Clone)]
pub struct Transport {
    /// Builds every request; sends those the in-task pool does not.
    client: reqwest::Client,
    /// The in-task HTTP/1.1 pool; `None` when a forward proxy or HTTP/2 is configured.
    pooled: Option<Arc<InTask>>,
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transport")
            .field("in_task", &self.pooled.is_some())
            .finish_non_exhaustive()
    }
}

struct InTask {
    pool: Arc<Pool>,
    resolver: GuardedResolver,
    connect_timeout: Duration,
}

/// The transport settings that come from the gateway's flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportSettings {
    pub pool: PoolLimits,
    /// Negotiate HTTP/2 where the upstream offers it (through the general-purpose client).
    pub http2: bool,
}

impl Default for TransportSettings {
    fn default() -> Self {
        Self {
            pool: PoolLimits {
                max_idle_per_origin: DEFAULT_MAX_IDLE_PER_ORIGIN,
                idle_timeout: IDLE_TIMEOUT,
            },
            http2: false,
        }
    }
}

/// Why an upstream request failed before its reply head.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("lookup failed: {0}")]
    Resolve(BoxError),
    #[error("connect failed: {0}")]
    Connect(BoxError),
    #[error("request failed: {0}")]
    Request(#[from] hyper::Error),
    #[error("{0}")]
    Client(#[from] reqwest::Error),
    #[error("the request body is a stream, which the pooled transport does not send")]
    StreamingBody,
}

impl Error {
    fn connect(error: impl Into<BoxError>) -> Self {
        Self::Connect(error.into())
    }

    /// Whether no connection could be made (as opposed to a request that failed on one).
    pub fn is_connect(&self) -> bool {
        match self {
            Self::ConnectTimeout | Self::Resolve(_) | Self::Connect(_) => true,
            Self::Client(e) => e.is_connect(),
            Self::Request(_) | Self::StreamingBody => false,
        }
    }

    /// Whether the request ran out of time inside the client.
    pub fn is_timeout(&self) -> bool {
        match self {
            Self::ConnectTimeout => true,
            Self::Client(e) => e.is_timeout(),
            _ => false,
        }
    }

    /// The egress guard's refusal, when it refused the upstream's address.
    pub fn refusal(&self) -> Option<String> {
        match self {
            Self::Resolve(e) => egress::refusal(e.as_ref()),
            Self::Client(e) => egress::refusal(e),
            _ => None,
        }
    }
}

impl Transport {
    /// The transport for providers with this connect timeout and address policy.
    pub fn new(connect_timeout: Duration, allow_local: bool, settings: TransportSettings) -> Self {
        let client = egress::http_client(connect_timeout, allow_local, settings.http2);
        let pooled = (!settings.http2 && !egress::forward_proxy_configured()).then(|| {
            Arc::new(InTask {
                pool: Pool::new(settings.pool),
                resolver: GuardedResolver::new("baseUrl", allow_local),
                connect_timeout,
            })
        });
        Self { client, pooled }
    }

    /// The client requests are built with.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Idle pooled connections (0 without the pool).
    pub fn idle_connections(&self) -> usize {
        self.pooled.as_ref().map_or(0, |p| p.pool.idle_count())
    }

    /// Sends `request` and returns the reply head; its body is read as it is polled.
    pub async fn send(&self, request: reqwest::Request) -> Result<Response<UpstreamBody>, Error> {
        let Some(pooled) = &self.pooled else {
            let response = self.client.execute(request).await?;
            return Ok(http::Response::from(response).map(UpstreamBody::Client));
        };
        pooled.send(request).await
    }
}

impl InTask {
    async fn send(&self, mut request: reqwest::Request) -> Result<Response<UpstreamBody>, Error> {
        let body = match request.body_mut().take() {
            None => Bytes::new(),
            Some(body) => whole(body).ok_or(Error::StreamingBody)?,
        };
        let headers = std::mem::take(request.headers_mut());
        let url = request.url();
        let origin_key: Box<str> = url[..Position::BeforePath].into();
        let origin = Origin {
            tls: url.scheme() == "https",
            host: url.host_str().unwrap_or_default(),
            port: url.port_or_known_default().unwrap_or(80),
        };
        let head = head(request.method(), url, headers, origin)?;
        // A parked connection the upstream closed just as it was reused fails before the
        // request is written; hyper hands the request back, and it goes on a new connection.
        if let Some(conn) = self.pool.checkout(&origin_key).await {
            match exchange(conn, head.clone(), body.clone()).await {
                Ok((response, conn)) => return Ok(self.reply(response, conn, origin_key)),
                Err(Failed::NotSent) => {}
                Err(Failed::Sent(error)) => return Err(error),
            }
        }
        let (sender, driver) = connect::open(origin, &self.resolver, self.connect_timeout).await?;
        let conn = Box::new(pool::Connection {
            sender,
            driver,
            wake: local_wake::LocalWake::new(),
            reused: false,
        });
        match exchange(conn, head, body).await {
            Ok((response, conn)) => Ok(self.reply(response, conn, origin_key)),
            Err(Failed::NotSent) => Err(Error::Connect("the new connection closed".into())),
            Err(Failed::Sent(error)) => Err(error),
        }
    }

    fn reply(
        &self,
        response: Response<hyper::body::Incoming>,
        conn: Option<Conn>,
        origin: Box<str>,
    ) -> Response<UpstreamBody> {
        let pool = Arc::clone(&self.pool);
        response.map(|body| UpstreamBody::Pooled(PooledBody::new(body, conn, pool, origin)))
    }
}

/// A request body held in memory, as every model call's is (no copy: its one frame is the
/// `Bytes` the request was built with, taken without collecting into a buffer list).
fn whole(mut body: reqwest::Body) -> Option<Bytes> {
    body.as_bytes()?;
    match body.frame().now_or_never() {
        None => None,
        Some(None) => Some(Bytes::new()),
        Some(Some(frame)) => frame.ok()?.into_data().ok(),
    }
}

/// The request head in origin form, with the `Host` header HTTP/1.1 requires.
fn head(
    method: &http::Method,
    url: &url::Url,
    mut headers: http::HeaderMap,
    origin: Origin<'_>,
) -> Result<http::request::Parts, Error> {
    let default_port = if origin.tls { 443 } else { 80 };
    let host = match url.port() {
        Some(port) if port != default_port => format!("{}:{port}", origin.host),
        _ => origin.host.to_owned(),
    };
    headers.insert(
        header::HOST,
        HeaderValue::try_from(host).map_err(Error::connect)?,
    );
    headers
        .entry(header::ACCEPT)
        .or_insert(HeaderValue::from_static("*/*"));
    let target = &url[Position::BeforePath..Position::AfterQuery];
    let (mut parts, ()) = Request::builder()
        .method(method.clone())
        .uri(target)
        .body(())
        .map_err(Error::connect)?
        .into_parts();
    parts.headers = headers;
    Ok(parts)
}

/// How sending on a connection failed.
enum Failed {
    /// Before the request was written: it may go on another connection.
    NotSent,
    /// After: the upstream may have seen it.
    Sent(Error),
}

/// Sends one request on `conn`, driving the connection until the reply head arrives.
async fn exchange(
    mut conn: Conn,
    head: http::request::Parts,
    body: Bytes,
) -> Result<(Response<hyper::body::Incoming>, Option<Conn>), Failed> {
    let request = Request::from_parts(head, Full::new(body));
    let pool::Connection {
        sender,
        driver,
        wake,
        ..
    } = &mut *conn;
    let mut reply = std::pin::pin!(sender.try_send_request(request));
    let mut driving = true;
    let result = std::future::poll_fn(|cx| {
        wake.poll(cx, |cx| {
            if driving && driver.poll_unpin(cx).is_ready() {
                driving = false;
            }
            reply.as_mut().poll(cx)
        })
    })
    .await;
    match result {
        Ok(response) if driving => Ok((response, Some(conn))),
        // The connection finished with the head (`Connection: close` and an empty body):
        // the reply is whole, and the connection is gone.
        Ok(response) => Ok((response, None)),
        Err(mut error) => {
            if error.take_message().is_some() && conn.reused {
                Err(Failed::NotSent)
            } else {
                Err(Failed::Sent(error.into_error().into()))
            }
        }
    }
}
