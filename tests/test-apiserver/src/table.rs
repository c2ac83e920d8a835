//! `Accept: application/json;as=Table;v=v1;g=meta.k8s.io` (what `kubectl get` asks for):
//! objects rendered as a `meta.k8s.io/v1` Table with a Name column, the CRD's
//! `additionalPrinterColumns` (simple JSONPath: dotted fields and `[?(@.field=="value")]`
//! filters), and Age.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// Whether the client asked for a Table.
pub fn wanted(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("as=Table"))
}

/// The Table of `objects` of `rtype`.
pub fn render(rtype: &ResourceType, objects: &[Value], resource_version: &str) -> Value {
    let columns = columns(rtype);
    let mut definitions = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name of the object", "priority": 0}),
    ];
    definitions.extend(columns.iter().map(|c| {
        json!({"name": c.name, "type": c.kind, "format": "", "description": c.description, "priority": c.priority})
    }));
    let rows: Vec<Value> = objects
        .iter()
        .map(|object| {
            let mut cells = vec![
                object
                    .pointer("/metadata/name")
                    .cloned()
                    .unwrap_or(Value::Null),
            ];
            cells.extend(columns.iter().map(|c| cell(c, object)));
            json!({"cells": cells, "object": {
                "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                "metadata": object.get("metadata").cloned().unwrap_or_default()}})
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    })
}

struct Column {
    name: String,
    kind: String,
    description: String,
    priority: i64,
    path: String,
}

fn columns(rtype: &ResourceType) -> Vec<Column> {
    let declared = rtype
        .printer_columns
        .as_ref()
        .and_then(Value::as_array)
        .map(|columns| {
            columns
                .iter()
                .map(|c| Column {
                    name: c["name"].as_str().unwrap_or_default().to_owned(),
                    kind: c["type"].as_str().unwrap_or("string").to_owned(),
                    description: c["description"].as_str().unwrap_or_default().to_owned(),
                    priority: c["priority"].as_i64().unwrap_or(0),
                    path: c["jsonPath"].as_str().unwrap_or_default().to_owned(),
                })
                .collect::<Vec<_>>()
        });
    declared.unwrap_or_else(|| {
        vec![Column {
            name: "Age".to_owned(),
            kind: "date".to_owned(),
            description: "Time since creation".to_owned(),
            priority: 0,
            path: ".metadata.creationTimestamp".to_owned(),
        }]
    })
}

fn cell(column: &Column, object: &Value) -> Value {
    let value = evaluate(&column.path, object).unwrap_or(Value::Null);
    match (column.kind.as_str(), value.as_str()) {
        ("date", Some(text)) => json!(age(text)),
        _ => value,
    }
}

/// Evaluates `.a.b[?(@.type=="Ready")].status` or `.spec.routes[*].model` (values joined
/// with commas) against `value`. Every step consumes part of the path; anything else gives
/// `None`.
fn evaluate(path: &str, value: &Value) -> Option<Value> {
    let rest = path.strip_prefix('.').unwrap_or(path);
    if rest.is_empty() {
        return Some(value.clone());
    }
    if let Some(after) = rest.strip_prefix("[*]") {
        let texts: Vec<String> = value
            .as_array()?
            .iter()
            .filter_map(|item| evaluate(after, item))
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .collect();
        return Some(json!(texts.join(",")));
    }
    if let Some(filter) = rest.strip_prefix("[?(@.") {
        let close = filter.find(")]")?;
        let (condition, after) = filter.split_at(close);
        let (key, wanted) = condition.split_once("==")?;
        let wanted = wanted.trim_matches(['"', '\'']);
        let found = value
            .as_array()?
            .iter()
            .find(|item| item.get(key).and_then(Value::as_str) == Some(wanted))?;
        return evaluate(&after[2..], found);
    }
    if rest.starts_with('[') {
        return None;
    }
    let end = rest.find(['.', '[']).unwrap_or(rest.len());
    let (field, tail) = rest.split_at(end);
    evaluate(tail, value.get(field)?)
}

/// Kubernetes' short age format: `45s`, `3m`, `5h`, `2d`.
fn age(timestamp: &str) -> String {
    let Ok(then) = timestamp.parse::<jiff::Timestamp>() else {
        return timestamp.to_owned();
    };
    let seconds = jiff::Timestamp::now().duration_since(then).as_secs().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printer_column_paths() {
        let object = json!({"spec": {"owner": "team"}, "status": {"conditions": [
            {"type": "Other", "status": "False"}, {"type": "Ready", "status": "True"}]}});
        assert_eq!(evaluate(".spec.owner", &object), Some(json!("team")));
        assert_eq!(
            evaluate(".status.conditions[?(@.type==\"Ready\")].status", &object),
            Some(json!("True"))
        );
        assert_eq!(evaluate(".status.missing", &object), None);
        let routes = json!({"spec": {"routes": [{"model": "a"}, {"model": "b"}]}});
        assert_eq!(
            evaluate(".spec.routes[*].model", &routes),
            Some(json!("a,b"))
        );
        assert_eq!(
            evaluate(".spec.routes[0].model", &routes),
            None,
            "unsupported, not a hang"
        );
    }
}
