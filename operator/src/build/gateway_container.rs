//! The gateway's container: its image, ports, probes on `/health` and `/ready`, the default
//! resources of the original deployment guide, a read-only non-root root filesystem, and its
//! environment (the settings ConfigMap, the operator's variables, then `spec.env`).

use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, Container, EnvFromSource, EnvVar, EnvVarSource, ObjectFieldSelector,
    ResourceRequirements, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use llm_gateway_crds::gateway_pod::{env_allowed, env_value_allowed};
use llm_gateway_crds::llm_gateway::LlmGateway;
use llm_gateway_crds::snapshot::PEPPER_ENTRY;

use super::bundle;
use super::gateway::{
    ADMIN_PORT, Base, CONTAINER_PORT, DEFAULT_IMAGE, LAST_KNOWN_GOOD_DIR, SERVICE_ACCOUNT_DIR,
};
use super::gateway_pod::unique_by;
use super::workload::{self, HTTP};

pub(super) fn container(gateway: &LlmGateway, base: &Base) -> Container {
    let spec = &gateway.spec;
    let read_only = |name: &str, path: &str| k8s_openapi::api::core::v1::VolumeMount {
        read_only: Some(true),
        ..workload::mount(name, path)
    };
    let probe = |path: &str| workload::http_probe(path, 5, 2, 3);
    Container {
        name: "gateway".to_owned(),
        image: Some(
            spec.image
                .clone()
                .unwrap_or_else(|| DEFAULT_IMAGE.to_owned()),
        ),
        ports: Some(vec![
            workload::port(HTTP, CONTAINER_PORT),
            workload::port("admin", ADMIN_PORT),
        ]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource {
                name: format!("{}-settings", base.name),
                ..ConfigMapEnvSource::default()
            }),
            ..EnvFromSource::default()
        }]),
        env: Some(env(gateway)),
        resources: Some(spec.resources.clone().unwrap_or_else(default_resources)),
        volume_mounts: Some(vec![
            read_only("last-known-good", LAST_KNOWN_GOOD_DIR),
            read_only("service-account", SERVICE_ACCOUNT_DIR),
        ]),
        liveness_probe: Some(probe("/health")),
        readiness_probe: Some(probe("/ready")),
        security_context: Some(SecurityContext {
            read_only_root_filesystem: Some(true),
            ..workload::restricted_container()
        }),
        ..Container::default()
    }
}

/// The original deployment guide's requests (250m, 512Mi) and limits (500m, 1Gi).
fn default_resources() -> ResourceRequirements {
    let amounts = |cpu: &str, memory: &str| {
        Some(
            [("cpu", cpu), ("memory", memory)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), Quantity(v.to_owned())))
                .collect(),
        )
    };
    ResourceRequirements {
        requests: amounts("250m", "512Mi"),
        limits: amounts("500m", "1Gi"),
        ..ResourceRequirements::default()
    }
}

/// The operator's variables, then `spec.env`. Admission refuses reserved names (the
/// operator's, the proxies and CA files), Secret references and `$(` variable references in
/// `spec.env`; they are dropped here too, so an object written past admission (or a cluster
/// without CEL) cannot override the operator's settings, redirect its egress or read a Secret,
/// directly or through the expansion of an operator variable. A name given twice (refused at
/// admission since `env` is keyed by name) keeps its last definition, the one the kubelet
/// would use, and an empty `value` (the default) is left out.
fn env(gateway: &LlmGateway) -> Vec<EnvVar> {
    let spec = &gateway.spec;
    let mut env = vec![];
    if let Some(redis) = &spec.redis {
        let url = &redis.url_secret_ref;
        env.push(workload::secret_env("REDIS_URL", &url.name, &url.key));
    }
    if let Some(headers) = spec
        .telemetry
        .as_ref()
        .and_then(|t| t.headers_secret_ref.as_ref())
    {
        let name = "OTEL_EXPORTER_OTLP_HEADERS";
        env.push(workload::secret_env(name, &headers.name, &headers.key));
    }
    env.push(EnvVar {
        name: "POD_NAME".to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: "metadata.name".to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    });
    let credentials = bundle::credentials_name(gateway);
    env.push(workload::secret_env(
        "API_KEY_PEPPER",
        &credentials,
        PEPPER_ENTRY,
    ));
    let reads_secret = |v: &EnvVar| {
        v.value_from
            .as_ref()
            .is_some_and(|f| f.secret_key_ref.is_some())
    };
    let allowed: Vec<_> = spec
        .env
        .iter()
        .filter(|v| {
            env_allowed(&v.name) && !reads_secret(v) && env_value_allowed(v.value.as_deref())
        })
        .rev()
        .collect();
    let mut extra = unique_by(allowed, |v| v.name.clone());
    extra.reverse();
    env.extend(extra.into_iter().map(|v| EnvVar {
        value: v.value.clone().filter(|value| !value.is_empty()),
        ..v.clone()
    }));
    env
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::build::gateway::tests::pod;

    #[test]
    fn extra_env_follows_the_operator_s_and_never_replaces_it() {
        let template = pod(json!({"env": [
            {"name": "WRITE_TIMEOUT", "value": "60s"},
            {"name": "API_KEY_PEPPER", "value": "forged"},
            {"name": "LEAK", "valueFrom": {"secretKeyRef": {"name": "other", "key": "k"}}},
        ]}));
        let env = template["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .clone();
        let names: Vec<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(names, ["POD_NAME", "API_KEY_PEPPER", "WRITE_TIMEOUT"]);
        assert!(env[1]["valueFrom"]["secretKeyRef"].is_object());
    }

    #[test]
    fn extra_env_cannot_expand_the_operator_s_secrets_or_move_egress() {
        let template = pod(json!({
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}},
            "env": [
                {"name": "LEAK", "value": "$(API_KEY_PEPPER)"},
                {"name": "LEAK_REDIS", "value": "x-$(REDIS_URL)"},
                {"name": "HTTPS_PROXY", "value": "http://collector.internal:3128"},
                {"name": "http_proxy", "value": "http://collector.internal:3128"},
                {"name": "ALL_PROXY", "value": "socks5://collector.internal"},
                {"name": "NO_PROXY", "value": "*"},
                {"name": "SSL_CERT_FILE", "value": "/tmp/ca.pem"},
                {"name": "SSL_CERT_DIR", "value": "/tmp"},
                {"name": "WRITE_TIMEOUT", "value": "30s"},
                {"name": "WRITE_TIMEOUT", "value": "60s"},
            ],
        }));
        let env = template["spec"]["containers"][0]["env"]
            .as_array()
            .expect("env")
            .clone();
        let names: Vec<&str> = env.iter().filter_map(|v| v["name"].as_str()).collect();
        assert_eq!(
            names,
            ["REDIS_URL", "POD_NAME", "API_KEY_PEPPER", "WRITE_TIMEOUT"]
        );
        // A name given twice keeps its last definition, as the kubelet would.
        assert_eq!(env[3]["value"], "60s");
    }
}
