//! Unknown fields of a write: keys a custom resource's structural schema does not declare
//! (`x-kubernetes-preserve-unknown-fields` subtrees exempt; metadata checked against
//! ObjectMeta), and keys a built-in kind's type does not know (see [`crate::typed`]). They
//! are always dropped from what is stored; [`WriteRequest::settle`] decides whether the write
//! fails, warns or says nothing.

use serde_json::Value;

use crate::fieldpath::{FieldPath, Segment};
use crate::request::WriteRequest;
use crate::resources::ResourceType;
use crate::status::ApiError;

/// Finds, drops and reports the unknown fields of `object` (a whole object, or an apply
/// patch). Fields already present in `old` (the live object) are dropped but not reported:
/// the writer did not send them (they are left from an older schema).
pub fn check(
    rtype: &ResourceType,
    object: &mut Value,
    old: Option<&Value>,
    request: &mut WriteRequest,
) -> Result<(), ApiError> {
    let unknown =
        find(rtype, object).map_err(|reason| request.decode_error(rtype, object, &reason))?;
    let reported: Vec<String> = unknown
        .iter()
        .filter(|path| old.is_none_or(|old| path.get(old).is_none()))
        .map(ToString::to_string)
        .collect();
    request.settle(rtype, object, &reported)?;
    for path in &unknown {
        path.remove(object);
    }
    Ok(())
}

/// The unknown field paths of `object`, or why it does not decode.
fn find(rtype: &ResourceType, object: &Value) -> Result<Vec<FieldPath>, String> {
    match &rtype.schema {
        Some(schema) => {
            let mut found = Vec::new();
            walk(
                &schema.json,
                object,
                &mut FieldPath::default(),
                true,
                &mut found,
            );
            if let Some(metadata) = object.get("metadata").filter(|m| m.is_object()) {
                found.extend(crate::typed::unknown_metadata_fields(metadata)?);
            }
            Ok(found)
        }
        None => crate::typed::unknown_fields(&rtype.api_version(), &rtype.kind, object)
            .unwrap_or_else(|| Ok(Vec::new())),
    }
}

fn flag(schema: &Value, name: &str) -> bool {
    schema.get(name).and_then(Value::as_bool).unwrap_or(false)
}

/// Structural pruning, reporting instead of removing: an object's keys outside `properties`
/// (or, without `properties`, all of them unless `additionalProperties` describes them), at
/// any depth. The root and embedded resources keep `apiVersion`, `kind` and `metadata`.
fn walk(
    schema: &Value,
    value: &Value,
    path: &mut FieldPath,
    root: bool,
    found: &mut Vec<FieldPath>,
) {
    if flag(schema, "x-kubernetes-preserve-unknown-fields") {
        return;
    }
    match value {
        Value::Object(map) => {
            let embedded = root || flag(schema, "x-kubernetes-embedded-resource");
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            for (key, child) in map {
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                path.push(Segment::Key(key.clone()));
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(sub), _) => walk(sub, child, path, false, found),
                    (None, Some(sub)) if sub.is_object() && properties.is_none() => {
                        walk(sub, child, path, false, found);
                    }
                    (None, Some(Value::Bool(true))) if properties.is_none() => {}
                    _ => found.push(path.clone()),
                }
                path.pop();
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    path.push(Segment::Index(i));
                    walk(item_schema, item, path, false, found);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn unknown(schema: &Value, object: &Value) -> Vec<String> {
        let mut found = Vec::new();
        walk(schema, object, &mut FieldPath::default(), true, &mut found);
        let mut paths: Vec<String> = found.iter().map(ToString::to_string).collect();
        paths.sort();
        paths
    }

    #[test]
    fn undeclared_keys_are_unknown_except_where_unknown_fields_are_preserved() {
        let schema = json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "a": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"x": {}}}},
            "list": {"type": "array", "items": {"type": "object", "properties": {"n": {}}}},
            "bare": {"type": "object"}}}}});
        let object = json!({"apiVersion": "v", "kind": "K", "metadata": {"name": "n"}, "top": 1,
            "spec": {"a": "x", "foo": 1, "free": {"anything": {"deep": 1}},
                "map": {"k": {"x": 1, "y": 2}}, "list": [{"n": 1}, {"n": 2, "m": 3}],
                "bare": {"gone": true}}});
        assert_eq!(
            unknown(&schema, &object),
            [
                "spec.bare.gone",
                "spec.foo",
                "spec.list[1].m",
                "spec.map.k.y",
                "top"
            ]
        );
    }
}
