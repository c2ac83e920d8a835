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
/// rules took longer than checking thousands of objects, and every reload paid it. `None`
/// for a kind without rules, and for ApiKey: its one rule (exactly one of `secretName` and
/// `serviceAccountRef`) is checked in Rust by `compile/keys.rs`, because walking 10,000 keys
/// through CEL was a fifth of a reload's time in the benchmark.
fn compiled<K: CustomResourceExt>(kind: &'static str) -> Option<Arc<CompiledSchema>> {
    if kind == "ApiKey" {
        return None;
    }
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
            has_rules(&schema).then(|| Arc::new(compile_schema(&schema)))
        })
        .clone()
}

/// Whether a schema (or any schema below it) carries `x-kubernetes-validations`.
fn has_rules(schema: &serde_json::Value) -> bool {
    match schema {
        serde_json::Value::Object(map) => {
            map.contains_key("x-kubernetes-validations") || map.values().any(has_rules)
        }
        serde_json::Value::Array(items) => items.iter().any(has_rules),
        _ => false,
    }
}

pub(super) fn kind_name<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "LlmProvider" => "LlmProvider",
        "RoutePolicy" => "RoutePolicy",
        "ApiKey" => "ApiKey",
        "LlmGateway" => "LlmGateway",
        "LlmQuota" => "LlmQuota",
        _ => "object",
    }
}

/// Whether the kind's CEL rules are walked here (not ApiKey's: see [`compiled`]).
pub(super) fn has_rules_for<K>() -> bool
where
    K: CustomResourceExt + Resource<DynamicType = ()>,
{
    compiled::<K>(kind_name::<K>()).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_kinds_with_rules_are_walked() {
        assert!(compiled::<crate::api_key::ApiKey>("ApiKey").is_none());
        assert!(compiled::<crate::llm_provider::LlmProvider>("LlmProvider").is_some());
        assert!(compiled::<crate::route_policy::RoutePolicy>("RoutePolicy").is_some());
        assert!(compiled::<crate::llm_gateway::LlmGateway>("LlmGateway").is_some());
        assert_eq!(kind_name::<crate::quota::LlmQuota>(), "LlmQuota");
    }
}
