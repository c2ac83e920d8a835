//! The compiled routing configuration: validated domain types with every reference resolved
//! (providers by index, credentials read from their Secret or variable, API keys reduced to
//! their keyed hash).
//!
//! Gateways serve from it (wrapped in their snapshot). The operator compiles too, to report
//! errors in RoutePolicy status and to check a last-known-good ConfigMap before writing it,
//! but what it writes there are the resources themselves ([`crate::snapshot`]): nothing here
//! is serialisable. [`CompiledConfig`] is produced only by [`crate::compile::compile`]; the
//! gateway builds a [`CompiledJwt`] from its `JWT_*` settings as well, used when the
//! configuration has none.
//!
//! The containers are not CRD shapes (no object metadata, no references by name), but their
//! fields reuse the API's own value types where validation leaves a value as written:
//! [`crate::policy`]'s timeouts, breaker thresholds, retry, limits and budget, the route
//! [`Strategy`], the [`ProviderType`], catalogue [`ModelInfo`] and [`FakeSettings`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::SystemTime;

use globset::GlobSet;

use crate::Duration;
use crate::llm_provider::{FakeSettings, ModelInfo, ProviderType};
use crate::policy::{Budget, CircuitBreaker, RateLimits, Retry, Timeouts};
use crate::route_policy::Strategy;

/// A credential that never shows up in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself; call only where it is sent upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("*****")
    }
}

/// Index of a provider in [`CompiledConfig::providers`].
pub type ProviderIndex = usize;

/// Everything a gateway needs to serve, validated as a whole.
#[derive(Debug, Default)]
pub struct CompiledConfig {
    /// Upstreams, referenced by index from route targets.
    pub providers: Vec<CompiledProvider>,
    /// Routes by the model name clients send.
    pub routes: BTreeMap<String, CompiledRoute>,
    /// Accepted API keys.
    pub keys: Vec<CompiledKey>,
    /// How callers authenticate.
    pub auth: CompiledAuth,
    /// Every LlmQuota with shared limits or a shared budget.
    pub quotas: Vec<std::sync::Arc<CompiledQuota>>,
}

/// Limits and a budget shared by a group of callers (an LlmQuota).
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledQuota {
    /// `namespace/name` of the LlmQuota.
    pub id: String,
    /// The account its shared limits and usage are kept under (`quota:<namespace>/<name>`).
    pub account: String,
    /// Limits shared by the selected callers.
    pub limits: Option<RateLimits>,
    /// Spend cap shared by the selected callers.
    pub budget: Option<Budget>,
}

/// Quotas by the callers they select.
pub type Quotas = Vec<std::sync::Arc<CompiledQuota>>;

/// Accepted caller credentials.
#[derive(Debug, Clone)]
pub struct CompiledAuth {
    /// Accept keys of ApiKey resources.
    pub api_keys: bool,
    /// Accept JSON Web Tokens.
    pub jwt: Option<CompiledJwt>,
    /// Models, limits and budget of each token subject.
    pub jwt_policy: CallerPolicy,
    /// Accept ServiceAccount tokens for the ApiKeys that name a ServiceAccount.
    pub service_accounts: Option<CompiledServiceAccounts>,
}

/// Where ServiceAccount tokens are verified.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CompiledServiceAccounts {
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Required `iss`; discovered from the API server when unset.
    pub issuer: Option<String>,
    /// The issuer's JWKS URL; the API server's `/openid/v1/jwks` when unset.
    pub jwks_uri: Option<String>,
    /// The JWKS URL may reach loopback, private, link-local or metadata addresses.
    pub allow_local_addresses: bool,
    /// Longest `exp` − `iat` accepted.
    pub max_token_lifetime: std::time::Duration,
}

/// What a class of callers may do: models, limits and budget.
#[derive(Debug, Clone, Default)]
pub struct CallerPolicy {
    /// Allowed route models; `None` allows all.
    pub models: Option<std::sync::Arc<GlobSet>>,
    /// Rate and concurrency limits per caller.
    pub limits: Option<RateLimits>,
    /// Spend cap per caller.
    pub budget: Option<Budget>,
    /// Quotas shared by token callers, by team.
    pub team_quotas: BTreeMap<String, Quotas>,
}

impl CallerPolicy {
    /// Whether the policy allows route `model`.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|set| set.is_match(model))
    }
}

impl Default for CompiledAuth {
    fn default() -> Self {
        Self {
            api_keys: true,
            jwt: None,
            jwt_policy: CallerPolicy::default(),
            service_accounts: None,
        }
    }
}

/// JWT verification settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CompiledJwt {
    /// Required `iss`.
    pub issuer: String,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// Where verification keys come from.
    pub key: JwtKey,
    /// Claim naming the caller's team (the owner in metrics and logs); `sub` when unset.
    pub team_claim: Option<String>,
    /// The JWKS URL may reach loopback, private, link-local or metadata addresses.
    pub allow_local_addresses: bool,
}

/// A JWT verification key source; each pins its algorithms.
#[derive(Debug, Clone, PartialEq)]
pub enum JwtKey {
    /// A shared secret: HS256 only.
    Hs256(SecretString),
    /// A JWKS URL: RS256 and ES256 keys, by `kid`.
    Jwks(String),
}

