//! A simplified server-side apply that is still honest: per-manager field
//! ownership recorded in `managedFields` (FieldsV1), conflicts on fields another manager owns
//! with a different value (409 unless `force`), list-maps merged by key, and removal of fields
//! a manager stopped applying when nobody else owns them. Non-apply writes take ownership of
//! the fields they change.
//!
//! Lists whose items are all objects with a `name` (or, for conditions, `type`; for our
//! routes, `model`) are list-maps; every other list is atomic.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use crate::status::ApiError;

/// One field: a path of object keys and list-map keys (`[name=x]`).
pub type FieldPath = Vec<String>;

const LIST_MAP_KEYS: [&str; 3] = ["name", "type", "model"];

fn list_map_key(items: &[Value]) -> Option<&'static str> {
    LIST_MAP_KEYS.into_iter().find(|key| {
        !items.is_empty()
            && items
                .iter()
                .all(|i| i.get(key).is_some_and(|v| v.is_string()))
    })
}

/// The leaf fields set in `object` (type and identity metadata excluded).
pub fn fields(object: &Value) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Some(map) = object.as_object() else {
        return out;
    };
    for (key, value) in map {
        match key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                for sub in ["labels", "annotations"] {
                    if let Some(inner) = value.get(sub) {
                        collect(inner, &mut vec!["metadata".into(), sub.into()], &mut out);
                    }
                }
            }
            _ => collect(value, &mut vec![key.clone()], &mut out),
        }
    }
    out
}

fn collect(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                path.push(k.clone());
                collect(v, path, out);
                path.pop();
            }
        }
        Value::Array(items) => match list_map_key(items) {
            Some(key) => {
                for item in items {
                    let id = item[key].as_str().unwrap_or_default();
                    path.push(format!("[{key}={id}]"));
                    out.insert(path.clone());
                    collect(item, path, out);
                    path.pop();
                }
            }
            None => {
                out.insert(path.clone());
            }
        },
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at `path`, if present.
pub fn get<'v>(object: &'v Value, path: &[String]) -> Option<&'v Value> {
    let mut at = object;
    for segment in path {
        at = match segment_key(segment) {
            Some((key, id)) => at
                .as_array()?
                .iter()
                .find(|i| i.get(key).and_then(Value::as_str) == Some(id))?,
            None => at.get(segment)?,
        };
    }
    Some(at)
}

fn segment_key(segment: &str) -> Option<(&str, &str)> {
    segment
        .strip_prefix('[')?
        .strip_suffix(']')?
        .split_once('=')
}

/// Removes the field at `path`.
pub fn remove(object: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = object;
    for segment in parents {
        let next = match segment_key(segment) {
            Some((key, id)) => at.as_array_mut().and_then(|items| {
                items
                    .iter_mut()
                    .find(|i| i.get(key).and_then(Value::as_str) == Some(id))
            }),
            None => at.get_mut(segment),
        };
        let Some(next) = next else { return };
        at = next;
    }
    match segment_key(last) {
        Some((key, id)) => {
            if let Some(items) = at.as_array_mut() {
                items.retain(|i| i.get(key).and_then(Value::as_str) != Some(id));
            }
        }
        None => {
            if let Some(map) = at.as_object_mut() {
                map.remove(last);
            }
        }
    }
}

/// Deep-merges `applied` into `live`: objects by key, list-maps by their key, other lists
/// and scalars replaced.
pub fn merge(live: &mut Value, applied: &Value) {
    match (live, applied) {
        (Value::Object(live), Value::Object(applied)) => {
            for (k, v) in applied {
                match live.get_mut(k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        live.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Array(live), Value::Array(applied))
            if list_map_key(applied).is_some() && list_map_key(live).is_some() =>
        {
            let key = list_map_key(applied).unwrap_or("name");
            for item in applied {
                let id = &item[key];
                match live.iter_mut().find(|l| &l[key] == id) {
                    Some(existing) => merge(existing, item),
                    None => live.push(item.clone()),
                }
            }
        }
        (live, applied) => *live = applied.clone(),
    }
}

/// Field ownership of an object, by manager: (operation, fields).
pub type Owners = BTreeMap<String, (String, BTreeSet<FieldPath>)>;

/// Reads `metadata.managedFields`.
pub fn owners(object: &Value) -> Owners {
    let mut out = Owners::new();
    let entries = object
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array);
    for entry in entries.into_iter().flatten() {
        let manager = entry["manager"].as_str().unwrap_or("unknown").to_owned();
        let operation = entry["operation"].as_str().unwrap_or("Update").to_owned();
        let mut set = BTreeSet::new();
        decode(&entry["fieldsV1"], &mut Vec::new(), &mut set);
        out.insert(manager, (operation, set));
    }
    out
}

/// Writes `metadata.managedFields` (managers with no fields are dropped).
pub fn set_owners(object: &mut Value, owners: &Owners, api_version: &str) {
    let entries: Vec<Value> = owners
        .iter()
        .filter(|(_, (_, set))| !set.is_empty())
        .map(|(manager, (operation, set))| {
            json!({"manager": manager, "operation": operation, "apiVersion": api_version,
                   "fieldsType": "FieldsV1", "fieldsV1": encode(set)})
        })
        .collect();
    if let Some(map) = object.as_object_mut() {
        map.entry("metadata").or_insert_with(|| json!({}));
    }
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        if entries.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), Value::Array(entries));
        }
    }
}

