//! ApiKey rotation by annotation: setting `llmgateway.io/rotate` to a new value (any token,
//! e.g. a date) makes the operator generate a new key, keep the old one as `previousApiKey`
//! until `llmgateway.io/rotation-grace` (default 24h) has passed, and then drop it. The Secret
//! remembers the token it rotated for, so a rotation happens once per token, restarts
//! included.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::ResourceExt;
use llm_gateway_crds::api_key::{
    ApiKey, SECRET_KEY_FIELD, SECRET_PREVIOUS_EXPIRES_FIELD, SECRET_PREVIOUS_KEY_FIELD,
};
use serde_json::{Value, json};

/// Annotation whose new value asks for a rotation.
pub const ROTATE: &str = "llmgateway.io/rotate";
/// Annotation with the grace period of the old key, e.g. `24h`.
pub const GRACE: &str = "llmgateway.io/rotation-grace";
/// Secret annotation: the `ROTATE` value already handled.
pub const ROTATED_FOR: &str = "llmgateway.io/rotated-for";
/// Grace period when none is annotated.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(24 * 3600);

/// What the Secret needs now.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Generate a new key for this token; the old one works for `grace`.
    Rotate {
        /// The annotation value being handled.
        token: String,
        /// How long the old key keeps working.
        grace: Duration,
    },
    /// The old key's grace period is over: forget it.
    EndGrace,
}

/// The rotation work `secret` needs for `key` at `now`, if any.
pub fn plan(key: &ApiKey, secret: &Secret, now: Timestamp) -> Option<Plan> {
    if let Some(token) = key.annotations().get(ROTATE) {
        let handled = secret.annotations().get(ROTATED_FOR);
        if handled != Some(token) {
            let grace = key
                .annotations()
                .get(GRACE)
                .and_then(|g| humantime::parse_duration(g).ok())
                .unwrap_or(DEFAULT_GRACE);
            return Some(Plan::Rotate {
                token: token.clone(),
                grace,
            });
        }
    }
    let until = previous_expiry(secret)?;
    (until <= now).then_some(Plan::EndGrace)
}

/// When the previous key stops working, if there is one.
pub fn previous_expiry(secret: &Secret) -> Option<Timestamp> {
    let data = secret.data.as_ref()?;
    data.get(SECRET_PREVIOUS_KEY_FIELD)?;
    let text = String::from_utf8(data.get(SECRET_PREVIOUS_EXPIRES_FIELD)?.0.clone()).ok()?;
    text.trim().parse().ok()
}

/// The merge patch carrying out `plan` (`new_key` is used by a rotation).
pub fn patch(plan: &Plan, secret: &Secret, new_key: &str, now: Timestamp) -> Value {
    match plan {
        Plan::Rotate { token, grace } => {
            let current = secret
                .data
                .as_ref()
                .and_then(|d| d.get(SECRET_KEY_FIELD))
                .and_then(|b| String::from_utf8(b.0.clone()).ok())
                .unwrap_or_default();
            let until = now + SignedDuration::try_from(*grace).unwrap_or(SignedDuration::ZERO);
            json!({
                "metadata": {"annotations": {ROTATED_FOR: token}},
                "stringData": {
                    SECRET_KEY_FIELD: new_key,
                    SECRET_PREVIOUS_KEY_FIELD: current,
                    SECRET_PREVIOUS_EXPIRES_FIELD: until.round(k8s_openapi::jiff::Unit::Second).unwrap_or(until).to_string(),
                },
            })
        }
        Plan::EndGrace => {
            json!({"data": {SECRET_PREVIOUS_KEY_FIELD: null, SECRET_PREVIOUS_EXPIRES_FIELD: null}})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(annotations: Value) -> ApiKey {
        serde_json::from_value(
            json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey",
            "metadata": {"name": "k", "annotations": annotations},
            "spec": {"secretName": "s", "owner": "o"}}),
        )
        .expect("valid ApiKey")
    }

    fn secret(annotations: Value, data: Value) -> Secret {
        serde_json::from_value(
            json!({"metadata": {"name": "s", "annotations": annotations}, "data": data}),
        )
        .expect("valid Secret")
    }

    #[test]
    fn one_rotation_per_token_then_the_grace_ends() {
        let now: Timestamp = "2026-11-27T12:00:00Z".parse().expect("time");
        let fresh = secret(json!({}), json!({"apiKey": "YQ=="}));
        assert_eq!(plan(&key(json!({})), &fresh, now), None);
        let asked = key(json!({ROTATE: "t1", GRACE: "1h"}));
        let step = plan(&asked, &fresh, now).expect("a rotation");
        assert_eq!(
            step,
            Plan::Rotate {
                token: "t1".into(),
                grace: Duration::from_secs(3600)
            }
        );
        let written = patch(&step, &fresh, "new", now);
        assert_eq!(written["stringData"]["previousApiKey"], "a");
        assert_eq!(
            written["stringData"]["previousApiKeyExpiresAt"],
            "2026-11-27T13:00:00Z"
        );
        // "MjAyNi0xMS0yN1QxMzowMDowMFo=" is base64 of the expiry above.
        let rotated = secret(
            json!({ROTATED_FOR: "t1"}),
            json!({"apiKey": "bmV3", "previousApiKey": "YQ==", "previousApiKeyExpiresAt": "MjAyNi0xMS0yN1QxMzowMDowMFo="}),
        );
        assert_eq!(plan(&asked, &rotated, now), None, "handled once");
        let later: Timestamp = "2026-11-27T13:00:01Z".parse().expect("time");
        assert_eq!(plan(&asked, &rotated, later), Some(Plan::EndGrace));
    }
}
