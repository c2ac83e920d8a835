//! Deletion and garbage collection: finalizers, `propagationPolicy` (Background by default,
//! Foreground, Orphan), dependents collected by owner reference, and namespace deletion that
//! empties the namespace first (which envtest cannot do).
//!
//! A collector task runs after every write (and after `gc_delay`, so "eventually" is tested):
//! it deletes objects all of whose owners are gone, finishes foreground deletions whose
//! dependents are gone, and empties terminating namespaces.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Shared;
use crate::objects::{key, metadata, name_of, now};
use crate::path::Target;
use crate::status::ApiError;
use crate::store::{EventType, ObjectKey, State};

const FOREGROUND: &str = "foregroundDeletion";

/// How dependents are treated when their owner is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Propagation {
    Background,
    Foreground,
    Orphan,
}

fn propagation(options: &Value, query: Option<&str>) -> Propagation {
    match options
        .get("propagationPolicy")
        .and_then(Value::as_str)
        .or(query)
    {
        Some("Foreground") => Propagation::Foreground,
        Some("Orphan") => Propagation::Orphan,
        _ => Propagation::Background,
    }
}

/// `DELETE` an object. With finalizers (or Foreground propagation, or a namespace) it only gets
/// a `deletionTimestamp`; the object goes when the last finalizer is removed.
pub fn delete(
    shared: &Shared,
    target: &Target,
    options: &Value,
    query_policy: Option<&str>,
) -> Result<Value, ApiError> {
    let name = name_of(target)?.to_owned();
    let mut state = shared.store.lock();
    let key = key(target, &name);
    let mut object = state
        .objects
        .get(&key)
        .cloned()
        .ok_or_else(|| ApiError::not_found(&target.rtype.plural, &name))?;
    for field in ["uid", "resourceVersion"] {
        if let Some(expected) = options
            .pointer(&format!("/preconditions/{field}"))
            .and_then(Value::as_str)
            && object
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                != Some(expected)
        {
            return Err(ApiError::conflict(
                &target.rtype.plural,
                &name,
                &format!("Precondition failed: {field}"),
            ));
        }
    }
    let policy = propagation(options, query_policy);
    if policy == Propagation::Orphan {
        orphan_dependents(shared, &mut state, &object);
    }
    let namespace = target.rtype.kind == "Namespace";
    if policy == Propagation::Foreground {
        let finalizers = metadata(&mut object)?
            .entry("finalizers")
            .or_insert_with(|| json!([]));
        if let Some(list) = finalizers.as_array_mut()
            && !list.iter().any(|f| f == FOREGROUND)
        {
            list.push(json!(FOREGROUND));
        }
    }
    let has_finalizers = object
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers || namespace {
        if object.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(object);
        }
        let meta = metadata(&mut object)?;
        meta.insert("deletionTimestamp".to_owned(), json!(now()));
        meta.insert("deletionGracePeriodSeconds".to_owned(), json!(0));
        if namespace {
            object["status"] = json!({"phase": "Terminating"});
        }
        let result = shared
            .store
            .commit(&mut state, key, EventType::Modified, object);
        drop(state);
        shared.wake_collector();
        return Ok(result);
    }
    let result = shared
        .store
        .commit(&mut state, key, EventType::Deleted, object);
    drop(state);
    shared.wake_collector();
    Ok(result)
}

fn uid(object: &Value) -> Option<&str> {
    object.pointer("/metadata/uid").and_then(Value::as_str)
}

fn owner_uids(object: &Value) -> Vec<String> {
    object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|r| r.get("uid").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

fn dependents_of(state: &State, owner: &Value) -> Vec<ObjectKey> {
    let Some(owner_uid) = uid(owner) else {
        return Vec::new();
    };
    state
        .objects
        .iter()
        .filter(|(_, o)| owner_uids(o).iter().any(|u| u == owner_uid))
        .map(|(k, _)| k.clone())
        .collect()
}

fn orphan_dependents(shared: &Shared, state: &mut State, owner: &Value) {
    let Some(owner_uid) = uid(owner).map(str::to_owned) else {
        return;
    };
    for key in dependents_of(state, owner) {
        let Some(mut dependent) = state.objects.get(&key).cloned() else {
            continue;
        };
        if let Some(refs) = dependent
            .pointer_mut("/metadata/ownerReferences")
            .and_then(Value::as_array_mut)
        {
            refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(owner_uid.as_str()));
        }
        shared
            .store
            .commit(state, key, EventType::Modified, dependent);
    }
}

/// Runs the collector until the server is dropped: wakes on every write, waits `gc_delay`,
/// sweeps until nothing changes.
pub fn spawn_collector(shared: Arc<Shared>) {
    let weak = Arc::downgrade(&shared);
    let wake = shared.collector_wake.clone();
    let mut events = shared.store.subscribe();
    drop(shared);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    // A sweep scans every object under the store's lock: run one only when a
                    // write can have given the collector work, or writes become quadratic.
                    Ok(event) if !gives_work(&event) => continue,
                    Ok(event) if event.kind != crate::store::EventType::Deleted
                        && weak.upgrade().is_some_and(|shared| owners_alive(&shared, &event.object)) => continue,
                    _ => {}
                },
                () = wake.notified() => {}
            }
            // Fold the writes made meanwhile into this sweep.
            while events.try_recv().is_ok() {}
            let Some(shared) = weak.upgrade() else { return };
            let delay = shared.gc_delay();
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            while sweep(&shared) {}
        }
    });
}

