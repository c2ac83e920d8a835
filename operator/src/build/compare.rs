//! Whether a child must be applied: skipping the write when nothing would change is what keeps
//! an idle operator from writing, but "nothing would change" has two halves. The live object
//! must hold every desired value (drift is corrected), and the desired object must be the one
//! last applied: a field dropped from the desired object is still in the live one, so without
//! the second half a removal (a toleration, `spec.redis`) would never reach the cluster.

use serde_json::Value;
use sha2::Digest;

use super::quantity;

/// Annotation holding the digest of the manifest the operator last applied.
pub const APPLIED_HASH: &str = "llmgateway.io/applied-hash";

/// `object` with its digest in [`APPLIED_HASH`] (computed before the annotation is added).
pub fn stamped(object: &Value) -> Value {
    let digest = sha2::Sha256::digest(serde_json::to_vec(object).unwrap_or_default());
    let mut stamped = object.clone();
    stamped["metadata"]["annotations"][APPLIED_HASH] = hex::encode(&digest[..16]).into();
    stamped
}

/// Whether applying `desired` (as [`stamped`]) to `live` would change nothing.
pub fn up_to_date(desired: &Value, live: &Value) -> bool {
    let hash = |v: &Value| {
        v.pointer("/metadata/annotations")
            .and_then(|a| a.get(APPLIED_HASH))
            .cloned()
    };
    hash(desired).is_some() && hash(desired) == hash(live) && is_subset(desired, live)
}

/// Keys under which strings are quantities, which the API server stores canonically
/// (`1024Mi` as `1Gi`, `0.5` as `500m`): compared by value there, and only there (a label
/// `1.10` is not the label `1.1`).
const QUANTITY_KEYS: [&str; 5] = [
    "requests",
    "limits",
    "sizeLimit",
    "averageValue",
    "overhead",
];

/// Whether every field of `desired` has the same value in `live`. Extra live fields (defaults,
/// status) are fine, and so is a missing live field where the desired value is empty (the API
/// server omits empty maps, lists and strings on read).
pub fn is_subset(desired: &Value, live: &Value) -> bool {
    subset(desired, live, false)
}

fn subset(desired: &Value, live: &Value, quantities: bool) -> bool {
    match (desired, live) {
        (Value::Object(d), Value::Object(l)) => d.iter().all(|(key, value)| match l.get(key) {
            Some(live) => subset(
                value,
                live,
                quantities || QUANTITY_KEYS.contains(&key.as_str()),
            ),
            None => is_empty(value),
        }),
        (Value::Array(d), Value::Array(l)) => {
            d.len() == l.len() && d.iter().zip(l).all(|(a, b)| subset(a, b, quantities))
        }
        (Value::String(d), Value::String(l)) => d == l || (quantities && quantity::same(d, l)),
        (d, l) => d == l,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_removed_field_is_a_change_even_though_the_live_object_still_has_it() {
        let before = stamped(&json!({"metadata": {"name": "a"}, "spec": {"x": 1, "y": 2}}));
        let removed = json!({"metadata": {"name": "a"}, "spec": {"x": 1}});
        let live = before.clone();
        assert!(up_to_date(&before, &live));
        assert!(is_subset(&removed, &live), "the old check saw no change");
        assert!(!up_to_date(&stamped(&removed), &live));
        let mut drifted = before.clone();
        drifted["spec"]["x"] = json!(5);
        assert!(!up_to_date(&before, &drifted), "drift is still corrected");
    }

    #[test]
    fn quantities_compare_by_value_only_where_they_are_quantities() {
        let desired =
            json!({"resources": {"limits": {"memory": "1024Mi"}}, "labels": {"v": "1.10"}});
        let live = json!({"resources": {"limits": {"memory": "1Gi"}}, "labels": {"v": "1.10"}});
        assert!(is_subset(&desired, &live));
        let relabelled =
            json!({"resources": {"limits": {"memory": "1Gi"}}, "labels": {"v": "1.1"}});
        assert!(!is_subset(&desired, &relabelled), "a label is text");
    }

    #[test]
    fn empty_desired_values_match_what_the_server_omits() {
        let desired =
            json!({"metadata": {"annotations": {}}, "spec": {"list": [], "s": "", "n": null}});
        assert!(is_subset(&desired, &json!({"metadata": {}, "spec": {}})));
        assert!(!is_subset(&json!({"spec": {"k": 0}}), &json!({"spec": {}})));
    }
}
