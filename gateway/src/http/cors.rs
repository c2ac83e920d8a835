//! Cross-origin requests from browser clients (the OpenAI and Anthropic SDKs' browser builds,
//! the Vercel AI SDK in a web page): off unless `CORS_ALLOWED_ORIGINS` is set. Preflights are
//! answered by the layer itself, before authentication; the real request still needs a key.
//! Credentials (cookies) are never needed (keys travel in headers) and stay off unless
//! `CORS_ALLOW_CREDENTIALS` is set, which a wildcard origin refuses.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer, ExposeHeaders};

/// What `CORS_*` settings ask for.
#[derive(Debug, Clone, Default)]
pub struct CorsSettings {
    /// Allowed origins (`https://app.example.com`), or `*` for any.
    pub allowed_origins: Vec<String>,
    /// Whether browsers may send credentials (cookies, TLS client certificates).
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    pub max_age: Duration,
}

/// Response headers a browser script may read: provenance, request id, rate limits.
const EXPOSED: [&str; 12] = [
    "x-request-id",
    "x-llm-gateway-route",
    "x-llm-gateway-provider",
    "x-llm-gateway-generation",
    "x-llm-gateway-token-count",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
    "retry-after",
];

impl CorsSettings {
    /// The layer, `Ok(None)` when no origin is configured, or why the settings are refused.
    pub fn layer(&self) -> Result<Option<CorsLayer>, String> {
        if self.allowed_origins.is_empty() {
            return Ok(None);
        }
        let any = self.allowed_origins.iter().any(|o| o == "*");
        if any && self.allow_credentials {
            return Err("CORS_ALLOW_CREDENTIALS cannot be used with CORS_ALLOWED_ORIGINS=*: browsers refuse credentials for a wildcard origin".to_owned());
        }
        let origin = if any {
            AllowOrigin::any()
        } else {
            let origins = self
                .allowed_origins
                .iter()
                .map(|o| origin(o))
                .collect::<Result<Vec<_>, _>>()?;
            AllowOrigin::list(origins)
        };
        let exposed: Vec<HeaderName> = EXPOSED.iter().map(|h| HeaderName::from_static(h)).collect();
        Ok(Some(
            CorsLayer::new()
                .allow_origin(origin)
                .allow_methods([Method::GET, Method::POST, Method::DELETE])
                // The SDKs send their own headers (x-stainless-*, anthropic-*, openai-beta):
                // every requested header is allowed, as keys never travel in cookies.
                .allow_headers(AllowHeaders::mirror_request())
                .expose_headers(ExposeHeaders::list(exposed))
                .allow_credentials(self.allow_credentials)
                .max_age(self.max_age),
        ))
    }
}

/// An origin as browsers send it: scheme, host and optional port, no path.
fn origin(text: &str) -> Result<HeaderValue, String> {
    let shaped = text.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/')
    });
    if !shaped {
        return Err(format!(
            "CORS_ALLOWED_ORIGINS: {text:?} is not an origin (scheme://host[:port], no path)"
        ));
    }
    HeaderValue::from_str(text)
        .map_err(|_| format!("CORS_ALLOWED_ORIGINS: {text:?} is not a valid header value"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(origins: &[&str], credentials: bool) -> CorsSettings {
        CorsSettings {
            allowed_origins: origins.iter().map(|o| (*o).to_owned()).collect(),
            allow_credentials: credentials,
            max_age: Duration::from_secs(600),
        }
    }

    #[test]
    fn off_unless_configured_and_refuses_what_browsers_would() {
        assert!(settings(&[], false).layer().unwrap().is_none());
        assert!(
            settings(&["https://app.example.com"], true)
                .layer()
                .unwrap()
                .is_some()
        );
        assert!(settings(&["*"], false).layer().unwrap().is_some());
        assert!(settings(&["*"], true).layer().is_err());
        assert!(settings(&["app.example.com"], false).layer().is_err());
        assert!(
            settings(&["https://app.example.com/path"], false)
                .layer()
                .is_err()
        );
    }
}
