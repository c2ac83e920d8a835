//! `LlmGateway`: one data-plane instance (a Deployment of gateway pods and its Service).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, EnvVar, LocalObjectReference, ResourceRequirements, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::exposure::Exposure;
use crate::gateway_pod::{Cors, Shutdown};
use crate::policy::{Budget, RateLimits};
use crate::refs::SecretKeyRef;

/// Horizontal autoscaling of gateway pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.minReplicas <= self.maxReplicas").message("autoscaling.minReplicas must not exceed maxReplicas"))]
pub struct Autoscaling {
    /// Fewest pods.
    #[serde(default = "Autoscaling::default_min")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    /// Most pods.
    #[serde(default = "Autoscaling::default_max")]
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU utilisation the autoscaler aims for.
    #[serde(default = "Autoscaling::default_cpu")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization_percentage: i32,
    /// Average memory utilisation the autoscaler aims for.
    #[serde(default = "Autoscaling::default_memory")]
    #[schemars(range(min = 1, max = 100))]
    pub target_memory_utilization_percentage: i32,
    /// Also scale on requests in flight per pod (the gateway's `llm_requests_in_flight`
    /// gauge), read through the custom metrics API: needs an adapter such as
    /// prometheus-adapter serving it (see docs/operator.md). LLM requests are long and mostly
    /// waiting, so CPU alone under-reacts to a surge of streams.
    #[schemars(range(min = 1, max = 100000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_in_flight_requests_per_pod: Option<i32>,
}

impl Autoscaling {
    fn default_min() -> i32 {
        3
    }
    fn default_max() -> i32 {
        10
    }
    fn default_cpu() -> i32 {
        70
    }
    fn default_memory() -> i32 {
        80
    }
}

/// What the gateway does when Redis cannot be reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum OnUnavailable {
    /// Keep serving with per-pod limits.
    #[default]
    FailOpen,
    /// Refuse requests that need a limit check.
    FailClosed,
}

/// Redis connection for limits shared across replicas.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Redis {
    /// Secret key holding the Redis URL (`redis://...`); for a cluster, seed nodes separated
    /// by commas.
    pub url_secret_ref: SecretKeyRef,
    /// Behaviour while Redis is unreachable.
    #[serde(default)]
    pub on_unavailable: OnUnavailable,
    /// The URL is a Redis Cluster (or Valkey in cluster mode, the default of many managed
    /// offerings): each caller's, quota's and route's keys live in one hash slot and each
    /// admission runs one script per slot, all or nothing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cluster: bool,
}

/// The CEL condition under which `jwksUri` may be local (the field is absent from objects
/// written before it existed, so `has` guards it).
const JWT_ALLOWS_LOCAL: &str = "(has(self.allowLocalAddresses) && self.allowLocalAddresses)";

/// JSON Web Token verification.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.jwksUri) != has(self.hs256SecretRef)").message("set exactly one of jwt.jwksUri or jwt.hs256SecretRef"))]
#[x_kube(validation = Rule::new(crate::egress::cel::shape_rule("jwksUri", true)).message("spec.auth.jwt.jwksUri must be https://host[:port][/path][?query]: an ASCII host name or IP address, with no user:password@ or fragment (#)"))]
#[x_kube(validation = Rule::new(crate::egress::cel::local_rule("jwksUri", JWT_ALLOWS_LOCAL)).message("spec.auth.jwt.jwksUri points at a loopback, link-local or metadata address, or a private network; set spec.auth.jwt.allowLocalAddresses to allow it"))]
#[x_kube(validation = Rule::new(crate::egress::cel::unusual_ip_rule("jwksUri", JWT_ALLOWS_LOCAL)).message("spec.auth.jwt.jwksUri writes an IP address in a form admission cannot check (a numeric or shortened IPv4, or an IPv6 NAT64, 6to4 or Teredo address); write the dotted IPv4 address, or set spec.auth.jwt.allowLocalAddresses"))]
pub struct Jwt {
    /// Required `iss` claim.
    #[schemars(length(min = 1))]
    pub issuer: String,
    /// Accepted `aud` values (at least one must match).
    #[schemars(length(min = 1))]
    pub audiences: Vec<String>,
    /// JWKS endpoint for RS256/ES256 keys.
    #[schemars(regex(pattern = r"^https://"))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Allow `jwksUri` to reach loopback, private (RFC 1918, CGNAT, unique-local), link-local
    /// or cloud metadata addresses, written literally or resolved from its host name at
    /// connect time (refused by default to prevent server-side request forgery). Needed for an
    /// identity provider inside the cluster.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_local_addresses: bool,
    /// Secret key holding the HS256 shared secret.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hs256_secret_ref: Option<SecretKeyRef>,
    /// Claim naming the caller's team, used like an ApiKey's owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team_claim: Option<String>,
    /// Route models token holders may call, as globs. Empty allows all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub models: Vec<String>,
    /// Limits for each token subject, like an ApiKey's `limits`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limits: Option<RateLimits>,
    /// Spend cap for each token subject, like an ApiKey's `budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<Budget>,
}

