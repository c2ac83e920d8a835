//! The gateway pods' identity and permissions: a ServiceAccount, and a Role that reads only
//! what a gateway watches.

use k8s_openapi::api::core::v1::{
    ConfigMapProjection, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
    ObjectFieldSelector, ProjectedVolumeSource, ServiceAccount, ServiceAccountTokenProjection,
    Volume, VolumeProjection,
};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::gateway::Base;
use super::{Child, typed};

/// The API group of Roles and RoleBindings.
const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// The verbs of a watch.
const READ: [&str; 3] = ["get", "list", "watch"];

pub(super) fn service_account(base: &Base) -> Child {
    typed(&ServiceAccount {
        metadata: base.metadata(&base.name),
        ..ServiceAccount::default()
    })
}

/// Least privilege: read the watched kinds and the one credentials Secret (list and watch
/// are allowed on a named Secret when the request selects `metadata.name`), write Events.
pub(super) fn role(base: &Base, credentials: &str) -> Child {
    let kinds = [
        "llmproviders",
        "routepolicies",
        "apikeys",
        "llmgateways",
        "llmquotas",
    ];
    let credentials = PolicyRule {
        resource_names: Some(vec![credentials.to_owned()]),
        ..rule("", &["secrets"], &READ)
    };
    typed(&Role {
        metadata: base.metadata(&base.name),
        rules: Some(vec![
            rule("llmgateway.io", &kinds, &READ),
            credentials,
            rule("events.k8s.io", &["events"], &["create", "patch"]),
        ]),
    })
}

/// `verbs` on `resources` of the API group `group`.
fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let owned = |items: &[&str]| items.iter().map(|&i| i.to_owned()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_owned()]),
        resources: Some(owned(resources)),
        verbs: owned(verbs),
        ..PolicyRule::default()
    }
}

pub(super) fn role_binding(base: &Base) -> Child {
    typed(&RoleBinding {
        metadata: base.metadata(&base.name),
        role_ref: RoleRef {
            api_group: Some(RBAC_GROUP.to_owned()),
            kind: "Role".to_owned(),
            name: base.name.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: base.name.clone(),
            namespace: Some(base.namespace.clone()),
            ..Subject::default()
        }]),
    })
}

/// The `service-account` volume: what automounting would give the pod (a short-lived token of
/// its own account, the cluster CA and the namespace), mounted explicitly so that pods set
/// `automountServiceAccountToken: false` and only the gateway container gets a token.
pub(super) fn token_volume() -> Volume {
    let token = ServiceAccountTokenProjection {
        path: "token".to_owned(),
        expiration_seconds: Some(3607),
        ..ServiceAccountTokenProjection::default()
    };
    let ca = ConfigMapProjection {
        name: "kube-root-ca.crt".to_owned(),
        items: Some(vec![KeyToPath {
            key: "ca.crt".to_owned(),
            path: "ca.crt".to_owned(),
            ..KeyToPath::default()
        }]),
        ..ConfigMapProjection::default()
    };
    let namespace = DownwardAPIVolumeFile {
        path: "namespace".to_owned(),
        field_ref: Some(ObjectFieldSelector {
            api_version: Some("v1".to_owned()),
            field_path: "metadata.namespace".to_owned(),
        }),
        ..DownwardAPIVolumeFile::default()
    };
    let sources = vec![
        VolumeProjection {
            service_account_token: Some(token),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            config_map: Some(ca),
            ..VolumeProjection::default()
        },
        VolumeProjection {
            downward_api: Some(DownwardAPIProjection {
                items: Some(vec![namespace]),
            }),
            ..VolumeProjection::default()
        },
    ];
    Volume {
        name: "service-account".to_owned(),
        projected: Some(ProjectedVolumeSource {
            sources: Some(sources),
            ..ProjectedVolumeSource::default()
        }),
        ..Volume::default()
    }
}
