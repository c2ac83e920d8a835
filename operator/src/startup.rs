//! Startup checks: the cluster answers, the CRDs are installed, and the operator may read
//! what it watches in every namespace it was given (a namespace whose Role is missing would
//! otherwise keep its caches unfilled forever, and with them every replica unready).

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_crds::route_policy::RoutePolicy;

use crate::context::Scope;

/// The scopes `WATCH_NAMESPACES` names (deduplicated), or the whole cluster.
pub fn scopes(namespaces: &str) -> Vec<Scope> {
    let mut names: Vec<&str> = namespaces
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        return vec![Scope::Cluster];
    }
    names
        .into_iter()
        .map(|n| Scope::Namespace(n.to_owned()))
        .collect()
}

/// A client of the configured cluster, once the API server answers, the CRDs are installed
/// and every kind the caches watch can be listed in every scope.
pub async fn check_cluster(scopes: &[Scope]) -> anyhow::Result<kube::Client> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes cluster configured ({e}); run in a pod with a service account, or set \
             KUBECONFIG"
        )
    })?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("the Kubernetes API server is not reachable: {e}"))?;
    let first = scopes.first().unwrap_or(&Scope::Cluster);
    first
        .api::<LlmProvider>(&client)
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the llmgateway.io CRDs are not installed ({e}); install the llm-gateway-crds \
                 chart or apply crds/yaml/ first"
            )
        })?;
    for scope in scopes {
        readable(&client, scope).await?;
    }
    tracing::info!(kubernetes = %version.git_version, "connected; llmgateway.io CRDs are installed");
    Ok(client)
}

/// Fails naming the scope and kind the operator may not list.
async fn readable(client: &kube::Client, scope: &Scope) -> anyhow::Result<()> {
    let one = ListParams::default().limit(1);
    let refused = |kind: &str, e: kube::Error| {
        let place = match scope {
            Scope::Cluster => "cluster-wide".to_owned(),
            Scope::Namespace(namespace) => format!("in namespace {namespace}"),
        };
        anyhow::anyhow!(
            "cannot list {kind} {place} ({e}); check the operator's RBAC there, and that the \
             llm-gateway-crds chart is as new as the operator"
        )
    };
    scope
        .api::<LlmProvider>(client)
        .list(&one)
        .await
        .map_err(|e| refused("LlmProviders", e))?;
    scope
        .api::<RoutePolicy>(client)
        .list(&one)
        .await
        .map_err(|e| refused("RoutePolicies", e))?;
    scope
        .api::<ApiKey>(client)
        .list(&one)
        .await
        .map_err(|e| refused("ApiKeys", e))?;
    scope
        .api::<llm_gateway_crds::quota::LlmQuota>(client)
        .list(&one)
        .await
        .map_err(|e| refused("LlmQuotas", e))?;
    scope
        .api::<Secret>(client)
        .list(&one)
        .await
        .map_err(|e| refused("Secrets", e))?;
    Ok(())
}