/// Whether a write can leave the collector something to do: a deletion (dependents to collect),
/// an object terminating (finalizers to process) or one created with owners (that may be gone).
fn gives_work(event: &crate::store::Event) -> bool {
    use crate::store::EventType;
    let metadata = event.object.get("metadata");
    let has = |field: &str| metadata.and_then(|m| m.get(field)).is_some();
    match event.kind {
        EventType::Deleted => true,
        EventType::Added => has("ownerReferences"),
        EventType::Modified => has("deletionTimestamp") || has("ownerReferences"),
    }
}

/// Whether every owner of a live, non-terminating `object` exists with the referenced uid:
/// then a write of it gives the collector nothing to do, found by direct lookups instead of a
/// sweep.
fn owners_alive(shared: &Shared, object: &Value) -> bool {
    if object.pointer("/metadata/deletionTimestamp").is_some() {
        return false;
    }
    let namespace = object
        .pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or("");
    let types = shared.types();
    let state = shared.store.lock();
    let references = object
        .pointer("/metadata/ownerReferences")
        .and_then(Value::as_array);
    references.into_iter().flatten().all(|reference| {
        let field = |name: &str| reference.get(name).and_then(Value::as_str).unwrap_or("");
        let group = field("apiVersion").rsplit_once('/').map_or("", |(g, _)| g);
        let Some(rtype) = types
            .iter()
            .find(|t| t.group == group && t.kind == field("kind"))
        else {
            return false;
        };
        let owner_namespace = if rtype.namespaced { namespace } else { "" };
        let key = (
            rtype.id(),
            owner_namespace.to_owned(),
            field("name").to_owned(),
        );
        state
            .objects
            .get(&key)
            .is_some_and(|owner| uid(owner) == Some(field("uid")))
    })
}

/// One pass; returns whether it changed anything.
fn sweep(shared: &Shared) -> bool {
    let mut state = shared.store.lock();
    let live_uids: std::collections::HashSet<String> = state
        .objects
        .values()
        .filter_map(|o| uid(o).map(str::to_owned))
        .collect();
    let mut work: Vec<(ObjectKey, Action)> = Vec::new();
    for (key, object) in &state.objects {
        let owners = owner_uids(object);
        let terminating = object.pointer("/metadata/deletionTimestamp").is_some();
        if !owners.is_empty() && owners.iter().all(|u| !live_uids.contains(u)) && !terminating {
            work.push((key.clone(), Action::Delete));
        }
        let foreground = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x == FOREGROUND));
        if terminating && foreground {
            let dependents = dependents_of(&state, object);
            if dependents.is_empty() {
                work.push((key.clone(), Action::RemoveFinalizer(FOREGROUND)));
            }
            for dependent in dependents {
                work.push((dependent, Action::Delete));
            }
        }
        if terminating && key.0 == "/namespaces" {
            let inside: Vec<ObjectKey> = state
                .objects
                .keys()
                .filter(|k| k.1 == key.2)
                .cloned()
                .collect();
            if inside.is_empty() {
                work.push((key.clone(), Action::Remove));
            }
            work.extend(inside.into_iter().map(|k| (k, Action::Delete)));
        }
    }
    let mut changed = false;
    for (key, action) in work {
        let Some(mut object) = state.objects.get(&key).cloned() else {
            continue;
        };
        let has_finalizers = |o: &Value| {
            o.pointer("/metadata/finalizers")
                .and_then(Value::as_array)
                .is_some_and(|f| !f.is_empty())
        };
        match action {
            Action::Delete if object.pointer("/metadata/deletionTimestamp").is_some() => continue,
            Action::Delete if has_finalizers(&object) => {
                if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                    meta.insert("deletionTimestamp".to_owned(), json!(now()));
                }
                shared
                    .store
                    .commit(&mut state, key, EventType::Modified, object);
            }
            Action::Delete | Action::Remove => {
                shared
                    .store
                    .commit(&mut state, key, EventType::Deleted, object);
            }
            Action::RemoveFinalizer(name) => {
                if let Some(list) = object
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    list.retain(|f| f != name);
                }
                let kind = if has_finalizers(&object) {
                    EventType::Modified
                } else {
                    EventType::Deleted
                };
                shared.store.commit(&mut state, key, kind, object);
            }
        }
        changed = true;
    }
    changed
}

#[derive(Debug, Clone, Copy)]
enum Action {
    Delete,
    Remove,
    RemoveFinalizer(&'static str),
}

/// The default delay before the collector acts.
pub const DEFAULT_GC_DELAY: Duration = Duration::ZERO;
