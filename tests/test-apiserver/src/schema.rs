//! Custom resources against their CRD's structural schema, as the API server does on every
//! write: defaulting, validation (types, nullable, enum, required,
//! bounds, lengths, patterns, item counts, int-or-string, list-map key uniqueness), then the
//! CEL rules (`x-kubernetes-validations`, with `oldSelf` on updates) through kube's CEL support.
//!
//! Hand-written because Kubernetes' structural schemas are not plain JSON Schema: pruning,
//! defaulting, `nullable` and the `x-kubernetes-*` extensions have no general-purpose crate.

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// One violation.
#[derive(Debug, Clone, PartialEq)]
pub struct Cause {
    /// `FieldValueInvalid`, `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueTypeMismatch`.
    pub reason: &'static str,
    /// Dotted path, e.g. `spec.routes[0].model`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

/// A CRD version's `openAPIV3Schema` with its CEL rules compiled once, when the CRD is
/// registered: compiling them on every write made each write cost milliseconds.
#[derive(Clone, Debug)]
pub struct Schema {
    /// The schema (shared: resource types are cloned per request).
    pub json: std::sync::Arc<Value>,
    compiled: std::sync::Arc<kube::core::cel::CompiledSchema>,
}

impl Schema {
    /// Compiles `json`'s validation rules.
    pub fn new(json: Value) -> Self {
        let compiled = std::sync::Arc::new(kube::core::cel::compile_schema(&json));
        Self {
            json: std::sync::Arc::new(json),
            compiled,
        }
    }
}

impl PartialEq for Schema {
    fn eq(&self, other: &Self) -> bool {
        self.json == other.json
    }
}

/// Defaults and validates `object` (the whole custom resource, its unknown fields already
/// dropped by [`crate::unknown`]) against `schema` (the CRD version's `openAPIV3Schema`);
/// `old` is the live object on updates.
pub fn admit(
    schema: &Schema,
    object: &mut Value,
    old: Option<&Value>,
    kind: &str,
    name: &str,
) -> Result<(), ApiError> {
    let compiled = &schema.compiled;
    let schema: &Value = &schema.json;
    apply_defaults(schema, object);
    let mut causes = Vec::new();
    validate(schema, object, "", &mut causes);
    if causes.is_empty()
        && let Err(failures) = kube::core::cel::validate_compiled(compiled, object, old)
    {
        for failure in failures.iter() {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                field: failure.field_path.clone(),
                message: failure.message.clone(),
            });
        }
    }
    if causes.is_empty() {
        return Ok(());
    }
    Err(ApiError::invalid_causes(kind, name, &causes))
}

fn properties(schema: &Value) -> Option<&Map<String, Value>> {
    schema.get("properties").and_then(Value::as_object)
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Fills absent fields that have a `default`, then recurses into present objects and items.
pub fn apply_defaults(schema: &Value, value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = properties(schema) {
                for (key, sub) in props {
                    if !map.contains_key(key)
                        && let Some(default) = sub.get("default")
                    {
                        map.insert(key.clone(), default.clone());
                    }
                    if let Some(child) = map.get_mut(key) {
                        apply_defaults(sub, child);
                    }
                }
            } else if let Some(additional) =
                schema.get("additionalProperties").filter(|a| a.is_object())
            {
                for child in map.values_mut() {
                    apply_defaults(additional, child);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item_schema, item);
                }
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn push(causes: &mut Vec<Cause>, reason: &'static str, field: &str, message: String) {
    causes.push(Cause {
        reason,
        field: field.to_owned(),
        message,
    });
}

/// Validates `value` at `path` against `schema`.
pub fn validate(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    if value.is_null() {
        if !flag(schema, "nullable") && schema.get("type").is_some() {
            push(
                causes,
                "FieldValueTypeMismatch",
                path,
                "Invalid value: null: must not be null".into(),
            );
        }
        return;
    }
    if !type_matches(schema, value) {
        let expected = schema
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("int-or-string");
        push(
            causes,
            "FieldValueTypeMismatch",
            path,
            format!("Invalid value: {value}: must be of type {expected}"),
        );
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(ToString::to_string).collect();
        push(
            causes,
            "FieldValueNotSupported",
            path,
            format!(
                "Unsupported value: {value}: supported values: {}",
                list.join(", ")
            ),
        );
    }
    check_bounds(schema, value, path, causes);
    match value {
        Value::Object(map) => {
            for required in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(key) = required.as_str()
                    && !map.contains_key(key)
                {
                    push(
                        causes,
                        "FieldValueRequired",
                        &join(path, key),
                        "Required value".into(),
                    );
                }
            }
            let props = properties(schema);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            for (key, child) in map {
                if path.is_empty() && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(sub) = props.and_then(|p| p.get(key)).or(additional) {
                    validate(sub, child, &join(path, key), causes);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(item_schema, item, &format!("{path}[{i}]"), causes);
                }
            }
            check_list_map(schema, items, path, causes);
        }
        _ => {}
    }
}

fn type_matches(schema: &Value, value: &Value) -> bool {
    if flag(schema, "x-kubernetes-int-or-string") {
        return value.is_i64() || value.is_u64() || value.is_string();
    }
    match schema.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some(_) => false,
    }
}

