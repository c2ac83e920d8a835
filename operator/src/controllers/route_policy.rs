//! RoutePolicy → status from compiling it together with the namespace's providers, the other
//! policies, exactly as a gateway would: unresolved providers, fallback cycles,
//! weight problems and models missing from a provider's catalogue are reported (`Ready=False`
//! with every error), never silently accepted. A provider's changes re-check the policies
//! that target it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::Duration;

use futures_util::StreamExt;
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{WatchStreamExt, predicates, watcher};
use kube::{Resource, ResourceExt};
use llm_gateway_crds::compile::{CompileInputs, ConfigError, compile};
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_crds::manifest::Manifests;
use llm_gateway_crds::route_policy::{RoutePolicy, RoutePolicyStatus};
use tokio::sync::broadcast;

use crate::caches::in_namespace;

use crate::conditions::condition;
use crate::{Context, Error};

const NAME: &str = "routepolicy";

/// Runs the controller until `shutdown` (then lets reconciles in flight finish).
///
/// Both triggers skip status-only writes (the same `metadata.generation`): a policy's own
/// status write and its providers' readiness updates change nothing a policy's compilation
/// depends on, and reconciling on them tripled the work of a burst (the L5 scale test).
pub async fn run(context: Context, shutdown: crate::shutdown::Shutdown) {
    let (reader, writer) = reflector::store();
    let policies = watcher(context.api::<RoutePolicy>(), watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .applied_objects()
        .predicate_filter(predicates::generation, PredicateConfig::default());
    let controller = Controller::for_stream(policies, reader);
    let policies_reader = controller.store();
    controller
        .watches_stream(spec_changes(&context.caches), move |provider| {
            // Only the policies targeting it: a provider's change cannot alter the status
            // of a policy that does not name it.
            let namespace = provider.namespace();
            let name = provider.name_any();
            policies_reader
                .state()
                .iter()
                .filter(|p| p.namespace() == namespace && targets(p, &name))
                .map(|p| ObjectRef::from_obj(p.as_ref()))
                .collect::<Vec<_>>()
        })
        .with_config(super::config(Duration::from_millis(500)))
        .graceful_shutdown_on(shutdown.wait())
        .run(reconcile, super::error_policy, Arc::new(context))
        .for_each(|_| async {})
        .await;
}

/// Providers whose spec changed (a new generation), and every deletion, from the provider
/// cache's own events (so a reconcile never reads a cache older than its trigger). A
/// subscriber that falls behind skips what it missed; not-Ready policies are requeued soon.
fn spec_changes(
    caches: &crate::caches::Caches,
) -> impl futures_util::Stream<Item = Result<LlmProvider, watcher::Error>> + Send + 'static {
    let receiver = caches.provider_events.subscribe();
    let events = futures_util::stream::unfold(receiver, |mut receiver| async move {
        loop {
            match receiver.recv().await {
                Ok(event) => return Some((event, receiver)),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        missed,
                        "provider events missed; policies catch up on requeue"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let mut seen: HashMap<String, Option<i64>> = HashMap::new();
    events.filter_map(move |event| {
        let uid = |p: &LlmProvider| p.uid().unwrap_or_default();
        let out = match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let generation = p.metadata.generation;
                (seen.insert(uid(&p), generation) != Some(generation)).then_some(Ok(p))
            }
            watcher::Event::Delete(p) => {
                seen.remove(&uid(&p));
                Some(Ok(p))
            }
            watcher::Event::Init | watcher::Event::InitDone => None,
        };
        std::future::ready(out)
    })
}

fn targets(policy: &RoutePolicy, provider: &str) -> bool {
    policy
        .spec
        .routes
        .iter()
        .flat_map(|r| &r.targets)
        .any(|t| t.provider == provider)
}

/// One reconcile of one RoutePolicy.
pub async fn reconcile(policy: Arc<RoutePolicy>, context: Arc<Context>) -> Result<Action, Error> {
    super::timed(NAME, &context, &*policy, reconcile_inner(&policy, &context)).await
}

async fn reconcile_inner(policy: &RoutePolicy, context: &Context) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_else(|| "default".to_owned());
    let caches = &context.caches;
    // Secrets are not needed: a missing credential makes a provider unavailable, which is the
    // provider's status to report, never a routing error.
    let mut route_policies = in_namespace(&caches.route_policies, &namespace);
    // The object being reconciled may be newer than the cache.
    route_policies.retain(|p| p.name_any() != policy.name_any());
    route_policies.push(policy.clone());
    route_policies.sort_by_key(ResourceExt::name_any);
    let manifests = Manifests {
        providers: in_namespace(&caches.providers, &namespace),
        route_policies,
        ..Manifests::default()
    };
    let desired = desired_status(policy, &manifests);
    crate::status::update(
        context,
        policy,
        policy.status.as_ref(),
        &desired,
        |s: &RoutePolicyStatus| &s.conditions,
    )
    .await?;
    // A policy that does not compile is looked at again soon (cheap: the namespace's compile
    // is cached until something changes), a safety net for a missed provider event.
    let ready = desired
        .conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    Ok(Action::requeue(Duration::from_secs(if ready {
        600
    } else {
        30
    })))
}

/// Every error of compiling the namespace's providers and policies. Every policy of a
/// namespace is reconciled after any provider change, against the same objects: one compile
/// serves them all, keyed by the objects' resourceVersions.
fn namespace_errors(manifests: &Manifests) -> Arc<Vec<ConfigError>> {
    type Cache = Mutex<HashMap<String, (u64, Arc<Vec<ConfigError>>)>>;
    static CACHE: LazyLock<Cache> = LazyLock::new(Default::default);
    let fingerprint = fingerprint(manifests);
    let namespace = manifests
        .route_policies
        .first()
        .and_then(ResourceExt::namespace)
        .unwrap_or_default();
    if let Some(fingerprint) = fingerprint {
        let cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((seen, errors)) = cache.get(&namespace)
            && *seen == fingerprint
        {
            return Arc::clone(errors);
        }
    }
    // Credentials from the gateway's environment cannot be checked here; treat them as set.
    let env = |_: &str| Some(String::new());
    let inputs = CompileInputs {
        env: &env,
        key_pepper: b"",
        admitted: true,
    };
    let errors = Arc::new(compile(manifests, &inputs).err().unwrap_or_default());
    if let Some(fingerprint) = fingerprint {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        cache.insert(namespace, (fingerprint, Arc::clone(&errors)));
    }
    errors
}

/// Identity and resourceVersion of every object; `None` when one has no resourceVersion
/// (objects not read from an API server are never cached).
fn fingerprint(manifests: &Manifests) -> Option<u64> {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for provider in &manifests.providers {
        (provider.name_any(), provider.resource_version()?).hash(&mut hasher);
    }
    for policy in &manifests.route_policies {
        (policy.name_any(), policy.resource_version()?).hash(&mut hasher);
    }
    Some(hasher.finish())
}

/// The status of `policy` given everything else in its namespace.
pub fn desired_status(policy: &RoutePolicy, manifests: &Manifests) -> RoutePolicyStatus {
    let current = policy.status.clone().unwrap_or_default();
    let generation = policy.meta().generation;
    let id = format!(
        "{}/{}",
        policy.namespace().unwrap_or_else(|| "default".to_owned()),
        policy.name_any()
    );
    let errors: Vec<ConfigError> = namespace_errors(manifests)
        .iter()
        .filter(|e| e.kind == "RoutePolicy" && e.object == id)
        .cloned()
        .collect();
    let known: Vec<String> = manifests
        .providers
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    let mut unresolved: Vec<String> = policy
        .spec
        .routes
        .iter()
        .flat_map(|r| &r.targets)
        .map(|t| t.provider.clone())
        .filter(|p| !known.contains(p))
        .collect();
    unresolved.sort();
    unresolved.dedup();
    let (ok, reason, message) = if errors.is_empty() {
        (
            true,
            "Compiled",
            format!("{} route(s) compiled", policy.spec.routes.len()),
        )
    } else {
        let mut message: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        message.sort();
        let mut text = message.join("; ");
        text.truncate(2000);
        (false, "InvalidRoutes", text)
    };
    RoutePolicyStatus {
        observed_generation: generation,
        unresolved_providers: unresolved,
        conditions: vec![condition(
            &current.conditions,
            "Ready",
            ok,
            reason,
            message,
            generation,
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifests(yaml: &str) -> Manifests {
        let mut m = Manifests::default();
        m.add_yaml("test.yaml", yaml).expect("valid manifests");
        m
    }

    #[test]
    fn unresolved_providers_and_cycles_are_reported() {
        let m = manifests(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: fake}\nspec: {type: fake}\n---\n\
             apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: r}\nspec:\n  routes:\n\
             \x20 - {model: a, targets: [{provider: fake}], fallbacks: [b]}\n\
             \x20 - {model: b, targets: [{provider: missing}], fallbacks: [a]}\n",
        );
        let status = desired_status(&m.route_policies[0], &m);
        assert_eq!(status.unresolved_providers, ["missing"]);
        assert_eq!(status.conditions[0].reason, "InvalidRoutes");
        assert!(
            status.conditions[0].message.contains("missing"),
            "{}",
            status.conditions[0].message
        );
        let good = manifests(
            "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: fake}\nspec: {type: fake}\n---\n\
             apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: r}\nspec:\n  routes:\n\
             \x20 - {model: a, targets: [{provider: fake}]}\n",
        );
        let status = desired_status(&good.route_policies[0], &good);
        assert_eq!(status.conditions[0].status, "True");
        assert!(status.unresolved_providers.is_empty());
    }
}
