//! Request paths: which resource type, namespace, object and subresource a path names.

use crate::resources::ResourceType;
use crate::status::ApiError;

/// What a resource path addresses.
#[derive(Debug, Clone)]
pub struct Target {
    /// The resource type.
    pub rtype: ResourceType,
    /// Namespace from the path (`None`: cluster-scoped, or all namespaces).
    pub namespace: Option<String>,
    /// Object name (`None`: the collection).
    pub name: Option<String>,
    /// Whether the path ends in `/status`.
    pub status: bool,
}

/// Resolves `/api/v1/...` and `/apis/{group}/{version}/...` against the served types.
pub fn resolve(path: &str, types: &[ResourceType]) -> Result<Target, ApiError> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_resource(path)),
    };
    let find = |plural: &str| {
        types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
            .cloned()
            .ok_or_else(|| ApiError::no_resource(path))
    };
    let target = |rtype, namespace: Option<&str>, name: Option<&str>, status| Target {
        rtype,
        namespace: namespace.map(str::to_owned),
        name: name.map(str::to_owned),
        status,
    };
    let namespaced = |plural: &str| types.iter().any(|t| t.plural == plural && t.namespaced);
    Ok(match rest {
        ["namespaces", ns, plural] if namespaced(plural) => {
            target(find(plural)?, Some(ns), None, false)
        }
        ["namespaces", ns, plural, name] => target(find(plural)?, Some(ns), Some(name), false),
        ["namespaces", ns, plural, name, "status"] => {
            target(find(plural)?, Some(ns), Some(name), true)
        }
        [plural] => target(find(plural)?, None, None, false),
        [plural, name] => target(find(plural)?, None, Some(name), false),
        [plural, name, "status"] => target(find(plural)?, None, Some(name), true),
        _ => return Err(ApiError::no_resource(path)),
    })
}