fn check_bounds(schema: &Value, value: &Value, path: &str, causes: &mut Vec<Cause>) {
    let number = |k: &str| schema.get(k).and_then(Value::as_f64);
    if let Some(n) = value.as_f64() {
        let exclusive_min = flag(schema, "exclusiveMinimum");
        let exclusive_max = flag(schema, "exclusiveMaximum");
        if let Some(min) = number("minimum")
            && (n < min || (exclusive_min && n == min))
        {
            push(
                causes,
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {value}: must be greater than{} {min}",
                    if exclusive_min { "" } else { " or equal to" }
                ),
            );
        }
        if let Some(max) = number("maximum")
            && (n > max || (exclusive_max && n == max))
        {
            push(
                causes,
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {value}: must be less than{} {max}",
                    if exclusive_max { "" } else { " or equal to" }
                ),
            );
        }
    }
    let count = |k: &str| schema.get(k).and_then(Value::as_u64);
    if let Some(text) = value.as_str() {
        let length = text.chars().count() as u64;
        if count("minLength").is_some_and(|min| length < min) {
            push(
                causes,
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {value}: should be at least {} chars long",
                    count("minLength").unwrap_or(0)
                ),
            );
        }
        if count("maxLength").is_some_and(|max| length > max) {
            push(
                causes,
                "FieldValueTooLong",
                path,
                format!(
                    "Too long: may not be more than {} bytes",
                    count("maxLength").unwrap_or(0)
                ),
            );
        }
        if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
            match cached_regex(pattern) {
                Some(re) if !re.is_match(text) => push(
                    causes,
                    "FieldValueInvalid",
                    path,
                    format!("Invalid value: {value}: should match '{pattern}'"),
                ),
                _ => {}
            }
        }
    }
    if let Some(items) = value.as_array() {
        let length = items.len() as u64;
        if count("minItems").is_some_and(|min| length < min) {
            push(
                causes,
                "FieldValueInvalid",
                path,
                format!(
                    "Invalid value: {length}: should have at least {} items",
                    count("minItems").unwrap_or(0)
                ),
            );
        }
        if count("maxItems").is_some_and(|max| length > max) {
            push(
                causes,
                "FieldValueTooMany",
                path,
                format!(
                    "Too many: {length}: must have at most {} items",
                    count("maxItems").unwrap_or(0)
                ),
            );
        }
    }
}

fn check_list_map(schema: &Value, items: &[Value], path: &str, causes: &mut Vec<Cause>) {
    if schema.get("x-kubernetes-list-type").and_then(Value::as_str) != Some("map") {
        return;
    }
    let keys: Vec<&str> = schema
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let mut seen = HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let id: Vec<String> = keys
            .iter()
            .map(|k| item.get(*k).map(ToString::to_string).unwrap_or_default())
            .collect();
        if !seen.insert(id.clone()) {
            push(
                causes,
                "FieldValueDuplicate",
                &format!("{path}[{i}]"),
                format!("Duplicate value: {}", json!(id)),
            );
        }
    }
}

/// `pattern` compiled once per process (compiling on every write dominated write costs).
fn cached_regex(pattern: &str) -> Option<regex::Regex> {
    static CACHE: std::sync::LazyLock<
        std::sync::Mutex<std::collections::HashMap<String, Option<regex::Regex>>>,
    > = std::sync::LazyLock::new(Default::default);
    let mut cache = CACHE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    cache
        .entry(pattern.to_owned())
        .or_insert_with(|| regex::Regex::new(pattern).ok())
        .clone()
}
