//! A stand-in for the kubelet: turns the Deployment the operator wrote into a running gateway
//! process, resolving exactly what a kubelet would (envFrom ConfigMaps, env from Secrets and
//! the downward API, projected volumes written to a directory), so a test proves the
//! operator's manifests are enough to run the gateway. Also checks a client's requests against
//! the Role it was given, as the API server's RBAC authorizer would.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, Secret, Volume};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role};
use kube::api::Api;
use test_apiserver::RequestRecord;

/// What a pod of the Deployment would run with.
pub struct PodSpec {
    /// The container's environment, after envFrom and valueFrom are resolved.
    pub env: BTreeMap<String, String>,
    /// The container's service account.
    pub service_account: String,
    /// Where the volumes were written (kept alive as long as the pod runs).
    pub volumes: tempfile::TempDir,
}

/// Resolves the first container of `deployment` in `namespace` as a kubelet would.
pub async fn resolve(client: &kube::Client, namespace: &str, deployment: &Deployment) -> PodSpec {
    let pod = deployment.spec.template.spec.clone().unwrap();
    let container: &Container = &pod.containers[0];
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut env = BTreeMap::new();
    for source in container.env_from.iter().flatten() {
        let name = &source.config_map_ref.as_ref().unwrap().name;
        env.extend(maps.get(name).await.unwrap().data.unwrap_or_default());
    }
    for variable in container.env.iter().flatten() {
        let value = match (&variable.value, &variable.value_from) {
            (Some(value), _) => value.clone(),
            (None, Some(from)) => match (&from.secret_key_ref, &from.field_ref) {
                (Some(reference), _) => {
                    let secret = secrets.get(&reference.name).await.unwrap();
                    let bytes = secret.data.unwrap()[&reference.key].0.clone();
                    String::from_utf8(bytes).unwrap()
                }
                (None, Some(field)) => {
                    assert_eq!(field.field_path, "metadata.name", "downward API field");
                    format!("{}-0", deployment.metadata.name.as_deref().unwrap())
                }
                other => panic!("unsupported valueFrom {other:?}"),
            },
            (None, None) => String::new(),
        };
        env.insert(variable.name.clone(), value);
    }
    let volumes = tempfile::tempdir().unwrap();
    for mount in container.volume_mounts.iter().flatten() {
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        // The test hands the process a kubeconfig instead of the service-account token.
        if is_token_volume(volume) {
            continue;
        }
        let dir = volumes.path().join(&mount.name);
        write_volume(&maps, &secrets, volume, &dir).await;
        // The process sees the mount at its host path.
        for value in env.values_mut() {
            if *value == mount.mount_path {
                *value = dir.display().to_string();
            }
        }
    }
    PodSpec {
        env,
        service_account: pod.service_account_name.unwrap_or_default(),
        volumes,
    }
}

/// Whether `volume` projects a service-account token (the explicit form of automounting).
fn is_token_volume(volume: &Volume) -> bool {
    volume
        .projected
        .iter()
        .flat_map(|p| p.sources.iter().flatten())
        .any(|source| source.service_account_token.is_some())
}

async fn write_volume(maps: &Api<ConfigMap>, secrets: &Api<Secret>, volume: &Volume, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let projected = volume
        .projected
        .as_ref()
        .expect("only projected volumes are used");
    for source in projected.sources.iter().flatten() {
        let files: BTreeMap<String, Vec<u8>> = if let Some(reference) = &source.config_map {
            let optional = reference.optional.unwrap_or(false);
            match maps.get_opt(&reference.name).await.unwrap() {
                Some(map) => map
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect(),
                None if optional => BTreeMap::new(),
                None => panic!(
                    "ConfigMap {} missing: the pod would not start",
                    reference.name
                ),
            }
        } else if let Some(reference) = &source.secret {
            let optional = reference.optional.unwrap_or(false);
            match secrets.get_opt(&reference.name).await.unwrap() {
                Some(secret) => secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect(),
                None if optional => BTreeMap::new(),
                None => panic!("Secret {} missing: the pod would not start", reference.name),
            }
        } else {
            panic!("unsupported projected source {source:?}");
        };
        for (name, content) in files {
            std::fs::write(dir.join(name), content).unwrap();
        }
    }
}

/// Whether `role` lets a request through, as RBAC would decide it: the verb derived from
/// method, path and query; `resourceNames` matched against the name in the path or a
/// `metadata.name` field selector.
pub fn permits(role: &Role, request: &RequestRecord) -> bool {
    let Some(attributes) = attributes(request) else {
        return false;
    };
    role.rules
        .iter()
        .flatten()
        .any(|rule| matches(rule, &attributes))
}

#[derive(Debug)]
struct Attributes {
    group: String,
    resource: String,
    verb: &'static str,
    name: Option<String>,
}

fn attributes(request: &RequestRecord) -> Option<Attributes> {
    let parts: Vec<&str> = request.path.trim_matches('/').split('/').collect();
    let rest = match parts.as_slice() {
        ["api", "v1", "namespaces", _, rest @ ..] => ("", rest),
        ["apis", group, _, "namespaces", _, rest @ ..] => (*group, rest),
        _ => return None,
    };
    let (group, rest) = rest;
    let query = |key: &str| {
        request.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.replace("%3D", "=").replace("%2C", ","))
        })
    };
    let watching = query("watch").is_some_and(|w| w == "true" || w == "1");
    let selected =
        query("fieldSelector").and_then(|s| s.strip_prefix("metadata.name=").map(str::to_owned));
    let (resource, name) = match rest {
        [resource] => (resource.to_string(), selected),
        [resource, name, ..] => (resource.to_string(), Some(name.to_string())),
        [] => return None,
    };
    let collection = rest.len() == 1;
    let verb = match (request.method.as_str(), collection, watching) {
        ("GET", true, true) => "watch",
        ("GET", true, false) => "list",
        ("GET", false, _) => "get",
        ("POST", ..) => "create",
        ("PATCH", ..) => "patch",
        ("PUT", ..) => "update",
        ("DELETE", ..) => "delete",
        _ => return None,
    };
    Some(Attributes {
        group: group.to_owned(),
        resource,
        verb,
        name,
    })
}

fn matches(rule: &PolicyRule, request: &Attributes) -> bool {
    let has = |list: &Option<Vec<String>>, value: &str| {
        list.iter().flatten().any(|v| v == value || v == "*")
    };
    has(&rule.api_groups, &request.group)
        && has(&rule.resources, &request.resource)
        && rule.verbs.iter().any(|v| v == request.verb || v == "*")
        && match &rule.resource_names {
            Some(names) if !names.is_empty() => {
                request.name.as_ref().is_some_and(|n| names.contains(n))
            }
            _ => true,
        }
}

/// Path of a kubeconfig for `server` as `user`.
pub fn kubeconfig_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
