//! LlmProvider → CompiledProvider: base URL, SSRF guard, credentials, catalogue.

use std::collections::BTreeMap;
use std::net::IpAddr;

use kube::ResourceExt;

use super::keys::SecretIndex;
use super::{CompileInputs, ConfigError, namespace_of, object_id};
use crate::compiled::{CompiledProvider, SecretString};
use crate::llm_provider::{LlmProvider, ProviderType};

const KIND: &str = "LlmProvider";

/// Compiles every provider; invalid ones are reported and left out.
pub(super) fn compile(
    providers: &[LlmProvider],
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    errors: &mut Vec<ConfigError>,
) -> Vec<CompiledProvider> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(providers.len());
    for provider in providers {
        let id = object_id(provider);
        let mut fail = |field: &str, message: String| {
            errors.push(ConfigError {
                kind: KIND,
                object: id.clone(),
                field: field.to_owned(),
                message,
            });
        };
        if seen.insert(id.clone(), ()).is_some() {
            fail("metadata.name", "defined more than once".to_owned());
            continue;
        }
        if let Some(p) = compile_one(provider, secrets, inputs, &mut fail) {
            out.push(p);
        }
    }
    out
}

fn compile_one(
    provider: &LlmProvider,
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> Option<CompiledProvider> {
    let spec = &provider.spec;
    let kind = spec.provider_type;
    let base_url = base_url(provider, fail);
    if spec.fake.is_some() && kind != ProviderType::Fake {
        fail(
            "spec.fake",
            "only allowed when spec.type is fake".to_owned(),
        );
    }
    if let Some(fake) = &spec.fake {
        if !(0.0..=1.0).contains(&fake.failure_rate) {
            fail(
                "spec.fake.failureRate",
                "must be between 0 and 1".to_owned(),
            );
        }
        if fake.chunks == 0 {
            fail("spec.fake.chunks", "must be at least 1".to_owned());
        }
    }
    let breaker = spec.circuit_breaker.clone().unwrap_or_default();
    if breaker.failure_threshold == 0 || breaker.half_open_probes == 0 {
        fail(
            "spec.circuitBreaker",
            "failureThreshold and halfOpenProbes must be at least 1".to_owned(),
        );
    }
    let (credential, unavailable) = credential(provider, secrets, inputs, fail);
    let models = spec
        .models
        .iter()
        .map(|m| (m.name.clone(), m.clone()))
        .collect();
    Some(CompiledProvider {
        id: object_id(provider),
        name: provider.name_any(),
        provider_type: kind,
        base_url,
        credential,
        unavailable,
        timeouts: spec.timeouts.clone(),
        max_concurrency: spec.max_concurrency,
        circuit_breaker: breaker,
        models,
        fake: (kind == ProviderType::Fake).then(|| spec.fake.clone().unwrap_or_default()),
        api_version: spec
            .api_version
            .clone()
            .or_else(|| kind.default_api_version().map(str::to_owned)),
    })
}

/// Resolves and checks `baseUrl`: http(s), a host, and no loopback/link-local/metadata target
/// unless `allowLocalAddresses` (server-side request forgery guard).
fn base_url(provider: &LlmProvider, fail: &mut dyn FnMut(&str, String)) -> Option<String> {
    let spec = &provider.spec;
    let raw = match (&spec.base_url, spec.provider_type.default_base_url()) {
        (Some(url), _) => url.as_str(),
        (None, Some(default)) => default,
        (None, None) if spec.provider_type == ProviderType::Fake => return None,
        (None, None) if spec.self_hosted.is_some() => {
            // A Service URL is never a local address: no SSRF check needed.
            let hosted = spec.self_hosted.as_ref()?;
            return Some(hosted.base_url(&provider.name_any(), namespace_of(provider)));
        }
        (None, None) => {
            fail(
                "spec.baseUrl",
                format!("required for type {}", spec.provider_type.as_str()),
            );
            return None;
        }
    };
    let parsed = match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        _ => {
            fail(
                "spec.baseUrl",
                format!("{raw:?} is not an http(s) URL with a host"),
            );
            return None;
        }
    };
    if !spec.allow_local_addresses && is_local_host(&parsed) {
        fail(
            "spec.baseUrl",
            "points at a loopback, link-local or metadata address; set spec.allowLocalAddresses \
             to allow it"
                .to_owned(),
        );
        return None;
    }
    Some(raw.trim_end_matches('/').to_owned())
}

fn is_local_host(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => {
            let d = d.to_ascii_lowercase();
            d == "localhost" || d.ends_with(".localhost") || d == "metadata.google.internal"
        }
        Some(url::Host::Ipv4(ip)) => is_local_ip(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => is_local_ip(IpAddr::V6(ip)),
        None => false,
    }
}

fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6
                    .to_ipv4_mapped()
                    .is_some_and(|v4| is_local_ip(IpAddr::V4(v4)))
        }
    }
}

/// Resolves the credential. A missing environment variable makes the provider unavailable
/// (standalone convenience: the example config works without every API key); a missing
/// Secret or key is an error, since it can only be a mistake in the manifests.
fn credential(
    provider: &LlmProvider,
    secrets: &SecretIndex<'_>,
    inputs: &CompileInputs<'_>,
    fail: &mut dyn FnMut(&str, String),
) -> (Option<SecretString>, Option<String>) {
    let spec = &provider.spec;
    let Some(creds) = &spec.credentials else {
        let needs = !matches!(
            spec.provider_type,
            ProviderType::Fake | ProviderType::OpenAiCompatible
        );
        if needs {
            fail(
                "spec.credentials",
                format!("required for type {}", spec.provider_type.as_str()),
            );
        }
        return (None, None);
    };
    match (&creds.secret_ref, &creds.env) {
        // A missing credential makes this provider unavailable (its routes answer 503 and its
        // status says why), never the whole configuration invalid: one provider waiting for
        // its Secret must not stop every other route from reloading.
        (Some(r), None) => match secrets.get(namespace_of(provider), &r.name, &r.key) {
            Ok(value) => (Some(SecretString::new(value)), None),
            Err(message) => (None, Some(message)),
        },
        (None, Some(var)) => match (inputs.env)(var).filter(|v| !v.is_empty()) {
            Some(value) => (Some(SecretString::new(value)), None),
            None => (None, Some(format!("environment variable {var} is not set"))),
        },
        _ => {
            fail(
                "spec.credentials",
                "set exactly one of secretRef or env".to_owned(),
            );
            (None, None)
        }
    }
}
