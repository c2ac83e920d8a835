//! A Responses request that continues a kept response (`previous_response_id`) or refers to
//! kept items (`item_reference`): spelt out before it is translated, since an upstream without
//! the Responses API only understands the whole conversation, and before it goes to a
//! Responses upstream that did not answer what it refers to (a fallback, or a route whose
//! targets changed). A continuation of the target's own responses passes through untouched.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::request::ClientRequest;
use crate::response_store::{self, Kind, ResponseStore};

/// The conversation a kept response answered: its input items, as the store keeps them.
#[derive(Debug)]
pub(crate) enum KeptInput {
    /// Already resolved (continuations spelt out).
    Items(Vec<Value>),
    /// The `input` of this request body, read when the response is kept (not before: most
    /// requests continue nothing, and reading it can wait until the reply is out).
    OfBody(Bytes),
}

impl KeptInput {
    /// The input items.
    pub(crate) fn into_items(self) -> Vec<Value> {
        let body = match self {
            Self::Items(items) => return items,
            Self::OfBody(body) => body,
        };
        #[derive(serde::Deserialize)]
        struct Input {
            #[serde(default)]
            input: Value,
        }
        match serde_json::from_slice::<Input>(&body).map(|b| b.input) {
            Ok(Value::String(text)) => vec![json!({"role": "user", "content": text})],
            Ok(Value::Array(items)) => items,
            _ => Vec::new(),
        }
    }
}

/// Kept records by what names them, each read from the store once.
type Kept = HashMap<(Kind, String), Arc<Value>>;

/// Fills in `request` (a Responses body) from `store`, for caller `scope`: the input and output
/// of `previous_response_id` first, then the request's own items with each `item_reference`
/// replaced by the item it names. Returns the whole input, which is what a response to this
/// request keeps as its own. A name the store does not have is a 400 naming the field.
pub(crate) async fn expand(
    request: &mut Value,
    store: &ResponseStore,
    scope: &str,
) -> Result<Vec<Value>, ApiError> {
    let kept = fetch(store, scope, response_store::names_in(request)).await?;
    spell_out(request, &kept)
}

/// Reads each of `named` once; those not kept are left out.
async fn fetch(
    store: &ResponseStore,
    scope: &str,
    named: Vec<(Kind, String)>,
) -> Result<Kept, ApiError> {
    let mut kept = Kept::new();
    for (kind, id) in named {
        if kept.contains_key(&(kind, id.clone())) {
            continue;
        }
        if let Some(record) = store.get(scope, kind, &id).await? {
            kept.insert((kind, id), record);
        }
    }
    Ok(kept)
}

