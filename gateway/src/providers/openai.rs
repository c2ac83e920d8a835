//! OpenAI, OpenAI-compatible and Azure OpenAI upstreams: they speak the hub's format, so an
//! OpenAI client's body goes upstream unchanged except for the `model` value when the route
//! maps it, and their replies (JSON or SSE) need no decoding. Only allowlisted client headers
//! are forwarded, and the client's own credential never is: the provider's is added instead
//! (`Authorization: Bearer`, or Azure's `api-key` with the deployment URL and `api-version`).

use http::{HeaderName, HeaderValue, header};
use llm_gateway_crds::compiled::CompiledProvider;
use llm_gateway_crds::llm_provider::ProviderType;
use reqwest::RequestBuilder;

use super::Call;

/// Client headers passed upstream; everything else (credentials, cookies, hop-by-hop,
/// forwarding headers) stays at the gateway.
const FORWARDED_HEADERS: [HeaderName; 3] = [
    header::ACCEPT,
    header::USER_AGENT,
    HeaderName::from_static("openai-beta"),
];

/// The parts of an OpenAI-format upstream request that depend only on the provider, built
/// once per configuration snapshot: parsing the URL (IDNA host normalisation included) and
/// building the credential header were a visible share of per-request CPU in the
/// benchmark's profile.
#[derive(Debug, Default)]
pub struct Prepared {
    /// `{baseUrl}/chat/completions` (not Azure, whose URL names the deployment).
    chat: Option<reqwest::Url>,
    /// `{baseUrl}/embeddings` (not Azure).
    embeddings: Option<reqwest::Url>,
    /// `{baseUrl}/responses` (Azure: its v1 surface, `{baseUrl}/openai/v1/responses`).
    responses: Option<reqwest::Url>,
    /// `{baseUrl}/completions` (not Azure).
    completions: Option<reqwest::Url>,
    /// `Authorization: Bearer …`, or Azure's `api-key`, marked sensitive.
    credential: Option<(HeaderName, HeaderValue)>,
}

impl Prepared {
    /// Prepares `provider`'s requests; fields that cannot be built stay empty and are then
    /// built per request, where the error (if any) reaches the client.
    pub fn new(provider: &CompiledProvider) -> Self {
        let azure = provider.provider_type == ProviderType::AzureOpenAi;
        let base = provider.base_url.as_deref().unwrap_or_default();
        let url = |endpoint: &str| {
            (!azure)
                .then(|| reqwest::Url::parse(&format!("{base}/{endpoint}")).ok())
                .flatten()
        };
        let credential = provider.credential.as_ref().and_then(|secret| {
            let (name, value) = if azure {
                (
                    HeaderName::from_static("api-key"),
                    secret.expose().to_owned(),
                )
            } else {
                (header::AUTHORIZATION, format!("Bearer {}", secret.expose()))
            };
            let mut value = HeaderValue::from_str(&value).ok()?;
            value.set_sensitive(true);
            Some((name, value))
        });
        Self {
            chat: url(Endpoint::Chat.path()),
            embeddings: url(Endpoint::Embeddings.path()),
            completions: url(Endpoint::Completions.path()),
            responses: if azure {
                reqwest::Url::parse(&format!("{base}/openai/v1/responses")).ok()
            } else {
                url(Endpoint::Responses.path())
            },
            credential,
        }
    }
}

/// The OpenAI endpoints the gateway forwards to.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    /// `chat/completions`.
    Chat,
    /// `embeddings`.
    Embeddings,
    /// `responses`.
    Responses,
    /// `completions` (legacy).
    Completions,
    /// `responses/input_tokens` (a Responses request's input token count).
    ResponsesInputTokens,
}

impl Endpoint {
    fn path(self) -> &'static str {
        match self {
            Self::Chat => "chat/completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
            Self::Completions => "completions",
            Self::ResponsesInputTokens => "responses/input_tokens",
        }
    }
}