fn encode(set: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut at = &mut root;
        for segment in path {
            let name = match segment_key(segment) {
                Some((key, id)) => format!("k:{}", json!({key: id})),
                None => format!("f:{segment}"),
            };
            at = at
                .entry(name)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("inserted as an object");
        }
        at.insert(".".into(), json!({}));
    }
    Value::Object(root)
}

fn decode(value: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(map) = value.as_object() else { return };
    for (name, child) in map {
        if name == "." {
            out.insert(path.clone());
            continue;
        }
        let segment = if let Some(field) = name.strip_prefix("f:") {
            field.to_owned()
        } else if let Some(key) = name.strip_prefix("k:") {
            let parsed: Value = serde_json::from_str(key).unwrap_or_default();
            let Some((k, v)) = parsed.as_object().and_then(|m| m.iter().next()) else {
                continue;
            };
            format!("[{k}={}]", v.as_str().unwrap_or_default())
        } else {
            continue;
        };
        path.push(segment);
        decode(child, path, out);
        path.pop();
    }
}

/// Applies `applied` by `manager` onto `live` (`None`: create). Returns the new object.
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
) -> Result<Value, ApiError> {
    let mut owners = live.map(owners).unwrap_or_default();
    let mine = fields(applied);
    let mut new = live.cloned().unwrap_or_else(|| json!({}));
    let mut conflicts = Vec::new();
    for field in &mine {
        let differs = live.and_then(|l| get(l, field)) != get(applied, field);
        for (other, (_, set)) in owners.iter_mut().filter(|(m, _)| *m != manager) {
            if set.contains(field) && differs {
                if force {
                    set.remove(field);
                } else {
                    conflicts.push((other.clone(), field.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() {
        return Err(conflict_error(&conflicts));
    }
    let before = owners
        .get(manager)
        .map(|(_, set)| set.clone())
        .unwrap_or_default();
    merge(&mut new, applied);
    for field in before.difference(&mine) {
        let still_owned = owners
            .iter()
            .any(|(m, (_, set))| m != manager && set.contains(field));
        if !still_owned {
            remove(&mut new, field);
        }
    }
    owners.insert(manager.to_owned(), ("Apply".to_owned(), mine));
    set_owners(&mut new, &owners, api_version);
    Ok(new)
}

/// Gives `manager` the fields a non-apply write changed, taking them from other managers.
pub fn record_update(old: Option<&Value>, new: &mut Value, manager: &str, api_version: &str) {
    let mut owners = old.map(owners).unwrap_or_default();
    let changed: BTreeSet<FieldPath> = fields(new)
        .into_iter()
        .filter(|f| old.and_then(|o| get(o, f)) != get(new, f))
        .collect();
    let current = fields(new);
    for (_, (_, set)) in owners.iter_mut() {
        set.retain(|f| !changed.contains(f) && current.contains(f));
    }
    if !changed.is_empty() {
        let entry = owners
            .entry(manager.to_owned())
            .or_insert_with(|| ("Update".to_owned(), BTreeSet::new()));
        entry.1.extend(changed);
    }
    set_owners(new, &owners, api_version);
}

fn conflict_error(conflicts: &[(String, FieldPath)]) -> ApiError {
    let causes: Vec<Value> = conflicts
        .iter()
        .map(|(manager, field)| {
            json!({"reason": "FieldManagerConflict",
                   "message": format!("conflict with \"{manager}\""),
                   "field": format!(".{}", field.join("."))})
        })
        .collect();
    let list: Vec<String> = conflicts
        .iter()
        .map(|(m, f)| format!("- {}: conflict with \"{m}\"", f.join(".")))
        .collect();
    let mut error = ApiError::conflict_with_message(format!(
        "Apply failed with {} conflict{}: {}",
        conflicts.len(),
        if conflicts.len() == 1 { "" } else { "s" },
        list.join("\n")
    ));
    error.details = Some(json!({"causes": causes}));
    error
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_manager_s_field_with_a_different_value_conflicts_unless_forced() {
        let first = apply(None, &json!({"spec": {"a": 1, "b": 2}}), "one", false, "v1").unwrap();
        let err = apply(Some(&first), &json!({"spec": {"a": 9}}), "two", false, "v1").unwrap_err();
        assert_eq!(err.code, 409);
        let same = apply(Some(&first), &json!({"spec": {"a": 1}}), "two", false, "v1");
        assert!(same.is_ok(), "same value: shared ownership, no conflict");
        let forced = apply(Some(&first), &json!({"spec": {"a": 9}}), "two", true, "v1").unwrap();
        assert_eq!(forced["spec"], json!({"a": 9, "b": 2}));
        let owners = owners(&forced);
        assert!(
            !owners["one"]
                .1
                .contains(&vec!["spec".to_owned(), "a".to_owned()])
        );
    }

    #[test]
    fn fields_a_manager_stops_sending_are_removed_and_list_maps_merge() {
        let live = apply(
            None,
            &json!({"spec": {"x": 1, "items": [{"name": "a", "v": 1}]}}),
            "m",
            false,
            "v1",
        )
        .unwrap();
        let other = apply(
            Some(&live),
            &json!({"spec": {"items": [{"name": "b", "v": 2}]}}),
            "n",
            false,
            "v1",
        )
        .unwrap();
        assert_eq!(other["spec"]["items"].as_array().unwrap().len(), 2);
        let shrunk = apply(
            Some(&other),
            &json!({"spec": {"items": [{"name": "a", "v": 1}]}}),
            "m",
            false,
            "v1",
        )
        .unwrap();
        assert!(shrunk["spec"].get("x").is_none(), "x removed");
        assert_eq!(
            shrunk["spec"]["items"].as_array().unwrap().len(),
            2,
            "n's item kept"
        );
    }
}
