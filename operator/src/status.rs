//! Status writes as JSON merge patches that also clear what the new status no longer has:
//! a plain `{"status": desired}` merge patch would leave fields the desired status omits
//! (an old `keyHash`, resolved `unresolvedProviders`) in place.

use serde::Serialize;
use serde_json::{Value, json};

/// The merge patch turning the stored status `current` into `desired`.
pub fn patch<S: Serialize>(current: Option<&S>, desired: &S) -> Value {
    let mut desired = serde_json::to_value(desired).unwrap_or_else(|_| json!({}));
    let current = current
        .and_then(|c| serde_json::to_value(c).ok())
        .unwrap_or_else(|| json!({}));
    if let (Some(current), Some(desired)) = (current.as_object(), desired.as_object_mut()) {
        for key in current.keys() {
            desired.entry(key.clone()).or_insert(Value::Null);
        }
    }
    json!({"status": desired})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_fields_become_nulls() {
        let current = json!({"keyHash": "h", "keyId": "i", "observedGeneration": 1});
        let desired = json!({"observedGeneration": 2, "keyId": "j"});
        assert_eq!(
            patch(Some(&current), &desired),
            json!({"status": {"observedGeneration": 2, "keyId": "j", "keyHash": null}})
        );
    }
}
