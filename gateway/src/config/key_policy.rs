//! What a served configuration may not do outside dev mode (`--dev`): accept an API key that
//! is published in this repository (the README's example key would let anyone who reads it
//! spend the organisation's provider credentials), or hold keys while `API_KEY_PEPPER` is empty
//! (key hashes then cost an attacker with a copy of the configuration nothing to test).
//! ApiKeys naming a ServiceAccount hold no key, so they need no pepper.

use llm_gateway_crds::compiled::KeyCredential;

use crate::config::snapshot::Snapshot;

/// Every API key published in this repository (README, `deployments/standalone`); a test
/// scans the repository and fails if one is missing here.
pub const PUBLISHED_KEYS: &[&str] = &["sk-lgw-FVhWQ4B4CqW7rzjvrynADkxHnoZbo2h13re3aK"];

/// Why `snapshot` must not be served (outside dev mode), or `None`.
pub fn refusal(snapshot: &Snapshot, pepper: &[u8]) -> Option<String> {
    let hashed = |key: &&llm_gateway_crds::compiled::CompiledKey| {
        matches!(key.credential, KeyCredential::Hash(_))
    };
    if snapshot.keys.iter().any(|k| hashed(&k)) && pepper.is_empty() {
        return Some(
            "API_KEY_PEPPER is empty while API keys are configured: set it to a long random \
             secret (e.g. `openssl rand -hex 32`), or pass --dev to try the gateway locally"
                .to_owned(),
        );
    }
    PUBLISHED_KEYS
        .iter()
        .find_map(|key| snapshot.authenticate(key, pepper).ok())
        .map(|key| {
            format!(
                "the ApiKey {} holds a key published in the llm-gateway repository (the \
                 README's example key): anyone could use it. Create your own with \
                 `llm-gateway keygen`, or pass --dev to try the example configuration locally",
                key.name
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Text files of the repository that may quote keys (generated and vendored trees skipped).
    fn repository_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || name == "node_modules" {
                continue;
            }
            if path.is_dir() {
                repository_files(&path, out);
            } else {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_key_published_in_the_repository_is_listed() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = Vec::new();
        repository_files(&root, &mut files);
        let prefix = llm_gateway_crds::keys::KEY_PREFIX;
        let mut found = std::collections::BTreeSet::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(&file) else {
                continue;
            };
            for (at, _) in text.match_indices(prefix) {
                let candidate: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                if llm_gateway_crds::keys::check_format(&candidate).is_ok() {
                    found.insert(candidate);
                }
            }
        }
        assert!(!found.is_empty(), "the README's example key was not found");
        for key in found {
            assert!(
                PUBLISHED_KEYS.contains(&key.as_str()),
                "{key} is not in PUBLISHED_KEYS"
            );
        }
    }
}