/// [`expand`] with the records already read.
fn spell_out(request: &mut Value, kept: &Kept) -> Result<Vec<Value>, ApiError> {
    let lookup = |kind, id: &str| kept.get(&(kind, id.to_owned()));
    let mut input = Vec::new();
    if let Some(previous) = request.get("previous_response_id").filter(|v| !v.is_null()) {
        let id = previous.as_str().unwrap_or_default();
        let record = lookup(Kind::Response, id)
            .ok_or_else(|| missing("response", id, "previous_response_id"))?;
        for part in ["/input", "/response/output"] {
            let items = record.pointer(part).and_then(Value::as_array);
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
                let record = lookup(Kind::Item, id)
                    .ok_or_else(|| missing("item", id, &format!("input[{index}].id")))?;
                input.push(record["item"].clone());
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

/// A Responses request for an upstream that speaks the Responses API itself.
#[derive(Debug)]
pub(crate) struct ForNative {
    /// The body to send instead of the client's, when it had to be spelt out.
    pub spelt_out: Option<Value>,
    /// What its response keeps as input, when it is to be kept.
    pub keep: Option<KeptInput>,
}

/// Decides what `provider`, a Responses upstream, gets for `request`: the client's body when
/// everything it refers to is the provider's own (or unknown here: the upstream may keep more
/// than the gateway), else the conversation spelt out from the store.
pub(crate) async fn for_native(
    request: &ClientRequest,
    store: &ResponseStore,
    scope: &str,
    provider: &str,
) -> Result<ForNative, ApiError> {
    let named = response_store::referred(&request.body);
    if named.is_empty() {
        let keep = request
            .keep
            .then(|| KeptInput::OfBody(request.body.clone()));
        return Ok(ForNative {
            spelt_out: None,
            keep,
        });
    }
    let distinct: std::collections::HashSet<&(Kind, String)> = named.iter().collect();
    let count = distinct.len();
    let kept = fetch(store, scope, named).await?;
    let foreign = kept.values().any(|record| record["upstream"] != provider);
    let all_kept = kept.len() == count;
    if !foreign && !all_kept {
        // The upstream's own history, not all of it kept here: it cannot be spelt out later,
        // so its response is not kept either.
        return Ok(ForNative {
            spelt_out: None,
            keep: None,
        });
    }
    let mut body: Value = serde_json::from_slice(&request.body)
        .map_err(|e| ApiError::invalid(format!("invalid request: {e}"), None))?;
    let mut input = spell_out(&mut body, &kept)?;
    let keep = request.keep.then(|| KeptInput::Items(input.clone()));
    if !foreign {
        return Ok(ForNative {
            spelt_out: None,
            keep,
        });
    }
    // Another upstream's item ids and reasoning (encrypted for it alone) mean nothing here.
    input.retain(|item| item["type"] != "reasoning");
    for item in &mut input {
        if let Some(fields) = item.as_object_mut() {
            fields.remove("id");
        }
    }
    body["input"] = Value::Array(input);
    Ok(ForNative {
        spelt_out: Some(body),
        keep,
    })
}

fn missing(what: &str, id: &str, param: &str) -> ApiError {
    let shown: String = id.chars().take(64).collect();
    ApiError::invalid(
        format!(
            "{what} '{shown}' is not kept by this gateway: it expired, belongs to another caller, or was stored with store: false; send the whole conversation in 'input'"
        ),
        Some(param),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn store_with(upstream: Option<&str>) -> (ResponseStore, Value) {
        let store = ResponseStore::in_memory(Duration::from_secs(60), 1 << 20);
        let call = json!({"type": "function_call", "id": "fc_1", "call_id": "c1", "name": "f", "arguments": "{}"});
        let response = json!({"id": "resp_1", "output": [call.clone()]});
        let input = vec![json!({"role": "user", "content": "hi"})];
        store.put("alice", input, &response, upstream);
        (store, call)
    }

    fn request(body: Value) -> ClientRequest {
        ClientRequest::parse_responses(Bytes::from(body.to_string())).unwrap()
    }

    #[tokio::test]
    async fn a_continuation_is_spelt_out_and_unknown_names_are_refused() {
        let (store, call) = store_with(None);
        let mut request = json!({"model": "m", "previous_response_id": "resp_1",
            "input": [{"type": "function_call_output", "call_id": "c1", "output": "ok"}]});
        let input = expand(&mut request, &store, "alice").await.unwrap();
        assert_eq!(input.len(), 3);
        assert_eq!(input[1], call);
        assert!(request.get("previous_response_id").is_none());
        assert_eq!(request["input"], Value::Array(input));

        let mut referring =
            json!({"model": "m", "input": [{"type": "item_reference", "id": "fc_1"}]});
        let input = expand(&mut referring, &store, "alice").await.unwrap();
        assert_eq!(input, vec![call]);

        let mut stranger = json!({"model": "m", "previous_response_id": "resp_1", "input": "x"});
        let error = expand(&mut stranger, &store, "bob").await.unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidRequest { param: Some(p), .. } if p == "previous_response_id")
        );
    }

    #[tokio::test]
    async fn a_responses_upstream_gets_its_own_continuations_as_sent_and_others_spelt_out() {
        let continues = json!({"model": "m", "previous_response_id": "resp_1", "input": "and?"});
        let (own, _) = store_with(Some("openai"));
        let sent = for_native(&request(continues.clone()), &own, "alice", "openai").await;
        let sent = sent.unwrap();
        assert!(sent.spelt_out.is_none(), "the upstream keeps its own");
        let kept = sent.keep.unwrap().into_items();
        assert_eq!(
            kept.len(),
            3,
            "the whole conversation is kept for a later fallback"
        );

        let elsewhere = for_native(&request(continues.clone()), &own, "alice", "azure").await;
        let body = elsewhere.unwrap().spelt_out.unwrap();
        assert!(body.get("previous_response_id").is_none());
        assert_eq!(body["input"][1]["call_id"], "c1");
        assert!(
            body["input"][1].get("id").is_none(),
            "another upstream's ids go"
        );

        let (translated, _) = store_with(None);
        let sent = for_native(&request(continues.clone()), &translated, "alice", "openai").await;
        assert!(
            sent.unwrap().spelt_out.is_some(),
            "gateway ids mean nothing upstream"
        );

        let unknown = for_native(&request(continues), &own, "bob", "openai")
            .await
            .unwrap();
        assert!(unknown.spelt_out.is_none() && unknown.keep.is_none());

        let fresh = request(json!({"model": "m", "input": "hi"}));
        let fresh = for_native(&fresh, &own, "alice", "openai").await.unwrap();
        let kept = fresh.keep.unwrap().into_items();
        assert_eq!(kept, vec![json!({"role": "user", "content": "hi"})]);
    }
}
