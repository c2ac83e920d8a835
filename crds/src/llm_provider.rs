//! `LlmProvider`: one upstream LLM API (a SaaS API or a self-hosted model server).
//!
//! The gateway sends traffic to providers; RoutePolicies name them as targets. Credentials are
//! referenced, never inlined: a Secret in the provider's namespace, or (standalone mode only)
//! an environment variable of the gateway process.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::policy::{CircuitBreaker, Timeouts};
use crate::refs::SecretKeyRef;

/// The wire protocol an upstream speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProviderType {
    /// OpenAI's API (api.openai.com).
    #[serde(rename = "openai")]
    OpenAi,
    /// Anthropic's Messages API.
    #[serde(rename = "anthropic")]
    Anthropic,
    /// Google Gemini's generateContent API.
    #[serde(rename = "gemini")]
    Gemini,
    /// Azure OpenAI deployments.
    #[serde(rename = "azureOpenAI")]
    AzureOpenAi,
    /// Any server speaking the OpenAI chat completions API (vLLM, Ollama, llama.cpp).
    #[serde(rename = "openaiCompatible")]
    OpenAiCompatible,
    /// A deterministic built-in provider for demos and tests; makes no network calls.
    #[serde(rename = "fake")]
    Fake,
}

impl ProviderType {
    /// The name used in manifests, metrics and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Gemini => "gemini",
            Self::AzureOpenAi => "azureOpenAI",
            Self::OpenAiCompatible => "openaiCompatible",
            Self::Fake => "fake",
        }
    }

    /// The API version used when the spec leaves `apiVersion` empty.
    pub const fn default_api_version(self) -> Option<&'static str> {
        match self {
            Self::AzureOpenAi => Some("2024-10-21"),
            Self::Anthropic => Some("2023-06-01"),
            _ => None,
        }
    }

    /// The OpenAI APIs beyond chat completions and embeddings an upstream of this type serves
    /// when the spec leaves `protocols` empty: OpenAI has them all; an OpenAI-compatible server
    /// is assumed to serve legacy completions only (vLLM, llama.cpp and Ollama do); Azure
    /// OpenAI none (its Responses API lives on the separate v1 surface: list it to use it).
    pub const fn default_protocols(self) -> &'static [OpenAiProtocol] {
        match self {
            Self::OpenAi => &[OpenAiProtocol::Responses, OpenAiProtocol::Completions],
            Self::OpenAiCompatible => &[OpenAiProtocol::Completions],
            _ => &[],
        }
    }

    /// The base URL used when the spec leaves `baseUrl` empty.
    pub const fn default_base_url(self) -> Option<&'static str> {
        match self {
            Self::OpenAi => Some("https://api.openai.com/v1"),
            Self::Anthropic => Some("https://api.anthropic.com"),
            Self::Gemini => Some("https://generativelanguage.googleapis.com"),
            Self::AzureOpenAi | Self::OpenAiCompatible | Self::Fake => None,
        }
    }
}

/// An OpenAI API an OpenAI-format upstream may serve besides chat completions and embeddings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OpenAiProtocol {
    /// The Responses API (`POST /responses`).
    #[serde(rename = "responses")]
    Responses,
    /// The legacy completions API (`POST /completions`).
    #[serde(rename = "completions")]
    Completions,
}

/// Where the provider's API key comes from. Exactly one source must be set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.secretRef) != has(self.env)").message("set exactly one of credentials.secretRef or credentials.env"))]
pub struct Credentials {
    /// A key inside a Secret in the provider's namespace (Kubernetes mode and standalone mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Name of an environment variable of the gateway process (standalone mode only). When the
    /// variable is unset the provider is reported unavailable and its routes answer 503.
    #[schemars(regex(pattern = r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
}

