//! Status conditions: the condition list schema and the condition types and reasons we use.
//!
//! Every kind carries `status.conditions` as a list-map keyed by `type` (so server-side apply
//! merges entries per type) with the standard `metav1.Condition` shape. Types and reasons live
//! here as constants so operator, gateway and tests spell them the same way.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::{Schema, SchemaGenerator, json_schema};

/// Condition types.
pub mod types {
    /// The object is valid, its references resolve and its children are in place.
    pub const READY: &str = "Ready";
}

/// Condition reasons: CamelCase words a human can search for.
pub mod reasons {
    /// Everything the object asks for is in place.
    pub const RECONCILED: &str = "Reconciled";
    /// The spec fails a check the schema cannot express; the message names the field.
    pub const INVALID_SPEC: &str = "InvalidSpec";
    /// A referenced Secret or key inside it is missing.
    pub const MISSING_SECRET: &str = "MissingSecret";
}

/// Schema for `status.conditions`: a list-map of `metav1.Condition` keyed by `type`.
pub fn conditions_schema(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "description": "Current state of the object, one entry per condition type (Ready at least).",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "maxItems": 16,
        "items": {
            "type": "object",
            "required": ["type", "status", "lastTransitionTime", "reason", "message"],
            // The bounds and patterns of `metav1.Condition`.
            "properties": {
                "type": {"type": "string", "description": "Condition type, e.g. Ready.", "maxLength": 316,
                         "pattern": "^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"},
                "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                "observedGeneration": {"type": "integer", "format": "int64", "minimum": 0},
                "lastTransitionTime": {"type": "string", "format": "date-time"},
                "reason": {"type": "string", "description": "One CamelCase word for machines.", "minLength": 1,
                           "maxLength": 1024, "pattern": "^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"},
                "message": {"type": "string", "description": "What happened and what to do, for humans.",
                            "maxLength": 32768}
            }
        }
    })
}

/// Finds the condition of the given type.
pub fn find<'a>(conditions: &'a [Condition], condition_type: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == condition_type)
}
