//! What the operator agrees to run. Whoever may write an LlmGateway or a self-hosted
//! LlmProvider chooses an image, and the operator hands that image's pods what it holds for
//! them (a gateway's credentials Secret has every provider key and the pepper): without
//! bounds the operator is a confused deputy. So images must come from repositories allowed at
//! install time (`ALLOWED_IMAGE_REPOSITORIES`; the operator's own gateway repository always),
//! a model server reads Secrets only through `selfHosted.secretEnv` and only Secrets labelled
//! [`MODEL_SERVER_SECRET_LABEL`] (the Secret's manager consents, not the provider's author),
//! and every pod the builders make meets the restricted Pod Security Standard.
//!
//! A refused resource is not built: its `Ready` condition says which rule it broke, and the
//! children it already had are left as they were.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use llm_gateway_crds::llm_gateway::LlmGateway;
use llm_gateway_crds::self_hosted::SelfHosted;

use crate::build::gateway::DEFAULT_IMAGE;

/// The label (and value) a Secret carries to let model servers read it through
/// `selfHosted.secretEnv`.
pub const MODEL_SERVER_SECRET_LABEL: (&str, &str) = ("llmgateway.io/model-server-secret", "true");

/// Why a resource is not built: the `Ready=False` reason and its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The rule broken, as a condition reason.
    pub reason: &'static str,
    /// What was refused and how to fix it.
    pub message: String,
}

/// Image repositories the operator may run, set when it is installed. An entry ending in `/`
/// allows every repository under it (`ghcr.io/acme/`), any other entry exactly one repository
/// with any tag or digest (`vllm/vllm-openai`). Docker Hub short names are expanded as the
/// container runtime expands them, on both sides, so `vllm/` and `docker.io/vllm/` are one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImagePolicy {
    allowed: Vec<String>,
}

impl ImagePolicy {
    /// The policy of a comma-separated list (empty entries ignored; an empty list allows only
    /// the operator's own gateway repository). Errors name the malformed entry.
    pub fn parse(list: &str) -> Result<Self, String> {
        let mut allowed = Vec::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let normalized = match entry.strip_suffix('/') {
                Some(prefix) => repository_prefix(prefix).map(|p| format!("{p}/")),
                None => split_reference(entry)
                    .filter(|(_, tagged)| !tagged)
                    .map(|(name, _)| name),
            };
            match normalized {
                Some(normalized) => allowed.push(normalized),
                None => {
                    return Err(format!(
                        "{entry:?} is neither a repository (`registry/path/name`, no tag or \
                         digest) nor a prefix ending in `/`"
                    ));
                }
            }
        }
        Ok(Self { allowed })
    }

    /// The allowed entries as written in normalized form (for messages and logs).
    pub fn entries(&self) -> &[String] {
        &self.allowed
    }

    /// Whether `image` may run: a valid reference whose repository is the default gateway's
    /// or matches an entry.
    pub fn permits(&self, image: &str) -> bool {
        let Some((name, _)) = split_reference(image) else {
            return false;
        };
        let default = split_reference(DEFAULT_IMAGE).map(|(name, _)| name);
        default.as_deref() == Some(name.as_str())
            || self
                .allowed
                .iter()
                .any(|entry| match entry.strip_suffix('/') {
                    Some(_) => name.len() > entry.len() && name.starts_with(entry.as_str()),
                    None => name == *entry,
                })
    }

    /// `Ok` when `image` may run, else the refusal naming `field`.
    fn check(&self, image: &str, field: &str) -> Result<(), Refusal> {
        if self.permits(image) {
            return Ok(());
        }
        let allowed = if self.allowed.is_empty() {
            "none besides the operator's own gateway image".to_owned()
        } else {
            self.allowed.join(", ")
        };
        Err(Refusal {
            reason: "ImageNotAllowed",
            message: format!(
                "{field} {image:?} is not from a repository the operator may run (allowed: \
                 {allowed}); use an allowed image or ask the operator's installer to add its \
                 repository to ALLOWED_IMAGE_REPOSITORIES"
            ),
        })
    }
}

/// Whether `secret` consents to being read by model servers.
pub fn shared_with_model_servers(secret: &Secret) -> bool {
    secret
        .labels()
        .get(MODEL_SERVER_SECRET_LABEL.0)
        .map(String::as_str)
        == Some(MODEL_SERVER_SECRET_LABEL.1)
}

/// Whether the gateway may be built: its image (when set) is allowed.
pub fn check_gateway(gateway: &LlmGateway, images: &ImagePolicy) -> Result<(), Refusal> {
    match &gateway.spec.image {
        Some(image) => images.check(image, "spec.image"),
        None => Ok(()),
    }
}

