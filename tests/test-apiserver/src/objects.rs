//! Reads and writes of single objects: create, get, replace, patch, delete, and the `/status`
//! subresource, with the metadata rules real API servers apply.

use serde_json::{Map, Value, json};

use crate::Shared;
use crate::path::Target;
use crate::request::{Verb, WriteRequest};
use crate::resources::ResourceType;
use crate::status::ApiError;
use crate::store::{EventType, ObjectKey, State};

/// Which patch format a body is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    /// RFC 7386 (`application/merge-patch+json`); strategic merge is treated the same.
    Merge,
    /// RFC 6902 (`application/json-patch+json`).
    Json,
    /// Server-side apply (`application/apply-patch+yaml`, see [`crate::ssa`]).
    Apply {
        /// Take fields other managers own instead of answering 409.
        force: bool,
    },
}

pub(crate) fn key(target: &Target, name: &str) -> ObjectKey {
    (
        target.rtype.id(),
        target.namespace.clone().unwrap_or_default(),
        name.to_owned(),
    )
}

pub(crate) fn name_of(target: &Target) -> Result<&str, ApiError> {
    target
        .name
        .as_deref()
        .ok_or_else(ApiError::method_not_allowed)
}

/// `GET` one object (or its status view, which is the whole object).
pub fn get(shared: &Shared, target: &Target) -> Result<Value, ApiError> {
    let name = name_of(target)?;
    let state = shared.store.lock();
    state
        .objects
        .get(&key(target, name))
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.rtype.plural, name))
}

