//! How an LlmGateway's pods stop (`spec.shutdown`), browser access to them (`spec.cors`), which
//! environment variables the operator keeps for itself (`spec.env` may not set them) and which
//! pod annotations are refused.
//!
//! A rollout or a node drain sends SIGTERM to a pod while it may be relaying streams that last
//! minutes (a provider's `timeouts.total` defaults to 5 minutes). The pod turns unready at once,
//! keeps its listener open for `delay` so endpoints and load balancers stop sending it
//! connections, then gives in-flight requests `drainTimeout` to finish; the kubelet's
//! `terminationGracePeriodSeconds` is derived from both so it never kills the pod mid-drain.

use schemars::Schema;
use serde::{Deserialize, Serialize};

use crate::Duration;

/// The default `shutdown.drainTimeout`: the default provider `timeouts.total`, so a stream that
/// started just before SIGTERM is not cut by a rollout.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(300);

/// The default `shutdown.delay`: enough for kube-proxy and most ingress controllers to drop an
/// unready endpoint.
pub const DEFAULT_SHUTDOWN_DELAY: Duration = Duration::from_secs(10);

/// Cross-origin access for browser clients (the gateway's `CORS_*` settings). Preflights are
/// answered without authentication; the requests themselves still need a key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!self.allowCredentials || !('*' in self.allowedOrigins)").message("cors.allowCredentials cannot be used with the origin '*': browsers refuse credentials for a wildcard origin"))]
pub struct Cors {
    /// Origins allowed to call the API (`https://app.example.com`: scheme, host, optional
    /// port), or `*` for any.
    #[schemars(
        length(min = 1, max = 100),
        inner(regex(pattern = r"^(\*|https?://[^/\s?#]+)$"), length(max = 253))
    )]
    pub allowed_origins: Vec<String>,
    /// Let browsers send credentials (cookies); API keys travel in headers, so this is rarely
    /// needed.
    #[serde(default)]
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer (default `10m`).
    #[serde(default = "Cors::default_max_age")]
    pub max_age: Duration,
}

impl Cors {
    fn default_max_age() -> Duration {
        Duration::from_secs(600)
    }
}

/// How a gateway pod shuts down. The pod's `terminationGracePeriodSeconds` is `delay` +
/// `drainTimeout` + 20 s (5 s for cut streams to close, 10 s for their usage to reach Redis,
/// 5 s of margin), in whole seconds rounded up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.delay) <= duration('5m')").message("shutdown.delay may be at most 5m"))]
#[x_kube(validation = Rule::new("duration(self.drainTimeout) <= duration('1h')").message("shutdown.drainTimeout may be at most 1h"))]
pub struct Shutdown {
    /// Time between SIGTERM (the pod turns unready at once) and the listener closing, so
    /// endpoints, kube-proxy and load balancers outside the cluster stop sending new
    /// connections first. Raise it behind a load balancer that deregisters slowly.
    #[serde(default = "Shutdown::default_delay")]
    pub delay: Duration,
    /// How long requests and streams in flight may finish once the listener is closed; a stream
    /// still running then is ended with an error event telling the client to retry. Default
    /// `5m`, the default provider `timeouts.total`: raise it with longer provider timeouts.
    #[serde(default = "Shutdown::default_drain")]
    pub drain_timeout: Duration,
}

impl Shutdown {
    fn default_delay() -> Duration {
        DEFAULT_SHUTDOWN_DELAY
    }
    fn default_drain() -> Duration {
        DEFAULT_DRAIN_TIMEOUT
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            delay: DEFAULT_SHUTDOWN_DELAY,
            drain_timeout: DEFAULT_DRAIN_TIMEOUT,
        }
    }
}

/// Where and how the gateway pods export their traces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, kube::KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Telemetry {
    /// The collector's OTLP endpoint, e.g. `http://otel-collector.observability:4317` (gRPC)
    /// or `http://otel-collector.observability:4318` (HTTP/protobuf).
    #[schemars(
        regex(pattern = r"^https?://[^\s/?#@]+(/[^\s]*)?$"),
        length(max = 2048)
    )]
    pub otlp_endpoint: String,
    /// The OTLP transport.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Share of requests traced, 0 to 1 (default 1), for requests whose client sent no
    /// sampling decision; a client's sampled `traceparent` is always followed.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub sampling_ratio: Option<f64>,
    /// Puts prompts and completions of every route on the spans (a RoutePolicy's
    /// `captureContent` does it for its routes only). Off by default: whoever reads the
    /// traces then reads the conversations.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub capture_content: bool,
    /// A Secret entry holding headers for the collector, `key=value` pairs separated by commas
    /// (`authorization=Bearer …`, `x-honeycomb-team=…`), sent with every export; read by the
    /// kubelet into the pods' `OTEL_EXPORTER_OTLP_HEADERS`, never written to the settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers_secret_ref: Option<crate::refs::SecretKeyRef>,
}

/// An OTLP transport.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum OtlpProtocol {
    /// OTLP over gRPC (port 4317 by convention).
    #[default]
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

