//! Caller authentication: an API key (`sk-lgw-…`), a Kubernetes ServiceAccount's projected
//! token (for the ApiKey naming the ServiceAccount) or a JSON Web Token, presented as
//! `Authorization: Bearer <credential>`, or `x-api-key` on the Anthropic-compatible endpoint;
//! never in the query string. A token goes to the ServiceAccount verifier when it says it
//! comes from the cluster's issuer (or no other tokens are accepted), else to the JWT one.
//! Every refusal is the same 401 body, whatever the reason (the reason goes to
//! `llm_api_key_rejections_total`). Refusals are counted per client address, and an address
//! past `AUTH_FAILURES_PER_MINUTE` gets 429 before its credential is looked at
//! (`reason="throttled"`; see [`crate::auth_throttle`]).

use http::{HeaderMap, header};
use std::sync::Arc;

use llm_gateway_crds::compiled::{CallerPolicy, CompiledQuota};
use llm_gateway_crds::keys::KEY_PREFIX;
use llm_gateway_crds::policy::{Budget, RateLimits};

use crate::auth_throttle::{self, ClientAddress};
use crate::config::Snapshot;
use crate::config::snapshot::KnownKey;
use crate::error::ApiError;
use crate::jwt::Identity;
use crate::limits::reservation::CallerLabel;
use crate::state::AppState;

/// An authenticated caller.
#[derive(Debug)]
pub enum Caller<'s> {
    /// An ApiKey resource's key, or the ServiceAccount an ApiKey names.
    Key(KnownKey<'s>),
    /// A verified token, with the policy every token subject gets.
    Token(Identity, &'s CallerPolicy),
}

impl Caller<'_> {
    /// Whether the caller may use route `model` (tokens may use every route).
    pub fn allows_model(&self, model: &str) -> bool {
        match self {
            Self::Key(key) => key.allows_model(model),
            Self::Token(_, policy) => policy.allows_model(model),
        }
    }

    /// The account limits and usage are kept under: the ApiKey resource (so rotation keeps
    /// its counters), or the token subject.
    pub fn account(&self) -> String {
        match self {
            Self::Key(key) => format!("key:{}", key.name),
            Self::Token(identity, _) => format!("jwt:{}", identity.subject),
        }
    }

    /// Per-caller limits.
    pub fn limits(&self) -> Option<&RateLimits> {
        match self {
            Self::Key(key) => key.limits.as_ref(),
            Self::Token(_, policy) => policy.limits.as_ref(),
        }
    }

    /// The LlmQuotas whose shared limits and budget the caller draws from too.
    pub fn quotas(&self) -> &[Arc<CompiledQuota>] {
        match self {
            Self::Key(key) => &key.quotas,
            Self::Token(identity, policy) => policy
                .team_quotas
                .get(&identity.team)
                .map_or(&[], Vec::as_slice),
        }
    }

    /// Whether a budget applies to the caller: its own or a quota's.
    pub fn has_budget(&self) -> bool {
        self.budget().is_some() || self.quotas().iter().any(|q| q.budget.is_some())
    }

    /// Whether a token limit applies to the caller: its own or a quota's.
    pub fn has_token_limit(&self) -> bool {
        let tpm =
            |limits: Option<&RateLimits>| limits.is_some_and(|l| l.tokens_per_minute.is_some());
        tpm(self.limits()) || self.quotas().iter().any(|q| tpm(q.limits.as_ref()))
    }

    /// Per-caller spend cap.
    pub fn budget(&self) -> Option<&Budget> {
        match self {
            Self::Key(key) => key.budget.as_ref(),
            Self::Token(_, policy) => policy.budget.as_ref(),
        }
    }

    /// Public identifier for logs and metrics: the key id, or `jwt:<subject>`.
    pub fn id(&self) -> String {
        match self {
            Self::Key(key) => key.key_id.clone(),
            Self::Token(identity, _) => format!("jwt:{}", identity.subject),
        }
    }

    /// Who to charge in metrics and records: a key's label, made once per snapshot; a token
    /// caller's, `jwt:<subject>` of the token's team.
    pub fn label(&self) -> Arc<CallerLabel> {
        match self {
            Self::Key(key) => Arc::clone(key.label),
            Self::Token(identity, _) => Arc::new(CallerLabel {
                id: Arc::from(format!("jwt:{}", identity.subject)),
                owner: Arc::from(identity.team.as_str()),
                namespace: Arc::default(),
            }),
        }
    }

    /// The owner: the key's owner, or the token's team.
    pub fn owner(&self) -> &str {
        match self {
            Self::Key(key) => &key.owner,
            Self::Token(identity, _) => &identity.team,
        }
    }
}

/// The authenticated caller, or `None` when the configuration accepts anonymous callers
/// (`LlmGateway.spec.auth.apiKeys: false` and no JWT). `client` is the address refusals are
/// counted against.
pub fn authenticate<'s>(
    state: &AppState,
    snapshot: &'s Snapshot,
    headers: &HeaderMap,
    accept_x_api_key: bool,
    client: ClientAddress,
) -> Result<Option<Caller<'s>>, ApiError> {
    if !snapshot.auth.api_keys && snapshot.jwt.is_none() && snapshot.service_accounts.is_none() {
        return Ok(None);
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .or_else(|| {
            accept_x_api_key
                .then(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
                .flatten()
        });
    // A valid credential is served even from a throttled address (many clients share one
    // behind a proxy or NAT, and one of them must not lock the others out); a refused one
    // from a throttled address gets 429 instead of 401, whatever was wrong with it.
    let refuse = |reason: &'static str| {
        if let Some(retry_after) = state.auth_throttle.check(client) {
            state.metrics.reject_key("throttled");
            return auth_throttle::refusal(retry_after);
        }
        state.metrics.reject_key(reason);
        state.auth_throttle.record_failure(client);
        ApiError::InvalidApiKey
    };
    let Some(presented) = presented else {
        return Err(refuse("missing"));
    };
    let looks_like_key = presented.starts_with(KEY_PREFIX);
    if !looks_like_key
        && let Some(verifier) = &snapshot.service_accounts
        && (snapshot.jwt.is_none() || verifier.claims_to_be_from(presented))
    {
        let subject = verifier.verify(presented).map_err(refuse)?;
        let key = snapshot.service_account(&subject).map_err(refuse)?;
        return admit_key(state, key);
    }
    match (&snapshot.jwt, looks_like_key) {
        (Some(verifier), false) => verifier
            .verify(presented)
            .map(|id| Some(Caller::Token(id, &snapshot.auth.jwt_policy)))
            .map_err(refuse),
        _ if !snapshot.auth.api_keys => Err(refuse("keys_disabled")),
        _ => {
            let key = snapshot
                .authenticate(presented, &state.settings.key_pepper)
                .map_err(refuse)?;
            admit_key(state, key)
        }
    }
}

/// A proven ApiKey caller, unless an LlmQuota's caps hold its key back.
fn admit_key<'s>(state: &AppState, key: KnownKey<'s>) -> Result<Option<Caller<'s>>, ApiError> {
    // The holder proved the key: telling it why the key is held back leaks nothing.
    if let Some((quota, reason)) = &key.over_quota {
        state.metrics.reject_key("over_quota");
        return Err(ApiError::KeyOverQuota {
            quota: quota.clone(),
            reason: reason.clone(),
        });
    }
    Ok(Some(Caller::Key(key)))
}
