//! What every write goes through before it is stored, in the real server's order: decoding
//! (quantities in canonical form, unknown and duplicate fields per `fieldValidation`, values
//! of the wrong type), Secret `stringData` folded into `data`, then a custom resource's schema
//! (defaults, validation, CEL).

use base64::Engine;
use serde_json::{Value, json};

use crate::request::WriteRequest;
use crate::resources::ResourceType;
use crate::status::ApiError;

/// Decodes `object` as the server would store it: built-in quantities made canonical, unknown
/// fields dropped (or the write refused, per the request). `old` is the live object.
pub fn decode(
    rtype: &ResourceType,
    object: &mut Value,
    old: Option<&Value>,
    request: &mut WriteRequest,
) -> Result<(), ApiError> {
    if rtype.schema.is_none() {
        crate::quantity_fields::canonicalise(&rtype.kind, &rtype.api_version(), object)?;
    }
    crate::unknown::check(rtype, object, old, request)
}

/// Everything after decoding: `stringData`, then the custom resource's schema and rules.
pub fn admit(
    rtype: &ResourceType,
    object: &mut Value,
    old: Option<&Value>,
    name: &str,
) -> Result<(), ApiError> {
    fold_string_data(object, rtype)?;
    if let Some(schema) = &rtype.schema {
        crate::schema::admit(schema, object, old, &rtype.kind, name)?;
    }
    Ok(())
}

/// Secrets: `stringData` is folded into base64 `data` on write, as the real server does.
fn fold_string_data(object: &mut Value, rtype: &ResourceType) -> Result<(), ApiError> {
    if rtype.kind != "Secret" {
        return Ok(());
    }
    let Some(map) = object.as_object_mut() else {
        return Ok(());
    };
    let engine = base64::engine::general_purpose::STANDARD;
    if let Some(data) = map.get("data").and_then(Value::as_object) {
        for (k, v) in data {
            let valid = v.as_str().is_some_and(|s| engine.decode(s).is_ok());
            if !valid {
                return Err(ApiError::invalid(
                    "Secret",
                    "",
                    &format!("data[{k}]"),
                    "illegal base64 data",
                ));
            }
        }
    }
    if let Some(Value::Object(string_data)) = map.remove("stringData") {
        let data = map.entry("data").or_insert_with(|| json!({}));
        for (k, v) in string_data {
            data[k] = json!(engine.encode(v.as_str().unwrap_or_default()));
        }
    }
    Ok(())
}
