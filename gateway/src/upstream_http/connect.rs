//! Opening an upstream connection: a guarded lookup, TCP with `TCP_NODELAY`, TLS (rustls,
//! ALPN `http/1.1`) for `https`, and hyper's HTTP/1.1 handshake. The connection future that
//! hyper returns is not spawned: the request that uses it drives it (see `body.rs`).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::{ClientConfig, RootCertStore};

use super::Error;
use crate::egress::GuardedResolver;

/// The request side of a pooled connection.
pub type Sender = http1::SendRequest<Full<Bytes>>;
/// The connection future, polled by whichever request holds it.
pub type Driver = http1::Connection<TokioIo<Stream>, Full<Bytes>>;

/// Where a connection goes: the parts of a URL's origin.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub tls: bool,
    pub host: &'a str,
    pub port: u16,
}

/// A TCP connection, in the clear or under TLS.
#[derive(Debug)]
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Opens a connection to `origin` within `timeout` (lookup, TCP, TLS and handshake together).
pub async fn open(
    origin: Origin<'_>,
    resolver: &GuardedResolver,
    timeout: Duration,
) -> Result<(Sender, Driver), Error> {
    match tokio::time::timeout(timeout, open_now(origin, resolver)).await {
        Ok(result) => result,
        Err(_) => Err(Error::ConnectTimeout),
    }
}

async fn open_now(
    origin: Origin<'_>,
    resolver: &GuardedResolver,
) -> Result<(Sender, Driver), Error> {
    let host = origin.host.trim_matches(['[', ']']);
    let addresses = match host.parse::<IpAddr>() {
        // An address literal is connected to as is, like every HTTP client does; the compiler
        // has already refused the forbidden ones.
        Ok(ip) => vec![SocketAddr::new(ip, origin.port)],
        Err(_) => resolver
            .lookup_allowed(host)
            .await
            .map_err(Error::Resolve)?
            .into_iter()
            .map(|a| SocketAddr::new(a.ip(), origin.port))
            .collect(),
    };
    let tcp = connect_any(&addresses).await?;
    tcp.set_nodelay(true).map_err(Error::connect)?;
    let stream = if origin.tls {
        let name = ServerName::try_from(host.to_owned()).map_err(Error::connect)?;
        let tls = TlsConnector::from(tls_config())
            .connect(name, tcp)
            .await
            .map_err(Error::connect)?;
        Stream::Tls(Box::new(tls))
    } else {
        Stream::Plain(tcp)
    };
    http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(Error::connect)
}

/// The first address that accepts, in the resolver's order.
async fn connect_any(addresses: &[SocketAddr]) -> Result<TcpStream, Error> {
    let mut last = None;
    for address in addresses {
        match TcpStream::connect(address).await {
            Ok(stream) => return Ok(stream),
            Err(e) => last = Some(e),
        }
    }
    Err(Error::connect(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "no address")
    })))
}

/// The TLS settings of every upstream connection, built once: webpki's roots plus the
/// platform's (which include `SSL_CERT_FILE` and `SSL_CERT_DIR` when set), HTTP/1.1 by ALPN.
fn tls_config() -> Arc<ClientConfig> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let native = rustls_native_certs::load_native_certs();
            for error in &native.errors {
                tracing::warn!(error = %error, "a platform certificate could not be loaded");
            }
            let (added, ignored) = roots.add_parsable_certificates(native.certs);
            tracing::debug!(added, ignored, "platform certificates for upstream TLS");
            let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| builder.with_root_certificates(roots).with_no_client_auth())
                // Only fails if ring offers no protocol version, which it always does.
                .expect("ring supports TLS 1.2 and 1.3");
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}