/// The request for `endpoint` of the call's provider carrying `body` (the client's own, model
/// spliced, or one encoded from the hub): URL, provider credential, forwarded client headers.
pub fn request(
    call: &Call<'_>,
    endpoint: Endpoint,
    body: impl Into<reqwest::Body>,
) -> RequestBuilder {
    let compiled = &call.provider.compiled;
    let prepared = &call.provider.openai;
    let ready = match endpoint {
        Endpoint::Chat => prepared.chat.as_ref(),
        Endpoint::Embeddings => prepared.embeddings.as_ref(),
        Endpoint::Responses => prepared.responses.as_ref(),
        Endpoint::Completions => prepared.completions.as_ref(),
        Endpoint::ResponsesInputTokens => None,
    };
    let mut request = match ready {
        Some(url) => call.provider.client.post(url.clone()),
        None => {
            let base = compiled.base_url.as_deref().unwrap_or_default();
            let path = endpoint.path();
            call.provider.client.post(
                if compiled.provider_type == ProviderType::AzureOpenAi
                    && matches!(
                        endpoint,
                        Endpoint::Responses | Endpoint::ResponsesInputTokens
                    )
                {
                    format!("{base}/openai/v1/{path}")
                } else if compiled.provider_type == ProviderType::AzureOpenAi {
                    let deployment = &call.target.upstream_model;
                    let version = compiled.api_version.as_deref().unwrap_or_default();
                    format!("{base}/openai/deployments/{deployment}/{path}?api-version={version}")
                } else {
                    format!("{base}/{path}")
                },
            )
        }
    };
    if let Some((name, value)) = &prepared.credential {
        request = request.header(name, value.clone());
    }
    request = request
        .header(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )
        .body(body);
    for name in &FORWARDED_HEADERS {
        if let Some(value) = call.client_headers.get(name) {
            request = request.header(name, value);
        }
    }
    if let Some(id) = call.client_headers.get("x-request-id") {
        request = request.header("x-request-id", id);
    }
    request
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_gateway_crds::compile::{CompileInputs, compile};
    use llm_gateway_crds::manifest::Manifests;

    fn provider(spec: &str) -> CompiledProvider {
        let mut manifests = Manifests::default();
        let yaml = format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p}}\nspec: {spec}\n"
        );
        manifests.add_yaml("p.yaml", &yaml).expect("valid yaml");
        let env = |_: &str| Some("sk-upstream".to_owned());
        let inputs = CompileInputs {
            env: &env,
            key_pepper: b"",
            admitted: false,
        };
        let mut config = compile(&manifests, &inputs).expect("compiles");
        config.providers.remove(0)
    }

    #[test]
    fn openai_compatible_urls_and_bearer_are_built_once() {
        let prepared = Prepared::new(&provider(
            "{type: openaiCompatible, baseUrl: 'https://llm.example.com/v1', credentials: {env: K}}",
        ));
        let chat = prepared.chat.as_ref().map(reqwest::Url::as_str);
        assert_eq!(chat, Some("https://llm.example.com/v1/chat/completions"));
        let embeddings = prepared.embeddings.as_ref().map(reqwest::Url::as_str);
        assert_eq!(embeddings, Some("https://llm.example.com/v1/embeddings"));
        let (name, value) = prepared.credential.expect("credential header");
        assert_eq!(name, header::AUTHORIZATION);
        assert_eq!(value.to_str().ok(), Some("Bearer sk-upstream"));
        assert!(value.is_sensitive());
    }

    #[test]
    fn azure_keeps_per_deployment_urls_and_uses_api_key() {
        let prepared = Prepared::new(&provider(
            "{type: azureOpenAI, baseUrl: 'https://x.openai.azure.com', apiVersion: '2024-10-21', credentials: {env: K}}",
        ));
        assert!(prepared.chat.is_none() && prepared.embeddings.is_none());
        let (name, value) = prepared.credential.expect("credential header");
        assert_eq!(name.as_str(), "api-key");
        assert_eq!(value.to_str().ok(), Some("sk-upstream"));
    }
}
