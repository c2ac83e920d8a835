pub mod duration;
pub use duration::Duration;
pub mod api_key;
pub mod catalogue;
pub mod compile;
pub mod compiled;
pub mod conditions;
pub mod egress;
pub mod exposure;
pub mod gateway_pod;
pub mod grants;
pub mod keys;
pub mod llm_gateway;
pub mod llm_provider;
pub mod manifest;
pub mod policy;
pub mod pricing;
pub mod quota;
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
        quota::LlmQuota::crd(),
    ]
    .into_iter()
    .map(|crd| {
        let name = crd.metadata.name.clone().unwrap_or_default();
        // Serialising our own generated CRD types cannot fail.
        let mut crd = serde_json::to_value(&crd).unwrap_or_else(|e| unreachable!("{e}"));
        kubernetes_formats(&mut crd);
        let yaml = serde_yaml::to_string(&crd).unwrap_or_else(|e| unreachable!("{e}"));
        (format!("{name}.yaml"), quote_yaml11_booleans(&yaml))
    })
    .collect()
}

/// Words YAML 1.1 parsers (Go's `sigs.k8s.io/yaml` behind kubectl, PyYAML) read as booleans.
/// Rewrites the integer formats schemars derives for unsigned types (`uint32`, `uint64`) to
/// the ones Kubernetes knows (`int32`, `int64`; the schema's `minimum: 0` keeps them
/// unsigned): an API server warns about every unknown format on each CRD write.
fn kubernetes_formats(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(format) = map.get_mut("format") {
                match format.as_str() {
                    Some("uint32" | "uint16" | "uint8") => *format = "int32".into(),
                    Some("uint64" | "uint") => *format = "int64".into(),
                    _ => {}
                }
            }
            map.values_mut().for_each(kubernetes_formats);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(kubernetes_formats),
        _ => {}
    }
}

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

#[cfg(test)]
mod format_tests {
    /// The formats a Kubernetes API server knows (apiextensions' supported list); any other
    /// draws a warning on every CRD write.
    const KNOWN: [&str; 22] = [
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "binary",
        "date",
        "date-time",
        "datetime",
        "password",
        "duration",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "bsonobjectid",
    ];

    #[test]
    fn every_schema_format_is_one_kubernetes_knows() {
        for (file, yaml) in super::crd_yaml_files() {
            for line in yaml.lines() {
                if let Some(format) = line.trim().strip_prefix("format: ") {
                    assert!(KNOWN.contains(&format), "{file}: format {format}");
                }
            }
        }
    }
}