/// Kubernetes ServiceAccount callers: a workload's projected token, verified offline against
/// the cluster's service-account issuer and mapped to the ApiKey naming its ServiceAccount.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.jwksUri) || has(self.issuer)").message("spec.auth.serviceAccounts.jwksUri needs spec.auth.serviceAccounts.issuer"))]
#[x_kube(validation = Rule::new(crate::egress::cel::shape_rule("jwksUri", true)).message("spec.auth.serviceAccounts.jwksUri must be https://host[:port][/path][?query]: an ASCII host name or IP address, with no user:password@ or fragment (#)"))]
#[x_kube(validation = Rule::new(crate::egress::cel::local_rule("jwksUri", JWT_ALLOWS_LOCAL)).message("spec.auth.serviceAccounts.jwksUri points at a loopback, link-local or metadata address, or a private network; set spec.auth.serviceAccounts.allowLocalAddresses to allow it"))]
pub struct ServiceAccounts {
    /// Accepted `aud` values: the audience the workloads' `serviceAccountToken` volumes ask
    /// for. A token minted for the API server (or anything else) is refused.
    #[serde(default = "ServiceAccounts::default_audiences")]
    #[schemars(length(min = 1))]
    pub audiences: Vec<String>,
    /// The cluster's service-account issuer (the tokens' `iss`). Unset: read from the API
    /// server's OIDC discovery document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The issuer's JWKS, for a gateway that cannot reach the API server. Unset: read from
    /// the API server (`/openid/v1/jwks`) with the gateway's own credentials.
    #[schemars(regex(pattern = r"^https://"))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Allow `jwksUri` to reach loopback, private, link-local or metadata addresses.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_local_addresses: bool,
    /// Longest lifetime (`exp` − `iat`) a token may have been minted with. A longer one
    /// (minted by hand with `kubectl create token --duration`, say) would outlive the rights
    /// of whoever minted it, so it is refused.
    #[serde(default = "ServiceAccounts::default_max_token_lifetime")]
    pub max_token_lifetime: crate::duration::Duration,
}

impl ServiceAccounts {
    /// The audience the documentation's manifests use.
    pub const DEFAULT_AUDIENCE: &str = "llm-gateway";

    fn default_max_token_lifetime() -> crate::duration::Duration {
        crate::duration::Duration::from_secs(24 * 3600)
    }

    fn default_audiences() -> Vec<String> {
        vec![Self::DEFAULT_AUDIENCE.to_owned()]
    }
}

/// How callers authenticate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Auth {
    /// Accept keys from ApiKey resources.
    #[serde(default = "Auth::default_api_keys")]
    pub api_keys: bool,
    /// Accept JSON Web Tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// Accept the projected tokens of the ServiceAccounts ApiKeys name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_accounts: Option<ServiceAccounts>,
}

impl Auth {
    fn default_api_keys() -> bool {
        true
    }
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            api_keys: true,
            jwt: None,
            service_accounts: None,
        }
    }
}

/// Kind of Service in front of the gateway pods.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ServiceType {
    /// Reachable inside the cluster only.
    #[default]
    ClusterIP,
    /// Exposed on every node's port.
    NodePort,
    /// Exposed through a cloud load balancer.
    LoadBalancer,
}

/// The Service in front of the gateway pods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GatewayService {
    /// Service type.
    #[serde(default, rename = "type")]
    pub service_type: ServiceType,
    /// Service port (forwarded to the pods' port 8000).
    #[serde(default = "GatewayService::default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

impl GatewayService {
    fn default_port() -> i32 {
        80
    }
}

/// Log verbosity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Everything, including per-chunk detail.
    Trace,
    /// Diagnostic detail.
    Debug,
    /// Normal operation.
    #[default]
    Info,
    /// Problems only.
    Warn,
    /// Failures only.
    Error,
}

