//! The CRDs' CEL rules (`x-kubernetes-validations`), evaluated on every object the way the
//! API server would, so standalone mode rejects what a cluster would reject.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use kube::core::cel::{CompiledSchema, compile_schema, validate_compiled};
use kube::{CustomResourceExt, Resource};
use serde::Serialize;

use super::{ConfigError, object_id};

/// Checks `objects` of one kind against that kind's CEL rules.
pub(super) fn check<K>(objects: &[K], errors: &mut Vec<ConfigError>)
where
    K: CustomResourceExt + Resource<DynamicType = ()> + Serialize,
{
    if objects.is_empty() {
        return;
    }
    let kind = kind_name::<K>();
    let Some(compiled) = compiled::<K>(kind) else {
        return;
    };
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

/// The kind's rules, compiled once per process: generating the CRD schema and compiling its
/// rules took longer than checking thousands of objects, and every reload paid it.
fn compiled<K: CustomResourceExt>(kind: &'static str) -> Option<Arc<CompiledSchema>> {
    type Cache = Mutex<HashMap<&'static str, Option<Arc<CompiledSchema>>>>;
    static CACHE: LazyLock<Cache> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    cache
        .entry(kind)
        .or_insert_with(|| {
            let crd = K::crd();
            let schema = crd.spec.versions[0]
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.as_ref())
                .and_then(|s| serde_json::to_value(s).ok())?;
            Some(Arc::new(compile_schema(&schema)))
        })
        .clone()
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
