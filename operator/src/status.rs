//! Status writes as JSON merge patches that also clear what the new status no longer has:
//! a plain `{"status": desired}` merge patch would leave fields the desired status omits
//! (an old `keyHash`, resolved `unresolvedProviders`) in place.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
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
        // Only what changed: a field another writer owns (the usage sync's `usage`) is never
        // sent back with the value this reconcile happened to read.
        desired.retain(|key, value| current.get(key) != Some(value));
    }
    json!({"status": desired})
}

/// Writes `desired` as the status of `object` (whose stored status is `current`) unless they
/// are equal, and records an Event when the `Ready` condition changes status or reason.
pub async fn update<K, S>(
    context: &crate::Context,
    object: &K,
    current: Option<&S>,
    desired: &S,
    conditions: impl Fn(&S) -> &[Condition],
) -> Result<(), crate::Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize + PartialEq,
{
    if current == Some(desired) {
        return Ok(());
    }
    let namespace = object
        .meta()
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let name = object.meta().name.clone().unwrap_or_default();
    let api: kube::Api<K> = kube::Api::namespaced(context.client.clone(), &namespace);
    let body = kube::api::Patch::Merge(patch(current, desired));
    api.patch_status(&name, &kube::api::PatchParams::default(), &body)
        .await?;
    let ready = |s: &S| {
        conditions(s)
            .iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let before = current.and_then(ready);
    if let Some((status, reason, message)) = ready(desired)
        && before.as_ref().map(|(s, r, _)| (s, r)) != Some((&status, &reason))
    {
        context
            .event(object, status == "True", &reason, &message)
            .await;
    }
    Ok(())
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
        let unchanged = json!({"usage": {"requests": 1}, "keyId": "i"});
        let desired = json!({"usage": {"requests": 1}, "keyId": "j"});
        assert_eq!(
            patch(Some(&unchanged), &desired),
            json!({"status": {"keyId": "j"}}),
            "fields equal to the stored ones are not sent"
        );
    }
}