impl Telemetry {
    /// The `OTEL_*` variables that configure the gateway's exporter, for a gateway `name` in
    /// `namespace`.
    pub fn env(&self, namespace: &str, name: &str) -> Vec<(&'static str, String)> {
        let protocol = match self.protocol {
            OtlpProtocol::Grpc => "grpc",
            OtlpProtocol::HttpProtobuf => "http/protobuf",
        };
        let ratio = self.sampling_ratio.unwrap_or(1.0).clamp(0.0, 1.0);
        let mut env = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.otlp_endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol.to_owned()),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio".to_owned()),
            ("OTEL_TRACES_SAMPLER_ARG", ratio.to_string()),
            ("OTEL_SERVICE_NAME", "llm-gateway".to_owned()),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("k8s.namespace.name={namespace},llmgateway.io/gateway={name}"),
            ),
        ];
        if self.capture_content {
            let capture = (
                "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
                "true".into(),
            );
            env.push(capture);
        }
        env
    }
}

/// Usage events: one JSON record per finished model request (`docs/usage-events.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UsageEvents {
    /// Where the records go.
    pub output: UsageEventsOutput,
}

/// Where usage events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum UsageEventsOutput {
    /// The gateway containers' standard output (logs go to standard error), collected with
    /// the container logs by the cluster's log agent.
    Stdout,
}

impl UsageEvents {
    /// The variable that turns them on.
    pub fn env(&self) -> (&'static str, String) {
        match self.output {
            UsageEventsOutput::Stdout => ("USAGE_EVENTS_PATH", "-".to_owned()),
        }
    }
}

/// Environment variables `spec.env` may not set: those the operator sets from other spec
/// fields (an `env` entry would silently override them), and those that would switch the
/// gateway out of operator mode or around its authentication (`CONFIG_DIR`, `DEV_MODE`,
/// `HOST`, the standalone `JWT_*` settings; use `spec.auth.jwt`; `CORS_*`: use `spec.cors`;
/// the exporter's `OTEL_*`: use `spec.telemetry`).
pub const RESERVED_ENV: [&str; 43] = [
    "WATCH_NAMESPACE",
    "GATEWAY_NAME",
    "PORT",
    "HOST",
    "ADMIN_ADDRESS",
    "LOG_LEVEL",
    "LOG_FORMAT",
    "SHUTDOWN_DELAY",
    "DRAIN_TIMEOUT",
    "CREDENTIALS_SECRET",
    "LAST_KNOWN_GOOD_DIR",
    "GATEWAY_REPLICAS",
    "REDIS_URL",
    "REDIS_ON_UNAVAILABLE",
    "RATE_LIMIT_STORAGE",
    "POD_NAME",
    "API_KEY_PEPPER",
    "CONFIG_DIR",
    "DEV_MODE",
    "JWT_SECRET_KEY",
    "JWT_JWKS_URL",
    "JWT_ISSUER",
    "JWT_AUDIENCES",
    "JWT_TEAM_CLAIM",
    "JWT_ALLOW_LOCAL_ADDRESSES",
    "CORS_ALLOWED_ORIGINS",
    "CORS_ALLOW_CREDENTIALS",
    "CORS_MAX_AGE",
    "REDIS_CLUSTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "USAGE_EVENTS_PATH",
    "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
];

/// Environment variables `spec.env` may not set because they move the gateway's egress: the
/// forward proxies the HTTP client honours and the trusted certificate authorities. The
/// gateway's server-side request forgery guard resolves proxy hosts unfiltered, trusting them
/// as chosen by whoever runs the gateway, so an LlmGateway author could otherwise send every
/// upstream request, provider keys included, to any address inside the cluster (or, with
/// `NO_PROXY` and a CA of their own, intercept it unseen).
pub const RESERVED_EGRESS_ENV: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// What starts a Kubernetes variable reference in an env `value`. The kubelet expands
/// `$(NAME)` from the variables defined before it in the container, and the operator's own
/// come first, some read from Secrets (`API_KEY_PEPPER`, `REDIS_URL`): `value:
/// "$(API_KEY_PEPPER)"` would copy a Secret into a variable of the author's choosing. `spec.env`
/// values may therefore not contain it at all (`$$(` escapes included, for simplicity).
pub const VARIABLE_REFERENCE: &str = "$(";

/// Longest `spec.env[].value`: bounds the estimated cost of the CEL rule searching values for
/// [`VARIABLE_REFERENCE`] (an unbounded string counts as 3 MiB, over the API server's budget).
pub const MAX_ENV_VALUE_LENGTH: u64 = 32768;

/// Pod annotation prefix of the (deprecated, still honoured) per-container AppArmor profile.
pub const APPARMOR_ANNOTATION_PREFIX: &str = "container.apparmor.security.beta.kubernetes.io/";

/// Labels of the gateway's pods that `spec.podLabels` may not set: the Deployment's selector
/// and the operator's managed-by label.
pub const RESERVED_POD_LABELS: [&str; 3] = [
    "app.kubernetes.io/name",
    "llmgateway.io/gateway",
    "app.kubernetes.io/managed-by",
];

