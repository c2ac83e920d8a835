//! LlmProvider → CompiledProvider: base URL, SSRF guard, credentials, catalogue.

use std::collections::BTreeMap;

use kube::ResourceExt;

use super::keys::SecretIndex;
use super::{CompileInputs, ConfigError, namespace_of, object_id};
use crate::compiled::{CompiledProvider, SecretString};
use crate::llm_provider::{LlmProvider, LlmProviderSpec, ModelInfo, ProviderType};

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
    for (index, model) in spec.models.iter().enumerate() {
        let sizes: Vec<u64> = model.tiers.iter().map(|t| t.above_input_tokens).collect();
        if sizes.windows(2).any(|pair| pair[0] >= pair[1]) {
            fail(
                &format!("spec.models[{index}].tiers"),
                "price tiers must be listed in increasing aboveInputTokens".to_owned(),
            );
        }
    }
    let models = priced_models(spec, kind);
    Some(CompiledProvider {
        id: object_id(provider),
        name: provider.name_any(),
        provider_type: kind,
        base_url,
        allow_local_addresses: allows_local_addresses(provider),
        credential,
        unavailable,
        timeouts: spec.timeouts.clone(),
        max_concurrency: spec.max_concurrency,
        circuit_breaker: breaker,
        models,
        listed_models: spec.models.iter().map(|m| m.name.clone()).collect(),
        fake: (kind == ProviderType::Fake).then(|| spec.fake.clone().unwrap_or_default()),
        api_version: spec
            .api_version
            .clone()
            .or_else(|| kind.default_api_version().map(str::to_owned)),
        protocols: spec
            .protocols
            .clone()
            .unwrap_or_else(|| kind.default_protocols().to_vec()),
    })
}

/// Resolves and checks `baseUrl`: an http(s) URL of scheme, host, optional port and path only,
/// whose host is not a loopback, private, link-local or metadata literal unless
/// `allowLocalAddresses` (server-side request forgery guard; names are checked again at connect
/// time, on what they resolve to). Returns the parsed URL's serialisation, so what was checked
/// is exactly what the gateway calls.
fn base_url(provider: &LlmProvider, fail: &mut dyn FnMut(&str, String)) -> Option<String> {
    let spec = &provider.spec;
    let raw = match (&spec.base_url, spec.provider_type.default_base_url()) {
        (Some(url), _) => url.as_str(),
        (None, Some(default)) => default,
        (None, None) if spec.provider_type == ProviderType::Fake => return None,
        (None, None) if spec.self_hosted.is_some() => {
            // The operator's own Service URL: a cluster address by design, allowed through
            // `allows_local_addresses`.
            let hosted = spec.self_hosted.as_ref()?;
            let (name, namespace) = (provider.name_any(), namespace_of(provider));
            // The API server only admits DNS labels here; a standalone file could put a
            // `user@host/` into the URL this builds, with the local-address exemption.
            let label = |s: &str| {
                !s.is_empty()
                    && s.len() <= 63
                    && s.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            };
            if !label(&name) || !label(namespace) {
                fail(
                    "metadata",
                    "a selfHosted provider's name and namespace must be DNS labels".to_owned(),
                );
                return None;
            }
            return Some(hosted.base_url(&name, namespace));
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
            // Not echoed: a malformed URL may still carry a password.
            fail(
                "spec.baseUrl",
                "is not an http(s) URL with a host".to_owned(),
            );
            return None;
        }
    };
    if let Some(problem) = shape_problem(&parsed) {
        fail("spec.baseUrl", problem.to_owned());
        return None;
    }
    if crate::egress::is_never_allowed_url_host(&parsed) {
        fail(
            "spec.baseUrl",
            "points at a loopback, link-local or metadata address, or a private network; \
             link-local and cloud metadata addresses are refused even with allowLocalAddresses"
                .to_owned(),
        );
        return None;
    }
    if !spec.allow_local_addresses && crate::egress::is_forbidden_url_host(&parsed) {
        fail(
            "spec.baseUrl",
            "points at a loopback, link-local or metadata address, or a private network; set \
             spec.allowLocalAddresses to allow it"
                .to_owned(),
        );
        return None;
    }
    Some(parsed.as_str().trim_end_matches('/').to_owned())
}

/// What a base URL holds besides scheme, host, port and path, if anything. Credentials belong
/// in `spec.credentials` (user information would be sent to whoever the host is and logged
/// with the URL), and a query or fragment would be glued to every API path the gateway adds.
fn shape_problem(url: &url::Url) -> Option<&'static str> {
    if !url.username().is_empty() || url.password().is_some() {
        Some("must not contain user information (user:password@); use spec.credentials")
    } else if url.query().is_some() {
        Some("must not contain a query (?...): only scheme, host, port and path")
    } else if url.fragment().is_some() {
        Some("must not contain a fragment (#...): only scheme, host, port and path")
    } else {
        None
    }
}