// The printer columns read `status` only: under autoscaling `spec.replicas` says nothing
// about the pods running. The `scale` subresource (`kubectl scale llmgw`) sets
// `spec.replicas`, which only applies while `autoscaling` is unset; `status.selector` is the
// pods' label selector, so an autoscaler (a VPA, or an HPA instead of `spec.autoscaling`, whose
// HPA targets the Deployment) can target the LlmGateway itself.
/// A data-plane instance: gateway pods, their Service, autoscaler and disruption budget.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "llmgateway.io",
    version = "v1alpha1",
    kind = "LlmGateway",
    doc = "A data-plane instance: gateway pods, Service, autoscaler and disruption budget.",
    plural = "llmgateways",
    shortname = "llmgw",
    category = "llm",
    namespaced,
    status = "LlmGatewayStatus",
    scale(
        spec_replicas_path = ".spec.replicas",
        status_replicas_path = ".status.readyReplicas",
        label_selector_path = ".status.selector"
    ),
    printcolumn = r#"{"name":"Ready Replicas","type":"integer","jsonPath":".status.readyReplicas"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LlmGatewaySpec {
    /// Pods to run when autoscaling is off.
    #[serde(default = "LlmGatewaySpec::default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,
    /// Horizontal autoscaling; replaces `replicas` when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Gateway container image; defaults to the operator's own version. Its pods hold every
    /// provider key of the namespace, so it must come from a repository the operator was
    /// installed to allow (`ALLOWED_IMAGE_REPOSITORIES`; the operator's own gateway repository
    /// always is): otherwise the gateway is `Ready=False` (`ImageNotAllowed`) and not built.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 512))]
    pub image: Option<String>,
    /// CPU and memory for each pod (default requests 250m/512Mi, limits 500m/1Gi).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Redis for limits shared across replicas; without it limits are per pod.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<Redis>,
    /// How callers authenticate.
    #[serde(default)]
    pub auth: Auth,
    /// The Service in front of the pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<GatewayService>,
    /// Log verbosity of the gateway pods.
    #[serde(default)]
    pub log_level: LogLevel,
    /// How pods stop: the listener delay and the drain of requests in flight, from which the
    /// pods' `terminationGracePeriodSeconds` is derived.
    #[serde(default)]
    pub shutdown: Shutdown,
    /// Reaching the gateway from outside the cluster: an Ingress and/or an HTTPRoute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exposure: Option<Exposure>,
    /// Cross-origin access for browser clients (CORS); off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// OpenTelemetry traces of the gateway's requests, exported over OTLP; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry: Option<crate::gateway_pod::Telemetry>,
    /// Usage events, one JSON record per finished model request; off when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage_events: Option<crate::gateway_pod::UsageEvents>,
    /// Nodes the pods may run on (their labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub node_selector: BTreeMap<String, String>,
    /// Taints the pods tolerate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    pub tolerations: Vec<Toleration>,
    /// Node and pod affinity of the pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Affinity>,
    /// How pods spread over the cluster. Unset: across zones (`topology.kubernetes.io/zone`)
    /// and nodes (`kubernetes.io/hostname`), `maxSkew` 1, `whenUnsatisfiable: ScheduleAnyway`,
    /// selecting the gateway's pods; `[]` turns spreading off. Give each constraint a
    /// `labelSelector` (e.g. `llmgateway.io/gateway: <name>`), or it counts no pods. Keyed, as
    /// in a pod, by `topologyKey` and `whenUnsatisfiable`: a pair may appear once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["topologyKey".into(), "whenUnsatisfiable".into()]))]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    /// Secrets for pulling the gateway image from a private registry, each named once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    pub image_pull_secrets: Vec<LocalObjectReference>,
    /// PriorityClass of the pods (e.g. to keep the gateway scheduled under pressure).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"),
        length(max = 253)
    )]
    pub priority_class_name: Option<String>,
    /// Further annotations of the pods (e.g. for a service mesh or log collector); not an
    /// `unconfined` AppArmor profile (`container.apparmor.security.beta.kubernetes.io/*`),
    /// which would lift the confinement the restricted Pod Security profile keeps.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(crate::gateway_pod::pod_annotations_rule()).message("podAnnotations may not set an unconfined AppArmor profile (container.apparmor.security.beta.kubernetes.io/CONTAINER set to unconfined)"))]
    pub pod_annotations: BTreeMap<String, String>,
    /// Further labels of the pods; not `app.kubernetes.io/name`, `llmgateway.io/gateway` or
    /// `app.kubernetes.io/managed-by`, which select them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    #[x_kube(validation = Rule::new(crate::gateway_pod::pod_labels_rule()).message("podLabels may not set app.kubernetes.io/name, llmgateway.io/gateway or app.kubernetes.io/managed-by: they select the gateway's pods"))]
    pub pod_labels: BTreeMap<String, String>,
    /// Annotations of the gateway's Service (e.g. for a cloud load balancer).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub service_annotations: BTreeMap<String, String>,
    /// Further environment variables of the gateway container, e.g. `MAX_REQUEST_BODY_BYTES`
    /// or `WRITE_TIMEOUT`, each named once. Not the variables the operator sets from other
    /// fields or that would leave operator mode (WATCH_NAMESPACE, GATEWAY_NAME, PORT, HOST,
    /// ADMIN_ADDRESS, LOG_LEVEL, LOG_FORMAT, SHUTDOWN_DELAY, DRAIN_TIMEOUT, CREDENTIALS_SECRET,
    /// LAST_KNOWN_GOOD_DIR, GATEWAY_REPLICAS, REDIS_URL, REDIS_ON_UNAVAILABLE,
    /// RATE_LIMIT_STORAGE, POD_NAME, API_KEY_PEPPER, CONFIG_DIR, DEV_MODE, JWT_*), not the
    /// proxy and certificate authority variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY
    /// and their lower-case forms, SSL_CERT_FILE, SSL_CERT_DIR), no Secrets
    /// (`valueFrom.secretKeyRef`: the settings that need one have their own fields), and no
    /// `$(` in a `value`: Kubernetes expands `$(NAME)` from the variables before it, which
    /// include the operator's Secret-backed ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), transform = crate::gateway_pod::bound_env_values)]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["name".into()]))]
    #[x_kube(validation = Rule::new(crate::gateway_pod::env_rule()).message("env may not set a variable the operator sets or that leaves operator mode (see the field's description); use the matching spec field"))]
    #[x_kube(validation = Rule::new(crate::gateway_pod::egress_env_rule()).message("env may not set the proxy or certificate authority variables (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY, their lower-case forms, SSL_CERT_FILE, SSL_CERT_DIR): the gateway trusts its proxies as chosen by whoever runs it"))]
    #[x_kube(validation = Rule::new("self.all(e, !has(e.valueFrom) || !has(e.valueFrom.secretKeyRef))").message("env may not read Secrets (valueFrom.secretKeyRef): the settings that need one have their own fields (redis.urlSecretRef, auth.jwt.hs256SecretRef)"))]
    #[x_kube(validation = Rule::new(crate::gateway_pod::env_reference_rule()).message("env values may not contain '$(': Kubernetes would expand $(NAME) from the variables before it, among them the operator's Secret-backed ones"))]
    pub env: Vec<EnvVar>,
}