/// The CEL rule refusing reserved names in `spec.env` (checked on the list, whose `maxItems`
/// keeps the rule's estimated cost within the API server's budget; `in` on a constant list
/// costs its length, whatever the name's).
pub fn env_rule() -> String {
    format!(
        "self.all(e, !(e.name in [{}]))",
        quoted(RESERVED_ENV.as_slice())
    )
}

/// The CEL rule refusing the proxy and certificate authority variables in `spec.env`.
pub fn egress_env_rule() -> String {
    format!(
        "self.all(e, !(e.name in [{}]))",
        quoted(RESERVED_EGRESS_ENV.as_slice())
    )
}

/// The CEL rule refusing variable references in `spec.env` values (`contains` costs a tenth of
/// the value's `maxLength`, times `maxItems`: about 210,000, well inside the budget).
pub fn env_reference_rule() -> String {
    format!("self.all(e, !has(e.value) || !e.value.contains('{VARIABLE_REFERENCE}'))")
}

/// The CEL rule refusing an unconfined AppArmor profile in `spec.podAnnotations`
/// (`startsWith` costs its argument's length, the comparison the constant's).
pub fn pod_annotations_rule() -> String {
    format!("self.all(k, !k.startsWith('{APPARMOR_ANNOTATION_PREFIX}') || self[k] != 'unconfined')")
}

/// Schema transform of `spec.env`: bounds each `value` at [`MAX_ENV_VALUE_LENGTH`] (the
/// Kubernetes schema leaves it unbounded).
pub fn bound_env_values(schema: &mut Schema) {
    if let Some(value) = schema
        .get_mut("items")
        .and_then(|items| items.get_mut("properties"))
        .and_then(|properties| properties.get_mut("value"))
        .and_then(serde_json::Value::as_object_mut)
    {
        value.insert("maxLength".to_owned(), MAX_ENV_VALUE_LENGTH.into());
    }
}

/// The CEL rule refusing reserved keys in `spec.podLabels` (map lookups: constant cost).
pub fn pod_labels_rule() -> String {
    RESERVED_POD_LABELS
        .iter()
        .map(|key| format!("!('{key}' in self)"))
        .collect::<Vec<_>>()
        .join(" && ")
}

fn quoted(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `spec.env` may set the variable `name`.
pub fn env_allowed(name: &str) -> bool {
    !RESERVED_ENV.contains(&name) && !RESERVED_EGRESS_ENV.contains(&name)
}

/// Whether a `spec.env` value is free of variable references (an absent value is).
pub fn env_value_allowed(value: Option<&str>) -> bool {
    value.is_none_or(|v| !v.contains(VARIABLE_REFERENCE))
}

/// Whether `spec.podAnnotations` may set `key` to `value`.
pub fn pod_annotation_allowed(key: &str, value: &str) -> bool {
    !(key.starts_with(APPARMOR_ANNOTATION_PREFIX) && value == "unconfined")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_every_reserved_entry() {
        let env = env_rule();
        assert!(RESERVED_ENV.iter().all(|n| env.contains(&format!("'{n}'"))));
        assert!(pod_labels_rule().starts_with("!('app.kubernetes.io/name' in self) && "));
        assert!(!env_allowed("API_KEY_PEPPER"));
        assert!(env_allowed("MAX_REQUEST_BODY_BYTES"));
        let egress = egress_env_rule();
        assert!(
            RESERVED_EGRESS_ENV
                .iter()
                .all(|n| egress.contains(&format!("'{n}'")) && !env_allowed(n))
        );
        assert!(!env_allowed("https_proxy") && !env_allowed("SSL_CERT_DIR"));
        // Environment names are case-sensitive and nothing reads a mixed-case proxy variable.
        assert!(env_allowed("Https_Proxy"));
    }

    #[test]
    fn values_may_not_reference_other_variables() {
        assert!(env_value_allowed(None));
        assert!(env_value_allowed(Some("60s")));
        assert!(env_value_allowed(Some("$HOME and (parentheses)")));
        assert!(!env_value_allowed(Some("$(API_KEY_PEPPER)")));
        assert!(!env_value_allowed(Some("redis://x@$(REDIS_URL)")));
        assert!(!env_value_allowed(Some("$$(ESCAPED)")));
        assert!(env_reference_rule().contains("contains('$(')"));
    }

    #[test]
    fn pods_may_not_run_unconfined() {
        let key = "container.apparmor.security.beta.kubernetes.io/gateway";
        assert!(!pod_annotation_allowed(key, "unconfined"));
        assert!(pod_annotation_allowed(key, "runtime/default"));
        assert!(pod_annotation_allowed("mesh/inject", "unconfined"));
    }

    #[test]
    fn defaults_outlast_the_default_provider_timeout() {
        let shutdown: Shutdown = serde_json::from_str("{}").expect("defaults");
        assert_eq!(shutdown, Shutdown::default());
        assert_eq!(shutdown.drain_timeout.to_string(), "5m");
        assert_eq!(shutdown.delay.to_string(), "10s");
    }
}
