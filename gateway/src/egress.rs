//! The connect-time half of the server-side request forgery guard.
//!
//! The compiler refuses URLs whose host is a forbidden literal; a host *name* can still resolve
//! to a loopback, private or metadata address, today or after a DNS change (rebinding). So
//! every outbound client that follows a configured URL resolves names through
//! [`GuardedResolver`], which drops the forbidden addresses of each lookup and refuses a
//! lookup that leaves none, unless the resource allows local addresses. HTTP clients connect to
//! an address literal without resolving it, which is why the literal check at compile time
//! (and [`literal_refusal`] for URLs that are not compiled) must cover every address form.

use std::error::Error as StdError;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use llm_gateway_crds::egress::{is_forbidden_ip, is_forbidden_url_host, is_never_allowed_ip};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

type BoxError = Box<dyn StdError + Send + Sync>;

/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Environment variables naming the forward proxy the HTTP client honours.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The system resolver, minus every address the gateway must not call.
#[derive(Clone, Debug)]
pub struct GuardedResolver {
    /// The setting whose host is resolved (`baseUrl`, `jwksUri`), named in refusals.
    field: &'static str,
    /// Which addresses are dropped: every non-public one, or (with `allowLocalAddresses`) only
    /// link-local and metadata ones.
    forbidden: fn(IpAddr) -> bool,
    /// Forward proxies from the gateway's own environment, resolved unfiltered: the operator
    /// chose them (they are usually on a private network), and through a proxy the upstream
    /// name is resolved by the proxy, which must then enforce the egress policy.
    proxies: Vec<String>,
}

impl GuardedResolver {
    /// A resolver for URLs of the setting `field`, exempting the proxies named in the
    /// environment.
    pub fn new(field: &'static str, allow_local: bool) -> Self {
        let forbidden = if allow_local {
            is_never_allowed_ip
        } else {
            is_forbidden_ip
        };
        let proxies = PROXY_VARIABLES
            .iter()
            .filter_map(|name| std::env::var(name).ok())
            .filter_map(|value| proxy_host(&value))
            .collect();
        Self {
            field,
            forbidden,
            proxies,
        }
    }

    /// The addresses the gateway may connect to for `host`, in the resolver's order (the
    /// in-task upstream transport's lookup).
    pub async fn lookup_allowed(&self, host: &str) -> Result<Vec<SocketAddr>, BoxError> {
        let proxy = self.is_proxy(host);
        lookup(self.field, self.forbidden, host.to_owned(), proxy)
            .await
            .map(Iterator::collect)
    }

    fn is_proxy(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.');
        self.proxies.iter().any(|p| p.eq_ignore_ascii_case(host))
    }
}

/// The host of a proxy setting (`http://proxy:3128`, or `proxy:3128` without a scheme).
fn proxy_host(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    let url = if value.contains("://") {
        reqwest::Url::parse(value)
    } else {
        reqwest::Url::parse(&format!("http://{value}"))
    };
    let host = url.ok()?.host_str()?.trim_matches(['[', ']']).to_owned();
    Some(host)
}

/// A lookup that found addresses, none of them public. The message names the setting and the
/// host (never a URL, which could carry more) and the way out.
#[derive(Debug, thiserror::Error)]
#[error(
    "{field} host {host} resolves only to non-public addresses (set allowLocalAddresses: true to allow)"
)]
pub struct Refused {
    field: &'static str,
    host: String,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let proxy = self.is_proxy(&host);
        Box::pin(lookup(self.field, self.forbidden, host, proxy))
    }
}

/// Resolves `host` with the system resolver (`getaddrinfo`, so `/etc/hosts` and search
/// domains apply as everywhere else) and keeps the public addresses, or all of a proxy's.
async fn lookup(
    field: &'static str,
    forbidden: fn(IpAddr) -> bool,
    host: String,
    proxy: bool,
) -> Result<Addrs, BoxError> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
    if resolved.is_empty() {
        return Err(format!("{field} host {host} resolves to no address").into());
    }
    if proxy {
        return Ok(Box::new(resolved.into_iter()));
    }
    let public = allowed_only(&resolved, forbidden);
    if public.is_empty() {
        return Err(Box::new(Refused { field, host }));
    }
    if public.len() < resolved.len() {
        tracing::debug!(
            field,
            host,
            dropped = resolved.len() - public.len(),
            "non-public addresses dropped from a lookup"
        );
    }
    Ok(Box::new(public.into_iter()))
}

/// The addresses the gateway may connect to, in the resolver's order.
fn allowed_only(addresses: &[SocketAddr], forbidden: fn(IpAddr) -> bool) -> Vec<SocketAddr> {
    addresses
        .iter()
        .copied()
        .filter(|address| !forbidden(address.ip()))
        .collect()
}

