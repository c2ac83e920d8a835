//! Built-in kinds decoded through their k8s-openapi types, as the real API server decodes a
//! body into its Go structs: a value of the wrong type is a 400, and the keys the types do
//! not know are the unknown fields `fieldValidation` is about.
//!
//! k8s-openapi's deserializers skip unknown keys, so `serialize(deserialize(x))` lacks exactly
//! the keys `x` has that the type does not declare. Only *missing* keys count: the types
//! normalise values (timestamps, base64, int-or-string) and drop `null`s, neither of which is
//! an unknown field.

use k8s_openapi::api::{apps, autoscaling, coordination, core, events, networking, policy, rbac};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::fieldpath::{FieldPath, Segment};

/// Decodes `object` (a whole built-in object of `api_version`/`kind`, or an apply patch of
/// one) and returns the paths of the keys its type does not know; `None` for kinds without a
/// type here, `Err` (path and reason) when a value has the wrong type.
pub fn unknown_fields(
    api_version: &str,
    kind: &str,
    object: &Value,
) -> Option<Result<Vec<FieldPath>, String>> {
    let mut typed_input = object.clone();
    if let Some(map) = typed_input.as_object_mut() {
        map.insert("apiVersion".to_owned(), Value::from(api_version));
        map.insert("kind".to_owned(), Value::from(kind));
    }
    let decoded = round_trip_by_kind(api_version, kind, &typed_input)?;
    Some(decoded.map(|typed| {
        let mut found = Vec::new();
        diff(object, &typed, &mut FieldPath::default(), &mut found);
        found
    }))
}

/// The unknown keys of an object's `metadata` (custom resources: their schema leaves metadata
/// to ObjectMeta, as the API server does).
pub fn unknown_metadata_fields(metadata: &Value) -> Result<Vec<FieldPath>, String> {
    let typed = round_trip::<ObjectMeta>(metadata)?;
    let mut found = Vec::new();
    let mut path = FieldPath::default();
    path.push(Segment::Key("metadata".to_owned()));
    diff(metadata, &typed, &mut path, &mut found);
    Ok(found)
}

fn round_trip_by_kind(
    api_version: &str,
    kind: &str,
    object: &Value,
) -> Option<Result<Value, String>> {
    let decode: fn(&Value) -> Result<Value, String> = match (api_version, kind) {
        ("v1", "Namespace") => round_trip::<core::v1::Namespace>,
        ("v1", "Secret") => round_trip::<core::v1::Secret>,
        ("v1", "ConfigMap") => round_trip::<core::v1::ConfigMap>,
        ("v1", "Service") => round_trip::<core::v1::Service>,
        ("v1", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>,
        ("v1", "Event") => round_trip::<core::v1::Event>,
        ("events.k8s.io/v1", "Event") => round_trip::<events::v1::Event>,
        ("apps/v1", "Deployment") => round_trip::<apps::v1::Deployment>,
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            round_trip::<autoscaling::v2::HorizontalPodAutoscaler>
        }
        ("policy/v1", "PodDisruptionBudget") => round_trip::<policy::v1::PodDisruptionBudget>,
        ("rbac.authorization.k8s.io/v1", "Role") => round_trip::<rbac::v1::Role>,
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>,
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => round_trip::<rbac::v1::ClusterRole>,
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            round_trip::<rbac::v1::ClusterRoleBinding>
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => round_trip::<networking::v1::NetworkPolicy>,
        ("networking.k8s.io/v1", "Ingress") => round_trip::<networking::v1::Ingress>,
        ("coordination.k8s.io/v1", "Lease") => round_trip::<coordination::v1::Lease>,
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition") => {
            round_trip::<CustomResourceDefinition>
        }
        _ => return None,
    };
    Some(decode(object))
}

/// `serialize(deserialize(value))` through `T`; a decoding error names the field.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<Value, String> {
    let typed: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            e.inner().to_string()
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    serde_json::to_value(&typed).map_err(|e| e.to_string())
}

/// Collects the keys of `input` that `typed` lacks (a `null` is no field: the types drop it).
fn diff(input: &Value, typed: &Value, path: &mut FieldPath, found: &mut Vec<FieldPath>) {
    match (input, typed) {
        (Value::Object(given), Value::Object(kept)) => {
            for (key, value) in given {
                path.push(Segment::Key(key.clone()));
                match kept.get(key) {
                    Some(typed_value) => diff(value, typed_value, path, found),
                    None if value.is_null() => {}
                    None => found.push(path.clone()),
                }
                path.pop();
            }
        }
        (Value::Array(given), Value::Array(kept)) if given.len() == kept.len() => {
            for (i, (value, typed_value)) in given.iter().zip(kept).enumerate() {
                path.push(Segment::Index(i));
                diff(value, typed_value, path, found);
                path.pop();
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn paths(found: &[FieldPath]) -> Vec<String> {
        found.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn unknown_keys_are_found_at_any_depth_and_nulls_and_normalised_values_are_not() {
        let deployment = json!({"metadata": {"name": "d", "labels": {}, "bogus": 1},
            "spec": {"replicas": 1, "paused": null, "foo": {"x": 1},
                "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"creationTimestamp": null}, "spec": {"containers": [
                    {"name": "c", "ports": [{"containerPort": 80, "nme": "http"}],
                     "livenessProbe": {"httpGet": {"port": "http"}}}]}}}});
        let found = unknown_fields("apps/v1", "Deployment", &deployment)
            .unwrap()
            .unwrap();
        assert_eq!(
            paths(&found),
            [
                "metadata.bogus",
                "spec.foo",
                "spec.template.spec.containers[0].ports[0].nme"
            ]
        );
    }

    #[test]
    fn a_value_of_the_wrong_type_is_an_error_naming_the_field() {
        let service = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": "eighty"}]}});
        let error = unknown_fields("v1", "Service", &service)
            .unwrap()
            .unwrap_err();
        assert!(
            error.starts_with("spec.ports[0].port: invalid type"),
            "{error}"
        );
        assert!(unknown_fields("example.com/v1", "Widget", &service).is_none());
    }

    #[test]
    fn metadata_of_custom_resources_is_checked_against_object_meta() {
        let found = unknown_metadata_fields(&json!({"name": "x", "labelz": {"a": "b"}})).unwrap();
        assert_eq!(paths(&found), ["metadata.labelz"]);
    }
}
