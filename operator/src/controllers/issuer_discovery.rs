//! The ClusterRoleBinding that lets a gateway read the cluster's service-account issuer
//! (`/.well-known/openid-configuration`, `/openid/v1/jwks`) to verify ServiceAccount callers:
//! the built-in `system:service-account-issuer-discovery` ClusterRole, bound to the gateway's
//! own ServiceAccount and to nothing else, while its LlmGateway reads those keys from the API
//! server (`spec.auth.serviceAccounts` without `jwksUri`).
//!
//! A cluster-scoped object cannot be owned by a namespaced LlmGateway, so the garbage
//! collector never removes it: the reconcile deletes one its gateway stops needing, and a
//! sweep (at start, then every minute) deletes those of gateways that no longer exist. The
//! bindings this process knows of (listed by the sweep, or written) are remembered, so a
//! gateway without ServiceAccount callers costs no request. Only a cluster-wide
//! operator writes them: a namespaced one has no cluster permissions (`docs/service-accounts.md`
//! gives the binding to create by hand).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};
use llm_gateway_crds::llm_gateway::LlmGateway;

use crate::build::gateway::workload_name;
use crate::{Error, MANAGED_BY};

/// The built-in ClusterRole allowing `get` on the issuer's discovery document and JWKS.
pub const ROLE: &str = "system:service-account-issuer-discovery";

/// Marks the bindings this module writes (the sweep lists them by it).
const LABEL: &str = "llmgateway.io/issuer-discovery";

/// Names the LlmGateway (`namespace/name`) a binding serves.
const GATEWAY_ANNOTATION: &str = "llmgateway.io/gateway";

/// How often bindings of deleted gateways are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// The bindings known to exist: listed by the last sweep, or written since.
static KNOWN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn known() -> std::sync::MutexGuard<'static, BTreeSet<String>> {
    KNOWN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether `gateway`'s pods read the issuer from the API server.
pub fn needed(gateway: &LlmGateway) -> bool {
    let accounts = gateway.spec.auth.service_accounts.as_ref();
    accounts.is_some_and(|a| a.jwks_uri.is_none())
}

/// The binding's name: one per gateway.
pub fn name(gateway: &LlmGateway) -> String {
    let namespace = gateway.namespace().unwrap_or_else(|| "default".to_owned());
    format!(
        "llm-gateway:{namespace}:{}:issuer-discovery",
        gateway.name_any()
    )
}

fn gateway_id(gateway: &LlmGateway) -> String {
    let namespace = gateway.namespace().unwrap_or_else(|| "default".to_owned());
    format!("{namespace}/{}", gateway.name_any())
}

/// The binding `gateway` needs.
pub fn binding(gateway: &LlmGateway) -> ClusterRoleBinding {
    let namespace = gateway.namespace().unwrap_or_else(|| "default".to_owned());
    ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(name(gateway)),
            labels: Some(BTreeMap::from([
                (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
                (LABEL.to_owned(), "true".to_owned()),
            ])),
            annotations: Some(BTreeMap::from([(
                GATEWAY_ANNOTATION.to_owned(),
                gateway_id(gateway),
            )])),
            ..ObjectMeta::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "ClusterRole".to_owned(),
            name: ROLE.to_owned(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: workload_name(gateway),
            namespace: Some(namespace),
            ..Subject::default()
        }]),
    }
}

/// Writes the binding when `gateway` needs it and it is missing or differs; deletes a known
/// one it no longer needs.
pub async fn converge(client: &kube::Client, gateway: &LlmGateway) -> Result<(), Error> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let name = name(gateway);
    if !needed(gateway) {
        if known().contains(&name) {
            delete(&api, &name).await?;
        }
        return Ok(());
    }
    let desired = binding(gateway);
    let live = api.get_opt(&name).await?;
    let current = live.as_ref().is_some_and(|live| {
        live.role_ref == desired.role_ref
            && live.subjects == desired.subjects
            && live.annotations().get(GATEWAY_ANNOTATION) == Some(&gateway_id(gateway))
            && live.labels().get(LABEL).map(String::as_str) == Some("true")
    });
    if !current {
        let params = PatchParams::apply(crate::FIELD_MANAGER).force();
        let mut object = serde_json::to_value(&desired).unwrap_or_default();
        object["apiVersion"] = "rbac.authorization.k8s.io/v1".into();
        object["kind"] = "ClusterRoleBinding".into();
        api.patch(&name, &params, &Patch::Apply(&object)).await?;
        known().insert(name.clone());
        tracing::info!(gateway = %gateway_id(gateway), binding = %name, "bound the issuer discovery role");
    }
    Ok(())
}

async fn delete(api: &Api<ClusterRoleBinding>, name: &str) -> Result<(), Error> {
    let deleted = api.delete(name, &DeleteParams::default()).await;
    let gone = match &deleted {
        Ok(_) => true,
        Err(kube::Error::Api(e)) => e.code == 404,
        Err(_) => false,
    };
    if gone {
        known().remove(name);
    }
    match deleted {
        Ok(_) => {
            tracing::info!(binding = %name, "removed an issuer discovery binding no gateway needs");
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Deletes the bindings of gateways that no longer exist or no longer need one (the gateways
/// listed from the API server, not a cache that might not have synced yet).
pub async fn sweep(client: &kube::Client) -> Result<(), Error> {
    let api: Api<ClusterRoleBinding> = Api::all(client.clone());
    let gateways: Api<LlmGateway> = Api::all(client.clone());
    let wanted: Vec<String> = gateways
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .filter(|g| needed(g) && g.meta().deletion_timestamp.is_none())
        .map(name)
        .collect();
    let listed = api
        .list(&ListParams::default().labels(&format!("{LABEL}=true")))
        .await?;
    let names: BTreeSet<String> = listed.items.iter().map(ResourceExt::name_any).collect();
    known().clone_from(&names);
    for name in names.iter().filter(|n| !wanted.contains(n)) {
        delete(&api, name).await?;
    }
    Ok(())
}

/// Sweeps at once, then every minute, until `stop`.
pub async fn sweep_until(client: kube::Client, stop: impl std::future::Future<Output = ()>) {
    let sweeping = async {
        loop {
            if let Err(error) = sweep(&client).await {
                tracing::warn!(%error, "sweeping issuer discovery bindings failed; retrying");
            }
            tokio::time::sleep(SWEEP_EVERY).await;
        }
    };
    tokio::select! {
        () = sweeping => {}
        () = stop => {}
    }
}