/// What the provider knows about one upstream model: prices drive spend, context drives routing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelInfo {
    /// The upstream model name, as the provider's API spells it.
    #[schemars(length(min = 1, max = 256))]
    pub name: String,
    /// What each kind of token costs.
    #[serde(flatten)]
    pub prices: crate::pricing::Prices,
    /// Other prices for requests whose prompt is larger than a size (Gemini 2.5 Pro and
    /// Claude's long context above 200,000 tokens), in increasing `aboveInputTokens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 4))]
    pub tiers: Vec<crate::pricing::PriceTier>,
    /// Largest prompt plus completion, in tokens.
    #[schemars(range(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    /// Largest completion, in tokens (used as the default `max_tokens` where one is required).
    #[schemars(range(min = 1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
}

/// Behaviour of the built-in `fake` provider. Deterministic: the same requests in the same
/// order always get the same answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FakeSettings {
    /// Text every completion answers with.
    #[serde(default = "FakeSettings::default_response")]
    #[schemars(length(max = 65536))]
    pub response: String,
    /// Delay before the response (non-streaming) or before the first chunk (streaming).
    #[serde(default = "FakeSettings::default_latency")]
    pub latency: crate::Duration,
    /// Delay between two streamed chunks.
    #[serde(default = "FakeSettings::default_chunk_interval")]
    pub chunk_interval: crate::Duration,
    /// Number of content chunks a streamed answer is split into.
    #[serde(default = "FakeSettings::default_chunks")]
    #[schemars(range(min = 1, max = 10000))]
    pub chunks: u32,
    /// Fraction of requests (0 to 1) answered with an upstream error (HTTP 503), spread evenly.
    #[serde(default)]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub failure_rate: f64,
}

impl FakeSettings {
    fn default_response() -> String {
        "Hello from the llm-gateway fake provider.".to_owned()
    }
    fn default_latency() -> crate::Duration {
        crate::Duration::from_millis(0)
    }
    fn default_chunk_interval() -> crate::Duration {
        crate::Duration::from_millis(0)
    }
    fn default_chunks() -> u32 {
        5
    }
}

impl Default for FakeSettings {
    fn default() -> Self {
        Self {
            response: Self::default_response(),
            latency: Self::default_latency(),
            chunk_interval: Self::default_chunk_interval(),
            chunks: Self::default_chunks(),
            failure_rate: 0.0,
        }
    }
}

/// An upstream LLM API that routes can send traffic to.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "llmgateway.io",
    version = "v1alpha1",
    kind = "LlmProvider",
    doc = "An upstream LLM API (SaaS or self-hosted) that RoutePolicy targets send traffic to.",
    plural = "llmproviders",
    shortname = "llmp",
    category = "llm",
    namespaced,
    status = "LlmProviderStatus",
    printcolumn = r#"{"name":"Type","type":"string","jsonPath":".spec.type"}"#,
    printcolumn = r#"{"name":"Base URL","type":"string","jsonPath":".spec.baseUrl"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.fake) || self.type == 'fake'").message("spec.fake is only allowed when spec.type is fake"))]