/// `POST` to a collection (also an apply that creates).
pub fn create(
    shared: &Shared,
    target: &Target,
    mut object: Value,
    request: &mut WriteRequest,
) -> Result<Value, ApiError> {
    let rtype = &target.rtype;
    let meta = metadata(&mut object)?;
    if let (Some(path_ns), Some(body_ns)) = (&target.namespace, meta.get("namespace"))
        && body_ns.as_str() != Some(path_ns.as_str())
    {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    if rtype.namespaced && target.namespace.is_none() {
        return Err(ApiError::method_not_allowed());
    }
    let name = match (
        meta.get("name").and_then(Value::as_str),
        meta.get("generateName").and_then(Value::as_str),
    ) {
        (Some(name), _) if !name.is_empty() => name.to_owned(),
        (_, Some(prefix)) => format!(
            "{prefix}{}",
            &uuid::Uuid::new_v4().simple().to_string()[..5]
        ),
        _ => {
            return Err(ApiError::invalid(
                &rtype.kind,
                "",
                "metadata.name",
                "name or generateName is required",
            ));
        }
    };
    meta.insert("name".to_owned(), json!(name));
    if let Some(ns) = &target.namespace {
        meta.insert("namespace".to_owned(), json!(ns));
    }
    meta.insert("uid".to_owned(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".to_owned(), json!(now()));
    meta.insert("generation".to_owned(), json!(1));
    meta.remove("deletionTimestamp");
    set_type_meta(&mut object, rtype);
    crate::admission::decode(rtype, &mut object, None, request)?;
    if rtype.status_subresource && rtype.kind != "CustomResourceDefinition" {
        strip_status(&mut object);
    }
    crate::admission::admit(rtype, &mut object, None, &name)?;
    if object.pointer("/metadata/managedFields").is_none() {
        crate::ssa::record_update(None, &mut object, &request.manager, &rtype.api_version());
    }
    let mut state = shared.store.lock();
    if let Some(ns) = &target.namespace {
        check_namespace(&state, ns)?;
    }
    let key = key(target, &name);
    if state.objects.contains_key(&key) {
        return Err(ApiError::already_exists(&rtype.plural, &name));
    }
    if rtype.kind == "CustomResourceDefinition" {
        establish(&mut object);
    }
    let created = shared
        .store
        .commit(&mut state, key, EventType::Added, object);
    drop(state);
    if rtype.kind == "CustomResourceDefinition" {
        shared.register_crd(&created);
    }
    Ok(created)
}

/// `PUT` an object, or its status with `target.status`.
pub fn replace(
    shared: &Shared,
    target: &Target,
    object: Value,
    request: &mut WriteRequest,
) -> Result<Value, ApiError> {
    let name = name_of(target)?.to_owned();
    let mut state = shared.store.lock();
    let key = key(target, &name);
    let old = state
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.rtype.plural, &name))?;
    write(shared, &mut state, target, (key, &old), object, request)
}

/// `PATCH` an object or its status; an apply patch creates a missing object.
pub fn patch(
    shared: &Shared,
    target: &Target,
    kind: PatchKind,
    mut patch: Value,
    request: &mut WriteRequest,
) -> Result<(Value, bool), ApiError> {
    let name = name_of(target)?.to_owned();
    let mut state = shared.store.lock();
    let key = key(target, &name);
    let api_version = target.rtype.api_version();
    let Some(old) = state.objects.get(&key).cloned() else {
        let PatchKind::Apply { force } = kind else {
            return Err(ApiError::not_found(&target.rtype.plural, &name));
        };
        if target.status {
            return Err(ApiError::not_found(&target.rtype.plural, &name));
        }
        drop(state);
        crate::admission::decode(&target.rtype, &mut patch, None, request)?;
        let mut object = crate::ssa::apply(None, &patch, &request.manager, force, &api_version)?;
        metadata(&mut object)?.insert("name".to_owned(), json!(name));
        return create(shared, target, object, request).map(|o| (o, true));
    };
    let mut doc = old.clone();
    match kind {
        PatchKind::Apply { force } => {
            crate::admission::decode(&target.rtype, &mut patch, Some(&old), request)?;
            doc = crate::ssa::apply(Some(&old), &patch, &request.manager, force, &api_version)?;
            return write(shared, &mut state, target, (key, &old), doc, request)
                .map(|o| (o, false));
        }
        PatchKind::Merge => json_patch::merge(&mut doc, &patch),
        PatchKind::Json => {
            let ops: json_patch::Patch = serde_json::from_value(patch)
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            json_patch::patch(&mut doc, &ops).map_err(|e| {
                ApiError::invalid(&target.rtype.kind, &name, "patch", &e.to_string())
            })?;
        }
    }
    write(shared, &mut state, target, (key, &old), doc, request).map(|o| (o, false))
}

/// The common part of replace and patch of the live object `old` stored at `key`:
/// preconditions, immutable metadata, decoding, the spec/status split, generation, field
/// ownership (non-apply writes take what they change), and deletion once the last finalizer
/// is gone.
fn write(
    shared: &Shared,
    state: &mut State,
    target: &Target,
    (key, old): (ObjectKey, &Value),
    mut new: Value,
    request: &mut WriteRequest,
) -> Result<Value, ApiError> {
    let rtype = &target.rtype;
    let name = key.2.clone();
    let sent_rv = new
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .filter(|rv| !rv.is_empty())
        .map(str::to_owned);
    let live_rv = old
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str);
    if sent_rv.is_some() && sent_rv.as_deref() != live_rv {
        return Err(ApiError::conflict(
            &rtype.plural,
            &name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    let old_meta = old.get("metadata").cloned().unwrap_or_default();
    let meta = metadata(&mut new)?;
    for field in [
        "uid",
        "creationTimestamp",
        "name",
        "namespace",
        "generation",
        "deletionTimestamp",
    ] {
        match old_meta.get(field) {
            Some(value) => meta.insert(field.to_owned(), value.clone()),
            None => meta.remove(field),
        };
    }
    set_type_meta(&mut new, rtype);
    crate::admission::decode(rtype, &mut new, Some(old), request)?;
    if target.status {
        let status = new.get("status").cloned();
        new = old.clone();
        match status {
            Some(status) => new["status"] = status,
            None => strip_status(&mut new),
        }
    } else if rtype.status_subresource {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => strip_status(&mut new),
        }
    }
    crate::admission::admit(rtype, &mut new, Some(old), &name)?;
    if request.verb != Verb::Apply {
        crate::ssa::record_update(Some(old), &mut new, &request.manager, &rtype.api_version());
    }
    if spec_of(&new) != spec_of(old) {
        let generation = old_meta
            .get("generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        metadata(&mut new)?.insert("generation".to_owned(), json!(generation + 1));
    }
    let terminating = old_meta.get("deletionTimestamp").is_some();
    let finalizers_left = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if terminating && !finalizers_left {
        return Ok(shared.store.commit(state, key, EventType::Deleted, new));
    }
    if new == *old {
        return Ok(new);
    }
    Ok(shared.store.commit(state, key, EventType::Modified, new))
}

pub(crate) fn metadata(object: &mut Value) -> Result<&mut Map<String, Value>, ApiError> {
    let map = object
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("the body is not a JSON object"))?;
    map.entry("metadata")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or_else(|| ApiError::bad_request("metadata is not an object"))
}

fn set_type_meta(object: &mut Value, rtype: &ResourceType) {
    object["apiVersion"] = json!(rtype.api_version());
    object["kind"] = json!(rtype.kind);
}

fn strip_status(object: &mut Value) {
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
}

/// Everything but metadata and status: a change here bumps `generation`.
fn spec_of(object: &Value) -> Value {
    let mut copy = object.clone();
    if let Some(map) = copy.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    copy
}

fn check_namespace(state: &State, namespace: &str) -> Result<(), ApiError> {
    let key = (
        "/namespaces".to_owned(),
        String::new(),
        namespace.to_owned(),
    );
    match state.objects.get(&key) {
        None => Err(ApiError::not_found("namespaces", namespace)),
        Some(ns) if ns.pointer("/metadata/deletionTimestamp").is_some() => {
            Err(ApiError::forbidden(format!(
                "unable to create new content in namespace {namespace} because it is being terminated"
            )))
        }
        Some(_) => Ok(()),
    }
}

fn establish(crd: &mut Value) {
    let at = now();
    crd["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": at},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": at},
        ],
        "acceptedNames": crd.pointer("/spec/names").cloned().unwrap_or_default(),
        "storedVersions": crd.pointer("/spec/versions").and_then(Value::as_array)
            .map(|v| v.iter().filter_map(|x| x.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default(),
    });
}

/// RFC 3339 now, at second precision as Kubernetes writes it.
pub fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
