//! A Responses request that continues a kept response (`previous_response_id`) or refers to
//! kept items (`item_reference`), made whole before it is translated: an upstream without the
//! Responses API only understands the conversation spelt out.

use serde_json::{Value, json};

use crate::error::ApiError;
use crate::response_store::{Kind, ResponseStore};

/// Fills in `request` (a Responses body) from `store`, for caller `scope`: the input and output
/// of `previous_response_id` first, then the request's own items with each `item_reference`
/// replaced by the item it names. Returns the whole input, which is what a response to this
/// request keeps as its own. A name the store does not have is a 400 naming the field.
pub fn expand(
    request: &mut Value,
    store: &ResponseStore,
    scope: &str,
) -> Result<Vec<Value>, ApiError> {
    let mut input = Vec::new();
    if let Some(previous) = request.get("previous_response_id").filter(|v| !v.is_null()) {
        let id = previous.as_str().unwrap_or_default();
        let kept = store
            .get(scope, Kind::Response, id)
            .ok_or_else(|| missing("response", id, "previous_response_id"))?;
        for part in ["/input", "/response/output"] {
            let items = kept.pointer(part).and_then(Value::as_array);
            input.extend(items.into_iter().flatten().cloned());
        }
    }
    match request.get("input") {
        Some(Value::String(text)) => input.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => {
            for (index, item) in items.iter().enumerate() {
                if item["type"] != "item_reference" {
                    input.push(item.clone());
                    continue;
                }
                let id = item["id"].as_str().unwrap_or_default();
                let param = format!("input[{index}].id");
                let kept = store
                    .get(scope, Kind::Item, id)
                    .ok_or_else(|| missing("item", id, &param))?;
                input.push(Value::clone(&kept));
            }
        }
        _ => {}
    }
    if let Some(fields) = request.as_object_mut() {
        fields.remove("previous_response_id");
        fields.insert("input".to_owned(), Value::Array(input.clone()));
    }
    Ok(input)
}

fn missing(what: &str, id: &str, param: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::invalid(
        format!(
            "{what} '{shown}' is not kept by this gateway: it expired, belongs to another caller, was stored with store: false, or was kept by another replica; send the whole conversation in 'input'"
        ),
        Some(param),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_continuation_is_spelt_out_and_unknown_names_are_refused() {
        let store = ResponseStore::new(Duration::from_secs(60), 1 << 20);
        let call = json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}"});
        let response = json!({"id": "resp_1", "output": [call.clone()]});
        store.put(
            "alice",
            vec![json!({"role": "user", "content": "hi"})],
            &response,
        );

        let mut request = json!({"model": "m", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
        let input = expand(&mut request, &store, "alice").unwrap();
        assert_eq!(input.len(), 3);
        assert_eq!(input[1], call);
        assert!(request.get("previous_response_id").is_none());
        assert_eq!(request["input"], Value::Array(input));

        let mut referring =
            json!({"model": "m", "input": [{"type": "item_reference", "id": "fc_1"}]});
        assert_eq!(expand(&mut referring, &store, "alice").unwrap(), vec![call]);

        let mut stranger = json!({"model": "m", "previous_response_id": "resp_1", "input": "x"});
        let error = expand(&mut stranger, &store, "bob").unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidRequest { param: Some(p), .. } if p == "previous_response_id")
        );
    }
}
