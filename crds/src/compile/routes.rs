//! RoutePolicy → CompiledRoute: target resolution, catalogue checks, fallback graph.

use std::collections::{BTreeMap, BTreeSet};

use super::{ConfigError, namespace_of, object_id};
use crate::compiled::{CompiledProvider, CompiledRoute, CompiledTarget};
use crate::route_policy::{MODEL_NAME_PATTERN, Route, RoutePolicy, Strategy};

const KIND: &str = "RoutePolicy";

/// Compiles every route of every policy, then checks the fallback graph across them.
pub(super) fn compile(
    policies: &[RoutePolicy],
    providers: &[CompiledProvider],
    errors: &mut Vec<ConfigError>,
) -> BTreeMap<String, CompiledRoute> {
    let index: BTreeMap<&str, usize> = providers
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.as_str(), i))
        .collect();
    let mut routes: BTreeMap<String, CompiledRoute> = BTreeMap::new();
    let mut fallback_fields: BTreeMap<String, (String, String)> = BTreeMap::new();
    for policy in policies {
        let id = object_id(policy);
        for (i, route) in policy.spec.routes.iter().enumerate() {
            let field = format!("spec.routes[{i}]");
            let mut fail = |sub: &str, message: String| {
                errors.push(ConfigError {
                    kind: KIND,
                    object: id.clone(),
                    field: format!("{field}{sub}"),
                    message,
                });
            };
            let Some(compiled) = compile_route(policy, route, &index, providers, &mut fail) else {
                continue;
            };
            if let Some(existing) = routes.get(&route.model) {
                fail(
                    ".model",
                    format!(
                        "model {:?} is already routed by RoutePolicy {}",
                        route.model, existing.policy
                    ),
                );
                continue;
            }
            fallback_fields.insert(
                route.model.clone(),
                (id.clone(), format!("{field}.fallbacks")),
            );
            routes.insert(route.model.clone(), compiled);
        }
    }
    check_fallbacks(&routes, &fallback_fields, errors);
    routes
}

fn compile_route(
    policy: &RoutePolicy,
    route: &Route,
    index: &BTreeMap<&str, usize>,
    providers: &[CompiledProvider],
    fail: &mut dyn FnMut(&str, String),
) -> Option<CompiledRoute> {
    if !is_valid_model_name(&route.model) {
        fail(
            ".model",
            format!("{:?} does not match {MODEL_NAME_PATTERN}", route.model),
        );
        return None;
    }
    if route.targets.is_empty() {
        fail(".targets", "at least one target is required".to_owned());
        return None;
    }
    if route.strategy == Strategy::Weighted && route.targets.iter().all(|t| t.weight == 0) {
        fail(
            ".targets",
            "a weighted route needs at least one target with weight > 0".to_owned(),
        );
    }
    if let Some(backoff) = policy.spec.retry.as_ref().map(|r| &r.backoff)
        && backoff.base > backoff.max
    {
        fail(".retry.backoff", "base must not exceed max".to_owned());
    }
    let ns = namespace_of(policy);
    let mut targets = Vec::with_capacity(route.targets.len());
    for (t, target) in route.targets.iter().enumerate() {
        let provider_id = format!("{ns}/{}", target.provider);
        let Some(&provider) = index.get(provider_id.as_str()) else {
            fail(
                &format!(".targets[{t}].provider"),
                format!("LlmProvider {provider_id} not found"),
            );
            continue;
        };
        let upstream_model = target.model.clone().unwrap_or_else(|| route.model.clone());
        let listed = &providers[provider].listed_models;
        if !listed.is_empty() && !listed.contains(&upstream_model) {
            fail(
                &format!(".targets[{t}].model"),
                format!(
                    "LlmProvider {provider_id} does not list model {upstream_model:?} in spec.models"
                ),
            );
            continue;
        }
        let circuit_breaker = policy
            .spec
            .circuit_breaker
            .clone()
            .unwrap_or_else(|| providers[provider].circuit_breaker.clone());
        targets.push(CompiledTarget {
            provider,
            upstream_model,
            weight: target.weight,
            circuit_breaker,
        });
    }
    Some(CompiledRoute {
        model: route.model.clone(),
        policy: object_id(policy),
        strategy: route.strategy,
        cache_affinity: route.cache_affinity,
        targets,
        fallbacks: route.fallbacks.clone(),
        retry: policy.spec.retry.clone(),
        timeout: policy.spec.timeout,
        limits: policy.spec.limits.clone(),
        capture_content: policy.spec.capture_content,
    })
}

/// Every fallback names an existing route, and following fallbacks never loops.
fn check_fallbacks(
    routes: &BTreeMap<String, CompiledRoute>,
    fields: &BTreeMap<String, (String, String)>,
    errors: &mut Vec<ConfigError>,
) {
    for (model, route) in routes {
        let (object, field) = &fields[model];
        let mut fail = |message: String| {
            errors.push(ConfigError {
                kind: KIND,
                object: object.clone(),
                field: field.clone(),
                message,
            });
        };
        for fallback in &route.fallbacks {
            if !routes.contains_key(fallback) {
                fail(format!("fallback {fallback:?} is not a routed model"));
            }
        }
        if let Some(cycle) = find_cycle(model, routes) {
            fail(format!("fallbacks form a cycle: {}", cycle.join(" -> ")));
        }
    }
}

/// Depth-first search for a path of fallbacks from `start` back to `start`.
fn find_cycle(start: &str, routes: &BTreeMap<String, CompiledRoute>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        start: &str,
        routes: &'a BTreeMap<String, CompiledRoute>,
        path: &mut Vec<&'a str>,
        seen: &mut BTreeSet<&'a str>,
    ) -> bool {
        let Some(route) = routes.get(node) else {
            return false;
        };
        for next in &route.fallbacks {
            if next == start {
                path.push(next);
                return true;
            }
            if seen.insert(next) {
                path.push(next);
                if visit(next, start, routes, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start];
    let mut seen = BTreeSet::new();
    visit(start, start, routes, &mut path, &mut seen)
        .then(|| path.iter().map(|s| (*s).to_owned()).collect())
}

fn is_valid_model_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "._:/@+-".contains(c))
        && name.len() <= 256
}