/// Whether the environment names a forward proxy (which only the general-purpose client
/// honours).
pub fn forward_proxy_configured() -> bool {
    PROXY_VARIABLES
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

/// The client for a provider's upstream calls: the same settings for every provider with this
/// connect timeout, and the guarded resolver unless the provider allows local addresses.
/// Redirects are never followed: an upstream's redirect is its answer, passed to the client as
/// is; following it would send the provider credential wherever the upstream points. HTTP/2
/// is offered by ALPN only when `http2` (`UPSTREAM_HTTP2`) asks for it.
pub fn http_client(connect: Duration, allow_local: bool, http2: bool) -> reqwest::Client {
    let builder = guarded_builder("baseUrl", allow_local)
        .connect_timeout(connect)
        .pool_idle_timeout(POOL_IDLE)
        .tcp_nodelay(true);
    let builder = if http2 { builder } else { builder.http1_only() };
    builder
        .build()
        // Only fails when the TLS backend cannot initialise, and then so does the default.
        .unwrap_or_default()
}

/// The client that fetches a JWKS: guarded unless the JWT settings allow local addresses, and
/// never following a redirect (a JWKS endpoint that redirects could send the fetch anywhere,
/// past the address check of the URL that was configured).
pub fn jwks_client(allow_local: bool) -> reqwest::Client {
    guarded_builder("jwksUri", allow_local)
        .connect_timeout(Duration::from_secs(2))
        .build()
        // Only fails when the TLS backend cannot initialise, and then so does the default.
        .unwrap_or_default()
}

fn guarded_builder(field: &'static str, allow_local: bool) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver::new(field, allow_local)))
}

/// The refusal behind a failed request, if the guard refused it: the message to show (it names
/// the setting and host only). Walks the error's sources, where the HTTP client keeps it.
pub fn refusal(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refused) = error.downcast_ref::<Refused>() {
            return Some(refused.to_string());
        }
        current = error.source();
    }
    None
}

/// Why `url` may not be fetched when its host is a forbidden literal (an address the resolver
/// never sees, or a name such as `localhost`); `None` when it may, or when it does not parse
/// (the request then fails on its own). For URLs that no compile step checked (the standalone
/// `JWT_JWKS_URL`).
pub fn literal_refusal(url: &str, field: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    is_forbidden_url_host(&parsed).then(|| {
        let host = parsed.host_str().unwrap_or_default();
        format!(
            "{field} host {host} is a non-public address (set allowLocalAddresses: true to allow)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_survive_a_lookup_in_order() {
        let addresses: Vec<SocketAddr> = [
            "127.0.0.1:0",
            "93.184.215.14:0",
            "[::1]:0",
            "10.1.2.3:0",
            "[2606:4700:4700::1111]:0",
            "[::ffff:169.254.169.254]:0",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let kept: Vec<String> = allowed_only(&addresses, is_forbidden_ip)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(kept, ["93.184.215.14:0", "[2606:4700:4700::1111]:0"]);
    }

    #[test]
    fn proxy_hosts_are_read_with_or_without_a_scheme() {
        assert_eq!(
            proxy_host("http://Proxy.corp:3128").as_deref(),
            Some("proxy.corp")
        );
        assert_eq!(proxy_host("proxy.corp:3128").as_deref(), Some("proxy.corp"));
        assert_eq!(
            proxy_host("http://[fd00::1]:3128").as_deref(),
            Some("fd00::1")
        );
        assert_eq!(proxy_host(" "), None);
        let resolver = GuardedResolver {
            field: "baseUrl",
            forbidden: is_forbidden_ip,
            proxies: vec!["proxy.corp".to_owned()],
        };
        assert!(resolver.is_proxy("PROXY.corp.") && !resolver.is_proxy("other.corp"));
    }

    #[tokio::test]
    async fn a_name_resolving_only_to_loopback_is_refused_with_a_clear_message() {
        let name: Name = "localhost".parse().unwrap();
        let Err(error) = GuardedResolver::new("baseUrl", false).resolve(name).await else {
            panic!("localhost resolved through the guard");
        };
        assert_eq!(
            error.to_string(),
            "baseUrl host localhost resolves only to non-public addresses (set \
             allowLocalAddresses: true to allow)"
        );
    }

    #[tokio::test]
    async fn the_refusal_survives_the_http_client_and_is_found_in_its_error() {
        let error = http_client(Duration::from_secs(1), false, false)
            .get("http://localhost:9/v1/models")
            .send()
            .await
            .expect_err("localhost is refused");
        let found = refusal(&error).unwrap_or_else(|| panic!("no refusal in {error:?}"));
        assert!(
            found.starts_with("baseUrl host localhost resolves only to non-public"),
            "{found}"
        );
        let error = jwks_client(false)
            .get("http://localhost:9/jwks.json")
            .send()
            .await
            .expect_err("localhost is refused");
        assert!(refusal(&error).is_some_and(|m| m.starts_with("jwksUri host localhost")));
    }

    #[tokio::test]
    async fn allowing_local_addresses_connects_and_redirects_are_not_followed() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buffer = [0_u8; 1024];
                let _ = socket.read(&mut buffer).await;
                let answer = "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:9/elsewhere\r\n\
                              Content-Length: 0\r\nConnection: close\r\n\r\n";
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        let response = http_client(Duration::from_secs(1), true, false)
            .get(format!("http://127.0.0.1:{port}/v1/models"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FOUND);
        let response = jwks_client(true)
            .get(format!("http://127.0.0.1:{port}/jwks.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::FOUND);
    }

    #[test]
    fn literal_hosts_are_refused_without_a_lookup() {
        for url in [
            "https://169.254.169.254/keys",
            "https://[::ffff:127.0.0.1]/keys",
            "https://LOCALHOST./keys",
            "https://2130706433/keys",
        ] {
            let why = literal_refusal(url, "jwksUri").unwrap_or_else(|| panic!("{url}"));
            assert!(why.starts_with("jwksUri host "), "{why}");
        }
        assert_eq!(
            literal_refusal("https://idp.example.com/keys", "jwksUri"),
            None
        );
    }
}
