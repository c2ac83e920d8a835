//! OpenAPI v3: the discovery document (`/openapi/v3`, one `serverRelativeURL` per served
//! group-version) and per group-version documents. Each resource's PATCH operation carries
//! its `x-kubernetes-group-version-kind` and the `fieldValidation` parameter, which is what
//! kubectl 1.27+ looks for before it leaves validation to the server (`fieldValidation=Strict`)
//! instead of validating client-side; `components.schemas` holds each custom resource's CRD
//! schema (for `kubectl explain` and client-side validation). Built-in kinds get an open
//! object schema: this server checks them itself (see [`crate::typed`]).
//!
//! `/openapi/v2` is an empty document (no definitions), in protobuf when asked (kubectl 1.20
//! asks for nothing else): kubectl then finds no schema for any kind and skips its
//! client-side validation, so `kubectl apply` works with its default `--validate=true` and the
//! server's own Strict field validation does the checking. Without it kubectl 1.20 failed with
//! a bare "the server could not find the requested resource"; a JSON answer to its protobuf
//! request would fail to decode.

use std::hash::{DefaultHasher, Hash, Hasher};

use serde_json::{Map, Value, json};

use crate::resources::ResourceType;

/// The `/openapi/v2` document: `Document { swagger: "2.0", info: { title, version },
/// paths: {} }` of gnostic's `openapi_v2` proto (fields 1, 2 and 8), or its JSON form.
pub fn v2(protobuf: bool) -> (&'static str, Vec<u8>) {
    if !protobuf {
        let document = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": "v1.31.0"}, "paths": {}});
        return ("application/json", document.to_string().into_bytes());
    }
    let field = |number: u8, bytes: &[u8]| -> Vec<u8> {
        let length = u8::try_from(bytes.len()).unwrap_or(u8::MAX);
        [&[(number << 3) | 2, length][..], bytes].concat()
    };
    let info = [field(1, b"Kubernetes"), field(2, b"v1.31.0")].concat();
    let document = [field(1, b"2.0"), field(2, &info), field(8, b"")].concat();
    // The real server lets Go sniff the type: the `@` of the protobuf media type it was asked
    // for does not parse as a Content-Type in client-go.
    ("application/octet-stream", document)
}

/// The document for an OpenAPI v3 path, or `None` when the path is not one.
pub fn document(path: &str, types: &[ResourceType]) -> Option<Value> {
    let rest = path.trim_end_matches('/').strip_prefix("/openapi/v3")?;
    if rest.is_empty() {
        return Some(root(types));
    }
    let group_version = rest.strip_prefix('/')?;
    let members: Vec<&ResourceType> = types
        .iter()
        .filter(|t| discovery_path(t) == group_version)
        .collect();
    (!members.is_empty()).then(|| group_version_document(&members))
}

/// `api/v1` or `apis/{group}/{version}`.
fn discovery_path(rtype: &ResourceType) -> String {
    if rtype.group.is_empty() {
        format!("api/{}", rtype.version)
    } else {
        format!("apis/{}/{}", rtype.group, rtype.version)
    }
}

fn root(types: &[ResourceType]) -> Value {
    let mut paths = Map::new();
    for rtype in types {
        let key = discovery_path(rtype);
        if paths.contains_key(&key) {
            continue;
        }
        let members: Vec<&ResourceType> =
            types.iter().filter(|t| discovery_path(t) == key).collect();
        let mut hasher = DefaultHasher::new();
        group_version_document(&members)
            .to_string()
            .hash(&mut hasher);
        let url = format!("/openapi/v3/{key}?hash={:016X}", hasher.finish());
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

fn group_version_document(members: &[&ResourceType]) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    for rtype in members {
        paths.insert(object_path(rtype), json!({"patch": patch_operation(rtype)}));
        schemas.insert(schema_name(rtype), schema(rtype));
    }
    schemas.insert(
        "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta".to_owned(),
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.31.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}

fn object_path(rtype: &ResourceType) -> String {
    let namespace = if rtype.namespaced {
        "/namespaces/{namespace}"
    } else {
        ""
    };
    format!(
        "/{}{namespace}/{}/{{name}}",
        discovery_path(rtype),
        rtype.plural
    )
}

fn gvk(rtype: &ResourceType) -> Value {
    json!({"group": rtype.group, "version": rtype.version, "kind": rtype.kind})
}

fn patch_operation(rtype: &ResourceType) -> Value {
    let query = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}});
    json!({
        "operationId": format!("patch{}", rtype.kind),
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": gvk(rtype),
        "parameters": [query("dryRun"), query("fieldManager"), query("fieldValidation"),
            {"name": "force", "in": "query", "schema": {"type": "boolean"}}],
        "responses": {"200": {"description": "OK", "content": {"application/json": {"schema":
            {"$ref": format!("#/components/schemas/{}", schema_name(rtype))}}}}},
    })
}

/// `io.k8s.api.apps.v1.Deployment` for built-ins; the reversed group for custom resources
/// (`io.llmgateway.v1alpha1.LlmProvider`), as the real server names them.
fn schema_name(rtype: &ResourceType) -> String {
    if rtype.schema.is_some() {
        let reversed: Vec<&str> = rtype.group.split('.').rev().collect();
        return format!("{}.{}.{}", reversed.join("."), rtype.version, rtype.kind);
    }
    let group = match rtype.group.as_str() {
        "" => "core",
        other => other.split('.').next().unwrap_or(other),
    };
    format!("io.k8s.api.{group}.{}.{}", rtype.version, rtype.kind)
}

fn schema(rtype: &ResourceType) -> Value {
    let mut schema = match &rtype.schema {
        Some(crd) => (*crd.json).clone(),
        None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    if let Some(properties) = schema
        .as_object_mut()
        .map(|s| s.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut)
    {
        properties.insert("apiVersion".to_owned(), json!({"type": "string"}));
        properties.insert("kind".to_owned(), json!({"type": "string"}));
        properties.insert(
            "metadata".to_owned(),
            json!({"allOf": [{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}]}),
        );
    }
    schema["x-kubernetes-group-version-kind"] = json!([gvk(rtype)]);
    schema
}