/// Whether the gateway may connect to local and private addresses for this provider: when the
/// spec says so, or when the URL is the operator's Service for a self-hosted model server.
fn allows_local_addresses(provider: &LlmProvider) -> bool {
    let spec = &provider.spec;
    spec.allow_local_addresses || (spec.base_url.is_none() && spec.self_hosted.is_some())
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

/// The provider's models by name: `spec.models`, over the built-in catalogue's entries for
/// its type when it opts in (each price it sets wins).
fn priced_models(spec: &LlmProviderSpec, kind: ProviderType) -> BTreeMap<String, ModelInfo> {
    let mut models: BTreeMap<String, ModelInfo> = BTreeMap::new();
    if spec.price_catalogue {
        for listed in crate::catalogue::models(kind) {
            models.insert(listed.name.clone(), listed.clone());
        }
    }
    for own in &spec.models {
        let merged = match models.get(&own.name) {
            Some(listed) => crate::catalogue::overlay(own, listed),
            None => own.clone(),
        };
        models.insert(own.name.clone(), merged);
    }
    models
}

#[cfg(test)]
mod tests {
    use crate::compile::{CompileInputs, compile};
    use crate::compiled::CompiledConfig;
    use crate::manifest::Manifests;

    /// Compiles one provider with only the compiler's own checks (CEL skipped, as for objects a
    /// cluster admitted), so these tests hold even where the CRD's rules would also refuse.
    fn compile_provider(spec: &str) -> Result<CompiledConfig, Vec<String>> {
        let yaml = format!(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {{name: p}}\nspec: {spec}\n"
        );
        let mut manifests = Manifests::default();
        manifests.add_yaml("test.yaml", &yaml).unwrap();
        let inputs = CompileInputs {
            env: &|_| None,
            key_pepper: b"pepper",
            admitted: true,
        };
        compile(&manifests, &inputs).map_err(|e| e.iter().map(ToString::to_string).collect())
    }

    fn with_base_url(url: &str, allow: bool) -> Result<CompiledConfig, Vec<String>> {
        compile_provider(&format!(
            "{{type: openaiCompatible, baseUrl: '{url}', allowLocalAddresses: {allow}}}"
        ))
    }

    #[test]
    fn local_private_and_metadata_literals_are_refused_unless_allowed() {
        for url in [
            "http://LOCALHOST./v1",
            "http://api.localhost/v1",
            "http://metadata/computeMetadata/v1",
            "http://metadata.google.internal/",
            "http://[fd00:ec2::254]/latest/meta-data",
            "http://100.100.100.200/latest/meta-data",
            "http://[::127.0.0.1]:8000/v1",
            "http://[64:ff9b::a9fe:a9fe]/latest",
            "http://[::ffff:127.0.0.1]/v1",
            "http://10.0.0.1/v1",
            "http://192.168.1.10:8000/v1",
            "http://172.16.0.1/v1",
            "http://169.254.169.254/latest",
            "http://0.0.0.0:8000/v1",
            "http://2130706433/v1",
        ] {
            let errors = with_base_url(url, false).err().unwrap_or_default();
            assert!(
                errors.iter().any(|e| e.contains(
                    "spec.baseUrl: points at a loopback, link-local or metadata address, or a private"
                )),
                "{url}: {errors:?}"
            );
            let never =
                url::Url::parse(url).is_ok_and(|u| crate::egress::is_never_allowed_url_host(&u));
            assert_eq!(
                with_base_url(url, true).is_ok(),
                !never,
                "{url} with allowLocalAddresses"
            );
        }
    }

    #[test]
    fn user_information_query_and_fragment_are_refused_even_when_local_is_allowed() {
        for (url, expected) in [
            ("https://api.example.com/v1?x=1", "must not contain a query"),
            (
                "https://api.example.com/v1#f",
                "must not contain a fragment",
            ),
            (
                "https://user:pass@api.example.com/v1",
                "must not contain user information",
            ),
            (
                "https://user@api.example.com/v1",
                "must not contain user information",
            ),
        ] {
            for allow in [false, true] {
                let errors = with_base_url(url, allow).err().unwrap_or_default();
                assert!(
                    errors.iter().any(|e| e.contains(expected)),
                    "{url}: {errors:?}"
                );
            }
        }
    }

    #[test]
    fn public_base_urls_are_accepted_as_parsed() {
        for (url, compiled) in [
            ("https://api.openai.com/v1", "https://api.openai.com/v1"),
            ("https://x.openai.azure.com", "https://x.openai.azure.com"),
            (
                "http://llm.example.com:8080/v1/",
                "http://llm.example.com:8080/v1",
            ),
            (
                "HTTPS://API.Example.COM:443/v1",
                "https://api.example.com/v1",
            ),
            (
                "https://[2606:4700:4700::1111]/v1",
                "https://[2606:4700:4700::1111]/v1",
            ),
            ("http://8.8.8.8/v1", "http://8.8.8.8/v1"),
        ] {
            let config = with_base_url(url, false).unwrap_or_else(|e| panic!("{url}: {e:?}"));
            let provider = &config.providers[0];
            assert_eq!(provider.base_url.as_deref(), Some(compiled), "{url}");
            assert!(!provider.allow_local_addresses, "{url}");
        }
    }

    #[test]
    fn only_the_operators_own_service_url_allows_local_addresses_implicitly() {
        let hosted = "{type: openaiCompatible, selfHosted: {image: 'vllm/vllm-openai:v0.8.5'}}";
        let config = compile_provider(hosted).unwrap_or_else(|e| panic!("{e:?}"));
        let provider = &config.providers[0];
        assert!(provider.allow_local_addresses);
        assert!(
            provider
                .base_url
                .as_deref()
                .is_some_and(|u| u.ends_with(".svc.cluster.local:8000/v1")),
            "{:?}",
            provider.base_url
        );
        let explicit = "{type: openaiCompatible, baseUrl: 'https://models.example.com/v1', \
                        selfHosted: {image: 'vllm/vllm-openai:v0.8.5'}}";
        let config = compile_provider(explicit).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!config.providers[0].allow_local_addresses);
    }
}
