//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated on every object the way the
//! API server would, so standalone mode rejects what a cluster would reject.

use kube::core::cel::{compile_schema, validate_compiled};
use kube::{CustomResourceExt, Resource};
use serde::Serialize;

use super::{ConfigError, object_id};

/// Checks `objects` of one kind against that kind's CEL rules (compiled once per call).
pub(super) fn check<K>(objects: &[K], errors: &mut Vec<ConfigError>)
where
    K: CustomResourceExt + Resource<DynamicType = ()> + Serialize,
{
    if objects.is_empty() {
        return;
    }
    let crd = K::crd();
    let schema = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok());
    let Some(schema) = schema else { return };
    let compiled = compile_schema(&schema);
    let kind = kind_name::<K>();
    for object in objects {
        let Ok(value) = serde_json::to_value(object) else {
            continue;
        };
        if let Err(failures) = validate_compiled(&compiled, &value, None) {
            for failure in failures.iter() {
                errors.push(ConfigError {
                    kind,
                    object: object_id(object),
                    field: failure.field_path.clone(),
                    message: failure.message.clone(),
                });
            }
        }
    }
}

fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "LlmProvider" => "LlmProvider",
        "RoutePolicy" => "RoutePolicy",
        "ApiKey" => "ApiKey",
        "LlmGateway" => "LlmGateway",
        _ => "object",
    }
}