impl LlmGatewaySpec {
    fn default_replicas() -> i32 {
        3
    }
}

/// Observed state of an LlmGateway.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LlmGatewayStatus {
    /// The `metadata.generation` this status describes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Gateway pods ready to serve.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// In-cluster URL of the gateway Service.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Label selector of the gateway pods (the scale subresource's, so an autoscaler can
    /// target the LlmGateway itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub selector: Option<String>,
    /// Ready says whether the gateway's children exist and pods are serving, or why the
    /// operator refused to build them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::conditions::conditions_schema")]
    pub conditions: Vec<Condition>,
}

#[cfg(test)]
mod tests {
    use kube::CustomResourceExt;
    use serde_json::{Value, json};

    use super::LlmGateway;
    use crate::gateway_pod::MAX_ENV_VALUE_LENGTH;

    fn spec_schema() -> Value {
        let crd = serde_json::to_value(LlmGateway::crd()).expect("CRD");
        crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .clone()
    }

    /// The lists a pod keys by a field are keyed the same way here, so the API server refuses
    /// a repeated key at admission (server-side apply of the Deployment would fail on it). A
    /// list-map key must be required in the items.
    #[test]
    fn pod_lists_are_keyed_like_the_pod_s() {
        let spec = spec_schema();
        for (field, keys) in [
            ("env", json!(["name"])),
            ("imagePullSecrets", json!(["name"])),
            (
                "topologySpreadConstraints",
                json!(["topologyKey", "whenUnsatisfiable"]),
            ),
        ] {
            let list = &spec[field];
            assert_eq!(list["x-kubernetes-list-type"], "map", "{field}");
            assert_eq!(list["x-kubernetes-list-map-keys"], keys, "{field}");
            let required = list["items"]["required"].as_array().expect(field);
            for key in keys.as_array().expect("keys") {
                assert!(required.contains(key), "{field}: {key} must be required");
            }
        }
        assert_eq!(spec["tolerations"]["x-kubernetes-list-type"], "atomic");
    }

    /// The API server refuses a CRD whose rule's estimated cost (times the cardinality of
    /// where it runs) exceeds 10,000,000, and counts an unbounded string as 3 MiB. The `$(`
    /// rule's `contains` costs a tenth of the value's length per entry.
    #[test]
    fn the_env_reference_rule_is_cheap() {
        let env = &spec_schema()["env"];
        let max_length = env["items"]["properties"]["value"]["maxLength"]
            .as_u64()
            .expect("env[].value is bounded");
        assert_eq!(max_length, MAX_ENV_VALUE_LENGTH);
        let entries = env["maxItems"].as_u64().expect("env is bounded");
        let estimate = entries * (max_length.div_ceil(10) + 10);
        assert!(estimate < 1_000_000, "{estimate}");
        let unbounded = entries * (3 * 1024 * 1024_u64).div_ceil(10);
        assert!(
            unbounded > 10_000_000,
            "without maxLength the CRD would be refused"
        );
    }
}