/// An upstream with its credential resolved.
#[derive(Debug)]
pub struct CompiledProvider {
    /// `namespace/name` of the LlmProvider.
    pub id: String,
    /// Name of the LlmProvider (metric label).
    pub name: String,
    /// Wire protocol.
    pub provider_type: ProviderType,
    /// Root URL without a trailing slash; `None` for the fake provider.
    pub base_url: Option<String>,
    /// Local addresses allowed (spec, or the operator's own self-hosted Service).
    pub allow_local_addresses: bool,
    /// The API key sent upstream, when the type needs one.
    pub credential: Option<SecretString>,
    /// Set when the provider cannot serve (e.g. its credential variable is unset); routes to it
    /// answer 503 with this reason.
    pub unavailable: Option<String>,
    /// Timeouts for calls to this upstream.
    pub timeouts: Timeouts,
    /// Requests in flight at once, per replica.
    pub max_concurrency: Option<u32>,
    /// Breaker thresholds for targets on this provider.
    pub circuit_breaker: CircuitBreaker,
    /// Model catalogue by upstream model name (empty: any model).
    pub models: BTreeMap<String, ModelInfo>,
    /// The models `spec.models` lists: when any, routes may target only these.
    pub listed_models: std::collections::BTreeSet<String>,
    /// Fake provider behaviour (type fake only).
    pub fake: Option<FakeSettings>,
    /// API version for azureOpenAI (`api-version`) and anthropic (`anthropic-version`).
    pub api_version: Option<String>,
    /// The OpenAI APIs served natively besides chat completions and embeddings (`protocols`,
    /// or the type's default).
    pub protocols: Vec<crate::llm_provider::OpenAiProtocol>,
}

/// A model name clients may request.
#[derive(Debug)]
pub struct CompiledRoute {
    /// The client-facing model name.
    pub model: String,
    /// `namespace/name` of the RoutePolicy that defines it.
    pub policy: String,
    /// How targets are picked.
    pub strategy: Strategy,
    /// What keeps a conversation on one target of a weighted route.
    pub cache_affinity: crate::policy::CacheAffinity,
    /// Where requests go.
    pub targets: Vec<CompiledTarget>,
    /// Routes to try when every target fails.
    pub fallbacks: Vec<String>,
    /// Retry policy of the RoutePolicy.
    pub retry: Option<Retry>,
    /// Deadline for the whole request.
    pub timeout: Option<Duration>,
    /// Limits shared by all callers of the RoutePolicy's routes.
    pub limits: Option<RateLimits>,
    /// Whether prompts and completions go on trace spans.
    pub capture_content: bool,
}

/// One upstream of a route.
#[derive(Debug)]
pub struct CompiledTarget {
    /// Index into [`CompiledConfig::providers`].
    pub provider: ProviderIndex,
    /// Model name sent upstream.
    pub upstream_model: String,
    /// Weighted-strategy share.
    pub weight: u32,
    /// Breaker thresholds (the RoutePolicy override, else the provider's).
    pub circuit_breaker: CircuitBreaker,
}

/// What proves a caller is an ApiKey's.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeyCredential {
    /// A key, known only by `HMAC-SHA256(pepper, key)`.
    Hash([u8; 32]),
    /// A ServiceAccount's token, by its subject (`system:serviceaccount:<ns>:<name>`).
    ServiceAccount(String),
}

/// An accepted caller of an ApiKey: an API key known only by its keyed hash, or a
/// ServiceAccount.
#[derive(Debug)]
pub struct CompiledKey {
    /// Public id, safe to log: the key id, or `sa:<namespace>:<name>` for a ServiceAccount.
    pub key_id: String,
    /// What the caller presents.
    pub credential: KeyCredential,
    /// `namespace/name` of the ApiKey.
    pub name: String,
    /// Owner, for metrics and logs.
    pub owner: String,
    /// Allowed route models; `None` allows all.
    pub models: Option<std::sync::Arc<GlobSet>>,
    /// Refused after this instant.
    pub expires_at: Option<SystemTime>,
    /// Refused while set.
    pub disabled: bool,
    /// Set for the key being rotated out (its grace period ends at `expires_at`).
    pub rotated_out: bool,
    /// Per-key limits.
    pub limits: Option<RateLimits>,
    /// Per-key spend cap.
    pub budget: Option<Budget>,
    /// LlmQuotas whose shared limits and budget this key draws from too.
    pub quotas: Quotas,
    /// Set when an LlmQuota's caps refuse the key: its `namespace/name` and the reason.
    pub over_quota: Option<(String, String)>,
}

impl CompiledProvider {
    /// Whether the upstream serves `protocol` natively.
    pub fn serves(&self, protocol: crate::llm_provider::OpenAiProtocol) -> bool {
        self.protocols.contains(&protocol)
    }

    /// The largest completion the catalogue allows for `model`, if listed.
    pub fn max_output_tokens(&self, model: &str) -> Option<u32> {
        self.model(model).and_then(|m| m.max_output_tokens)
    }

    /// What the provider knows about `model`: its own entry, else that of the alias a dated
    /// snapshot name extends (`claude-sonnet-4-5-20250929`, `gpt-4o-2024-11-20`).
    pub fn model(&self, model: &str) -> Option<&ModelInfo> {
        self.models
            .get(model)
            .or_else(|| self.models.get(crate::catalogue::alias_of(model)?))
    }
}

impl CompiledKey {
    /// Whether this key may call the given route model.
    pub fn allows_model(&self, model: &str) -> bool {
        self.models.as_ref().is_none_or(|set| set.is_match(model))
    }
}
