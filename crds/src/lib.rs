pub mod duration;
pub use duration::Duration;
pub mod api_key;
pub mod compile;
pub mod compiled;
pub mod conditions;
pub mod egress;
pub mod keys;
pub mod llm_gateway;
pub mod llm_provider;
pub mod manifest;
pub mod policy;
pub mod refs;
pub mod route_policy;
pub mod self_hosted;
pub mod snapshot;
pub mod usage;

use kube::CustomResourceExt;

/// Every CRD as `(file name, YAML)`, in a stable order: the source of `crds/yaml/`.
pub fn crd_yaml_files() -> Vec<(String, String)> {
    [
        llm_provider::LlmProvider::crd(),
        route_policy::RoutePolicy::crd(),
        api_key::ApiKey::crd(),
        llm_gateway::LlmGateway::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = crd.metadata.name.clone().unwrap_or_default();
        // Serialising our own generated CRD types cannot fail.
        let yaml = serde_yaml::to_string(&crd).unwrap_or_else(|e| unreachable!("{e}"));
        (format!("{name}.yaml"), quote_yaml11_booleans(&yaml))
    })
    .collect()
}

/// Words YAML 1.1 parsers (Go's `sigs.k8s.io/yaml` behind kubectl, PyYAML) read as booleans.
const YAML11_BOOLEANS: [&str; 22] = [
    "y", "Y", "n", "N", "yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF", "true", "True", "TRUE", "false", "False", "FALSE",
];

/// Quotes mapping keys and list items that YAML 1.1 would read as booleans. serde_yaml writes
/// YAML 1.2, where `on:` is a string key; kubectl would turn the `on` property of
/// `RoutePolicy.spec.routes[].retry` into `true`.
fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 16);
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let (prefix, rest) = line.split_at(indent);
        let (marker, body) = match rest.strip_prefix("- ") {
            Some(item) => ("- ", item),
            None => ("", rest),
        };
        let (word, tail) = match body.split_once(':') {
            Some((key, tail)) if tail.is_empty() || tail.starts_with(' ') => (key, Some(tail)),
            _ => (body, None),
        };
        if YAML11_BOOLEANS.contains(&word) {
            out.push_str(prefix);
            out.push_str(marker);
            out.push('\'');
            out.push_str(word);
            out.push('\'');
            if let Some(tail) = tail {
                out.push(':');
                out.push_str(tail);
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod yaml11_tests {
    #[test]
    fn boolean_looking_keys_and_items_are_quoted() {
        let text = "a:\n  on:\n    type: array\n  off: 1\n  items:\n  - yes\n  - other\n";
        assert_eq!(
            super::quote_yaml11_booleans(text),
            "a:\n  'on':\n    type: array\n  'off': 1\n  items:\n  - 'yes'\n  - other\n"
        );
    }
}
