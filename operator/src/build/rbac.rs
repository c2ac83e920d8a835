//! The gateway pods' identity and permissions: a ServiceAccount, and a Role that reads only
//! what a gateway watches.

use serde_json::{Value, json};

use super::gateway::Base;
use super::{Child, child, resource};

pub(super) fn service_account(base: &Base) -> Child {
    child(
        resource("", "v1", "ServiceAccount", "serviceaccounts"),
        json!({"metadata": base.metadata(&base.name)}),
    )
}

/// Least privilege: read the watched kinds and the one credentials Secret (list and watch
/// are allowed on a named Secret when the request selects `metadata.name`), write Events.
pub(super) fn role(base: &Base, credentials: &str) -> Child {
    child(
        resource("rbac.authorization.k8s.io", "v1", "Role", "roles"),
        json!({
            "metadata": base.metadata(&base.name),
            "rules": [
                {"apiGroups": ["llmgateway.io"], "resources": ["llmproviders", "routepolicies", "apikeys", "llmgateways"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [credentials], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
            ],
        }),
    )
}

pub(super) fn role_binding(base: &Base) -> Child {
    child(
        resource(
            "rbac.authorization.k8s.io",
            "v1",
            "RoleBinding",
            "rolebindings",
        ),
        json!({
            "metadata": base.metadata(&base.name),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": base.name},
            "subjects": [{"kind": "ServiceAccount", "name": base.name, "namespace": base.namespace}],
        }),
    )
}

/// The `service-account` volume: what automounting would give the pod (a short-lived token of
/// its own account, the cluster CA and the namespace), mounted explicitly so that pods set
/// `automountServiceAccountToken: false` and only the gateway container gets a token.
pub(super) fn token_volume() -> Value {
    json!({"name": "service-account", "projected": {"sources": [
        {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}
