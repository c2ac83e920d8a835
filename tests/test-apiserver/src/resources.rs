//! The kinds the server knows: built-ins, and custom resources registered by creating their
//! CustomResourceDefinition (as on a real cluster).

use serde_json::{Value, json};

/// One served resource type.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// The one served version.
    pub version: String,
    /// Kind, e.g. `Deployment`.
    pub kind: String,
    /// Plural, e.g. `deployments`.
    pub plural: String,
    /// Namespaced or cluster-scoped.
    pub namespaced: bool,
    /// Whether `/status` is a subresource (status writes only there).
    pub status_subresource: bool,
    /// Short names for discovery.
    pub short_names: Vec<String>,
    /// Singular name for discovery (the CRD's `names.singular`, else the lowercase kind).
    pub singular: String,
    /// Categories for discovery (`kubectl get <category>`): the CRD's `names.categories`;
    /// `all` for the built-ins a real server puts there.
    pub categories: Vec<String>,
    /// The structural schema of a custom resource (`openAPIV3Schema`).
    pub schema: Option<crate::schema::Schema>,
    /// The CRD's `additionalPrinterColumns`, for Table responses.
    pub printer_columns: Option<Value>,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Self {
            group: group.to_owned(),
            version: version.to_owned(),
            kind: kind.to_owned(),
            plural: plural.to_owned(),
            namespaced,
            status_subresource: matches!(
                kind,
                "Deployment"
                    | "HorizontalPodAutoscaler"
                    | "Namespace"
                    | "Service"
                    | "PodDisruptionBudget"
                    | "Ingress"
                    | "CustomResourceDefinition"
            ),
            short_names: builtin_short_names(plural)
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            singular: kind.to_lowercase(),
            categories: match plural {
                "deployments" | "services" | "horizontalpodautoscalers" => vec!["all".to_owned()],
                _ => Vec::new(),
            },
            schema: None,
            printer_columns: None,
        }
    }

    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The store's name for this type (version-independent).
    pub fn id(&self) -> String {
        format!("{}/{}", self.group, self.plural)
    }

    /// Its entry in an APIResourceList.
    pub fn discovery_entries(&self) -> Vec<Value> {
        let verbs = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let mut entry = json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            entry["shortNames"] = json!(self.short_names);
        }
        if !self.categories.is_empty() {
            entry["categories"] = json!(self.categories);
        }
        let mut entries = vec![entry];
        if self.status_subresource {
            entries.push(json!({
                "name": format!("{}/status", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "kind": self.kind,
                "verbs": ["get", "patch", "update"],
            }));
        }
        entries
    }

    /// The type a CustomResourceDefinition declares (its first served version).
    pub fn from_crd(crd: &Value) -> Option<Self> {
        let spec = crd.get("spec")?;
        let version = spec
            .get("versions")?
            .as_array()?
            .iter()
            .find(|v| v.get("served").and_then(Value::as_bool).unwrap_or(true))?;
        let names = spec.get("names")?;
        let kind = names.get("kind")?.as_str()?.to_owned();
        Some(Self {
            group: spec.get("group")?.as_str()?.to_owned(),
            version: version.get("name")?.as_str()?.to_owned(),
            singular: names
                .get("singular")
                .and_then(Value::as_str)
                .map_or_else(|| kind.to_lowercase(), str::to_owned),
            categories: strings(names.get("categories")),
            kind,
            plural: names.get("plural")?.as_str()?.to_owned(),
            namespaced: spec.get("scope").and_then(Value::as_str) != Some("Cluster"),
            status_subresource: version.pointer("/subresources/status").is_some(),
            short_names: strings(names.get("shortNames")),
            schema: version
                .pointer("/schema/openAPIV3Schema")
                .cloned()
                .map(crate::schema::Schema::new),
            printer_columns: version.get("additionalPrinterColumns").cloned(),
        })
    }
}

/// The strings of a JSON array (none when absent).
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn builtin_short_names(plural: &str) -> &'static [&'static str] {
    match plural {
        "namespaces" => &["ns"],
        "configmaps" => &["cm"],
        "services" => &["svc"],
        "serviceaccounts" => &["sa"],
        "events" => &["ev"],
        "deployments" => &["deploy"],
        "horizontalpodautoscalers" => &["hpa"],
        "poddisruptionbudgets" => &["pdb"],
        "ingresses" => &["ing"],
        "networkpolicies" => &["netpol"],
        "customresourcedefinitions" => &["crd", "crds"],
        _ => &[],
    }
}

/// The built-in kinds the gateway and the operator use.
pub fn builtins() -> Vec<ResourceType> {
    let b = ResourceType::builtin;
    vec![
        b("", "v1", "Namespace", "namespaces", false),
        b("", "v1", "Secret", "secrets", true),
        b("", "v1", "ConfigMap", "configmaps", true),
        b("", "v1", "Service", "services", true),
        b("", "v1", "ServiceAccount", "serviceaccounts", true),
        b("", "v1", "Event", "events", true),
        b("events.k8s.io", "v1", "Event", "events", true),
        b("apps", "v1", "Deployment", "deployments", true),
        b(
            "autoscaling",
            "v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            true,
        ),
        b(
            "policy",
            "v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            true,
        ),
        b("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
            true,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRole",
            "clusterroles",
            false,
        ),
        b(
            "rbac.authorization.k8s.io",
            "v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            false,
        ),
        b(
            "networking.k8s.io",
            "v1",
            "NetworkPolicy",
            "networkpolicies",
            true,
        ),
        b("networking.k8s.io", "v1", "Ingress", "ingresses", true),
        b("coordination.k8s.io", "v1", "Lease", "leases", true),
        b(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        ),
    ]
}