/// Whether the model server `hosted` may be built: its image is allowed, its `env` reads no
/// Secret (the CRD refuses it too, but CRDs installed before that rule do not), and every
/// Secret of `secretEnv` exists and consents. `shared` maps the names of the existing
/// referenced Secrets to whether they consent ([`shared_with_model_servers`]).
pub fn check_self_hosted(
    hosted: &SelfHosted,
    images: &ImagePolicy,
    shared: &BTreeMap<String, bool>,
) -> Result<(), Refusal> {
    images.check(&hosted.image, "spec.selfHosted.image")?;
    let reads_secret = hosted.env.iter().position(|variable| {
        variable
            .value_from
            .as_ref()
            .is_some_and(|from| from.secret_key_ref.is_some())
    });
    if let Some(index) = reads_secret {
        return Err(Refusal {
            reason: "EnvSecretNotAllowed",
            message: format!(
                "spec.selfHosted.env[{index}] ({}) reads a Secret through \
                 valueFrom.secretKeyRef; name it in spec.selfHosted.secretEnv instead",
                hosted.env[index].name
            ),
        });
    }
    for variable in &hosted.secret_env {
        let secret = &variable.secret_key_ref.name;
        match shared.get(secret) {
            Some(true) => {}
            Some(false) => {
                return Err(Refusal {
                    reason: "SecretNotShared",
                    message: format!(
                        "Secret {secret} (spec.selfHosted.secretEnv {}) does not carry the label \
                         {}={}; whoever manages the Secret adds it to let model servers read it",
                        variable.name, MODEL_SERVER_SECRET_LABEL.0, MODEL_SERVER_SECRET_LABEL.1
                    ),
                });
            }
            None => {
                return Err(Refusal {
                    reason: "SecretNotFound",
                    message: format!(
                        "Secret {secret} (spec.selfHosted.secretEnv {}) does not exist",
                        variable.name
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The normalized repository of an image reference and whether it has a tag or digest, or
/// `None` when it is not a valid reference.
fn split_reference(image: &str) -> Option<(String, bool)> {
    let (rest, digest) = match image.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (image, None),
    };
    if let Some(digest) = digest {
        let (algorithm, hex) = digest.split_once(':')?;
        let algorithm_ok = !algorithm.is_empty()
            && algorithm
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        if !algorithm_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return None;
        }
    }
    let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last_slash..].find(':') {
        Some(colon) => rest.split_at(last_slash + colon),
        None => (rest, ""),
    };
    if let Some(tag) = tag.strip_prefix(':') {
        let valid = !tag.is_empty()
            && tag.len() <= 128
            && !tag.starts_with(['.', '-'])
            && tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !valid {
            return None;
        }
    }
    let normalized = normalize(name, false)?;
    Some((normalized, !tag.is_empty() || digest.is_some()))
}

/// A prefix entry's normalized form (`vllm` → `docker.io/vllm`, `ghcr.io` and `ghcr.io/acme`
/// unchanged).
fn repository_prefix(prefix: &str) -> Option<String> {
    normalize(prefix, true)
}

/// `name` with the registry the runtime would use: a first component with a `.` or `:`, or
/// `localhost`, is a registry (for a repository only when a path follows it; a `prefix` may
/// be a whole registry); otherwise it is Docker Hub, where a one-component repository lives
/// under `library/`. Every path component must be a valid one (lowercase letters and digits,
/// separated by `.`, `_` or `-`).
fn normalize(name: &str, prefix: bool) -> Option<String> {
    let components: Vec<&str> = name.split('/').collect();
    let first = components.first()?;
    let is_registry = (components.len() > 1 || prefix)
        && (first.contains('.') || first.contains(':') || *first == "localhost");
    let (registry, path) = if is_registry {
        let registry = first.to_ascii_lowercase();
        let valid = registry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-:".contains(c))
            && !registry.starts_with(['.', '-', ':']);
        if !valid {
            return None;
        }
        let registry = if registry == "index.docker.io" {
            "docker.io".to_owned()
        } else {
            registry
        };
        (registry, components[1..].to_vec())
    } else {
        ("docker.io".to_owned(), components)
    };
    if !path.iter().all(|c| valid_component(c)) {
        return None;
    }
    Some(match path.as_slice() {
        [] if prefix => registry,
        [] => return None,
        [single] if registry == "docker.io" && !prefix => format!("docker.io/library/{single}"),
        _ => format!("{registry}/{}", path.join("/")),
    })
}

fn valid_component(component: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    edge(component.chars().next())
        && edge(component.chars().last())
        && component
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

#[cfg(test)]
#[path = "pod_policy_tests.rs"]
mod tests;
