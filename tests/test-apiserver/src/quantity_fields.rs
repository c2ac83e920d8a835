//! Where built-in kinds hold resource quantities, and their canonicalisation on write (the API
//! server decodes every Quantity and writes it back canonically, see [`crate::quantity`]).
//!
//! The places are listed by hand, from the k8s-openapi types of the kinds this server stores
//! (a Quantity is a plain string newtype there, so the types cannot point them out).

use serde_json::Value;

use crate::status::ApiError;

/// Quantity fields of a pod spec, relative to it. `*` is every item of a list or every value
/// of a map.
const POD_SPEC: &[&str] = &[
    "containers.*.resources.requests.*",
    "containers.*.resources.limits.*",
    "containers.*.env.*.valueFrom.resourceFieldRef.divisor",
    "initContainers.*.resources.requests.*",
    "initContainers.*.resources.limits.*",
    "initContainers.*.env.*.valueFrom.resourceFieldRef.divisor",
    "ephemeralContainers.*.resources.requests.*",
    "ephemeralContainers.*.resources.limits.*",
    "resources.requests.*",
    "resources.limits.*",
    "overhead.*",
    "volumes.*.emptyDir.sizeLimit",
    "volumes.*.downwardAPI.items.*.resourceFieldRef.divisor",
    "volumes.*.projected.sources.*.downwardAPI.items.*.resourceFieldRef.divisor",
    "volumes.*.ephemeral.volumeClaimTemplate.spec.resources.requests.*",
    "volumes.*.ephemeral.volumeClaimTemplate.spec.resources.limits.*",
];

/// Quantity fields of an autoscaling/v2 HorizontalPodAutoscaler.
const HPA: &[&str] = &[
    "spec.metrics.*.*.target.value",
    "spec.metrics.*.*.target.averageValue",
    "spec.behavior.scaleUp.tolerance",
    "spec.behavior.scaleDown.tolerance",
    "status.currentMetrics.*.*.current.value",
    "status.currentMetrics.*.*.current.averageValue",
];

/// Rewrites every quantity of a built-in `kind` in its canonical form; a malformed one is the
/// 400 a real server answers while decoding the body.
pub fn canonicalise(kind: &str, api_version: &str, object: &mut Value) -> Result<(), ApiError> {
    let patterns: Vec<String> = match kind {
        "Deployment" => POD_SPEC
            .iter()
            .map(|p| format!("spec.template.spec.{p}"))
            .collect(),
        "HorizontalPodAutoscaler" if api_version == "autoscaling/v2" => {
            HPA.iter().map(|p| (*p).to_owned()).collect()
        }
        _ => return Ok(()),
    };
    for pattern in &patterns {
        let segments: Vec<&str> = pattern.split('.').collect();
        visit(object, &segments, String::new(), &mut |value, path| {
            rewrite(value).map_err(|message| {
                ApiError::bad_request(format!(
                    "{kind} in version \"{}\" cannot be handled as a {kind}: {path}: {message}",
                    api_version.rsplit('/').next().unwrap_or(api_version)
                ))
            })
        })?;
    }
    Ok(())
}

/// Calls `f` on every value `segments` reach from `value` (with its dotted path).
fn visit<E>(
    value: &mut Value,
    segments: &[&str],
    path: String,
    f: &mut impl FnMut(&mut Value, &str) -> Result<(), E>,
) -> Result<(), E> {
    let Some((first, rest)) = segments.split_first() else {
        return f(value, &path);
    };
    match (*first, value) {
        ("*", Value::Array(items)) => {
            for (i, item) in items.iter_mut().enumerate() {
                visit(item, rest, format!("{path}[{i}]"), f)?;
            }
        }
        ("*", Value::Object(map)) => {
            for (key, child) in map.iter_mut() {
                visit(child, rest, join(&path, key), f)?;
            }
        }
        (key, Value::Object(map)) => {
            if let Some(child) = map.get_mut(key) {
                visit(child, rest, join(&path, key), f)?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// One quantity, given as a string or (as YAML allows, and Go accepts) a bare number.
fn rewrite(value: &mut Value) -> Result<(), String> {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Number(number) => number.to_string(),
        Value::Null => return Ok(()),
        other => return Err(format!("invalid type for a quantity: {other}")),
    };
    *value = Value::String(crate::quantity::canonical(&text)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::canonicalise;

    #[test]
    fn deployment_resources_and_volume_limits_are_canonical() {
        let mut deployment = json!({"spec": {"template": {"spec": {
            "containers": [{"name": "a", "resources": {
                "requests": {"cpu": 0.5, "memory": "1024Mi"},
                "limits": {"cpu": "1000m", "memory": "2000Mi"}}}],
            "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1024Ki"}}]}}}});
        canonicalise("Deployment", "apps/v1", &mut deployment).unwrap();
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(
            pod["containers"][0]["resources"],
            json!({"requests": {"cpu": "500m", "memory": "1Gi"},
                   "limits": {"cpu": "1", "memory": "2000Mi"}})
        );
        assert_eq!(pod["volumes"][0]["emptyDir"]["sizeLimit"], "1Mi");
    }

    #[test]
    fn hpa_targets_are_canonical_and_bad_quantities_are_400() {
        let mut hpa = json!({"spec": {"metrics": [
            {"type": "Pods", "pods": {"target": {"type": "AverageValue", "averageValue": "1000m"}}}]}});
        canonicalise("HorizontalPodAutoscaler", "autoscaling/v2", &mut hpa).unwrap();
        assert_eq!(
            hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"],
            "1"
        );
        let mut bad = json!({"spec": {"template": {"spec": {
            "containers": [{"resources": {"limits": {"memory": "1GB"}}}]}}}});
        let error = canonicalise("Deployment", "apps/v1", &mut bad).unwrap_err();
        assert_eq!(error.code, 400);
        assert!(
            error
                .message
                .contains("spec.template.spec.containers[0].resources.limits.memory"),
            "{}",
            error.message
        );
    }
}