#[x_kube(validation = Rule::new("!(self.type in ['azureOpenAI', 'openaiCompatible']) || has(self.baseUrl) || has(self.selfHosted)").message("spec.baseUrl is required for types azureOpenAI and openaiCompatible (unless selfHosted)"))]
#[x_kube(validation = Rule::new("!has(self.selfHosted) || self.type == 'openaiCompatible'").message("spec.selfHosted is only allowed when spec.type is openaiCompatible"))]
#[x_kube(validation = Rule::new("!has(self.protocols) || self.type in ['openai', 'azureOpenAI', 'openaiCompatible']").message("spec.protocols is only allowed for types openai, azureOpenAI and openaiCompatible"))]
#[x_kube(validation = Rule::new("self.type == 'fake' || self.type == 'openaiCompatible' || has(self.credentials)").message("spec.credentials is required for this provider type"))]
#[x_kube(validation = Rule::new(crate::egress::cel::shape_rule("baseUrl", false)).message("spec.baseUrl must be http(s)://host[:port][/path]: an ASCII host name or IP address, with no user:password@, query (?) or fragment (#)"))]
#[x_kube(validation = Rule::new(crate::egress::cel::local_rule("baseUrl", "self.allowLocalAddresses")).message("spec.baseUrl points at a loopback, link-local or metadata address, or a private network; set spec.allowLocalAddresses to allow it"))]
#[x_kube(validation = Rule::new(crate::egress::cel::unusual_ip_rule("baseUrl", "self.allowLocalAddresses")).message("spec.baseUrl writes an IP address in a form admission cannot check (a numeric or shortened IPv4 such as 2130706433 or 127.1, or an IPv6 NAT64, 6to4 or Teredo address); write the dotted IPv4 address, or set spec.allowLocalAddresses"))]
pub struct LlmProviderSpec {
    /// The wire protocol of the upstream: openai, anthropic, gemini, azureOpenAI,
    /// openaiCompatible or fake.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// Root URL of the API, e.g. `https://api.openai.com/v1`: scheme, host, optional port and
    /// path prefix only (no user information, query or fragment). Defaulted per type; required
    /// for azureOpenAI and openaiCompatible.
    #[schemars(
        regex(pattern = r"^https?://[^\s/?#]+(/[^\s?#]*)?$"),
        length(max = 2048)
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// Allow `baseUrl` to reach loopback, private (RFC 1918, CGNAT, unique-local), link-local or
    /// cloud metadata addresses, written literally or resolved from its host name at connect
    /// time (refused by default to prevent server-side request forgery). Needed for a model
    /// server on localhost or inside the cluster.
    #[serde(default)]
    pub allow_local_addresses: bool,
    /// Where the API key comes from. Optional for openaiCompatible servers that need none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<Credentials>,
    /// Models this provider serves, with prices and limits. Optional; when set, routes may only
    /// target models listed here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 1000))]
    pub models: Vec<ModelInfo>,
    /// Take prices from the gateway's built-in catalogue of well-known models (list prices,
    /// dated; see the LlmProvider reference) for every model it lists, each price `models`
    /// sets overriding it. Models it lists do not restrict the routes.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub price_catalogue: bool,
    /// How long to wait on this upstream.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Requests in flight to this provider at once, per gateway replica.
    #[schemars(range(min = 1, max = 100000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Default circuit-breaker thresholds for every target on this provider.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// A model server the operator runs for this provider (type openaiCompatible only);
    /// `baseUrl` then defaults to its Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_hosted: Option<crate::self_hosted::SelfHosted>,
    /// Settings of the built-in fake provider (type fake only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fake: Option<FakeSettings>,
    /// The OpenAI APIs the upstream serves natively besides chat completions and embeddings
    /// (types openai, azureOpenAI and openaiCompatible): requests of a listed API pass through,
    /// `responses` requests to an upstream without it are translated to chat completions, and
    /// `completions` requests are refused. Default per type: openai `[responses, completions]`,
    /// openaiCompatible `[completions]`, azureOpenAI `[]`; list `responses` for a vLLM server
    /// or an Azure resource on the v1 API (`{baseUrl}/openai/v1/responses`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2))]
    pub protocols: Option<Vec<OpenAiProtocol>>,
    /// API version sent upstream: the `api-version` query parameter for azureOpenAI (default
    /// `2024-10-21`) or the `anthropic-version` header for anthropic (default `2023-06-01`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9A-Za-z][0-9A-Za-z.-]*$"), length(max = 64))]
    pub api_version: Option<String>,
}

/// Observed state of an LlmProvider.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmProviderStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// URL of the self-hosted model server's Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model_server_url: Option<String>,
    /// Model-server pods ready to serve (selfHosted only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Ready says whether the credential Secret exists and holds the key, and for a
    /// self-hosted provider whether a model-server pod is ready or why the operator refused
    /// to run it (an image outside its allowed repositories, a Secret read without consent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}
