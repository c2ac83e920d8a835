//! The operator binary against the in-repo test API server: ApiKey Secrets generated once and
//! never overwritten, status key hashes the gateway verifies against, provider credential
//! readiness that follows the Secret, no writes for an unchanged object, restarts without new
//! keys, children collected with their owner, and the gateway binary serving with a key the
//! operator generated. A check that something did *not* happen (no write, no new key, no
//! takeover) first sees what could have caused it happen: the operator's reconcile counter
//! (`/metrics`) moving, or the request log showing the other replica at work.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use llm_gateway_crds::api_key::ApiKey;
use llm_gateway_crds::keys;
use llm_gateway_crds::llm_provider::LlmProvider;
use serde_json::json;

mod common;

use common::*;

/// `llm_operator_reconciles_total` of the ApiKey controller of the operator on `admin`.
async fn apikey_reconciles(admin: u16) -> f64 {
    reconciles_by_controller(admin)
        .await
        .get("apikey")
        .copied()
        .unwrap_or(0.0)
}

/// Waits until `probe` has read the same for 500 ms (failing after 10 s), and returns that
/// reading: the operator has finished what the test's last writes gave it to do.
async fn quiet<T: PartialEq + std::fmt::Debug>(what: &str, mut probe: impl AsyncFnMut() -> T) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut last, mut since) = (probe().await, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = probe().await;
        if now != last {
            (last, since) = (now, Instant::now());
        } else if since.elapsed() >= Duration::from_millis(500) {
            return now;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not settle within 10 s: {last:?}"
        );
    }
}

/// An operator the test kills and replaces: its Lease lasts 1 s rather than [`operator`]'s
/// 2 s, so its replacement, which leads only once that Lease expired, starts a second sooner.
fn replaced_operator(kubeconfig: &tempfile::NamedTempFile, admin: u16) -> Process {
    operator_with(kubeconfig, admin, &[("LEASE_DURATION", "1s")])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_get_one_generated_key_and_a_status_the_gateway_agrees_with() {
    let (server, client, kubeconfig) = cluster().await;
    let admin = free_port();
    let mut running = Some(replaced_operator(&kubeconfig, admin));
    let keys_api: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    keys_api
        .create(&PostParams::default(), &api_key("caller"))
        .await
        .unwrap();

    let status = eventually("the key status", async || {
        let status = keys_api.get("caller").await.ok()?.status?;
        (ready(&status.conditions)?.0 == "True").then_some(status)
    })
    .await;
    let secret = secrets.get("caller-key").await.unwrap();
    let plaintext = secret_key(&secret);
    keys::check_format(&plaintext).unwrap();
    assert_eq!(
        status.key_id.as_deref(),
        Some(keys::key_id(&plaintext).as_str())
    );
    assert_eq!(
        status.key_hash.as_deref(),
        Some(keys::hash(PEPPER.as_bytes(), &plaintext).as_str())
    );
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ApiKey", Some(true))
    );

    // A reconcile of an unchanged object writes nothing: an annotation (no generation change)
    // triggers one; the request log shows no status write after it.
    let status_writes = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && r.path.ends_with("/status"))
            .count()
    };
    // Settle first: a reconcile triggered by the Secret's creation may still run on the cached
    // object from before the first status write (kube-runtime caches are eventually
    // consistent) and repeat that write once. Steady state is what is measured.
    let (before, reconciled) = quiet("the ApiKey controller", async || {
        (status_writes(), apikey_reconciles(admin).await)
    })
    .await;
    let touch = Patch::Merge(json!({"metadata": {"annotations": {"touched": "yes"}}}));
    keys_api
        .patch("caller", &PatchParams::default(), &touch)
        .await
        .unwrap();
    // The counter moves when a reconcile has finished, its writes included: only then does
    // "no status write" say something about it.
    eventually("a reconcile after the touch", async || {
        (apikey_reconciles(admin).await > reconciled).then_some(())
    })
    .await;
    assert_eq!(
        status_writes(),
        before,
        "an unchanged ApiKey was written again"
    );

    // Restarting the operator generates nothing new. The old process is killed (its Lease is
    // not released), so the new one reconciles only once the Lease expired and it leads: wait
    // for its own reconcile counter, which starts at zero, to show a finished ApiKey reconcile.
    drop(running.take());
    let restarted = server.requests().len();
    let admin = free_port();
    running = Some(replaced_operator(&kubeconfig, admin));
    keys_api
        .patch(
            "caller",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "again"}}})),
        )
        .await
        .unwrap();
    eventually(
        "an ApiKey reconcile by the restarted operator",
        async || (apikey_reconciles(admin).await >= 1.0).then_some(()),
    )
    .await;
    let secret_writes: Vec<_> = server
        .requests()
        .into_iter()
        .skip(restarted)
        .filter(|r| r.method != "GET" && r.path.ends_with("/secrets/caller-key"))
        .collect();
    assert!(
        secret_writes.is_empty(),
        "the restarted operator wrote the key Secret: {secret_writes:?}"
    );
    assert_eq!(
        secret_key(&secrets.get("caller-key").await.unwrap()),
        plaintext,
        "the key survived the restart"
    );

    // A hand-broken Secret is reported, never overwritten.
    let broken = Patch::Merge(json!({"stringData": {"apiKey": "not-a-key"}}));
    secrets
        .patch("caller-key", &PatchParams::default(), &broken)
        .await
        .unwrap();
    let reason = eventually("the InvalidKey condition", async || {
        let (status, reason) = ready(&keys_api.get("caller").await.ok()?.status?.conditions)?;
        (status == "False").then_some(reason)
    })
    .await;
    assert_eq!(reason, "InvalidKey");
    assert_eq!(
        keys_api
            .get("caller")
            .await
            .unwrap()
            .status
            .unwrap()
            .key_hash,
        None,
        "the old hash is cleared"
    );
    assert_eq!(
        secret_key(&secrets.get("caller-key").await.unwrap()),
        "not-a-key"
    );

    // Deleting the ApiKey collects its Secret.
    keys_api
        .delete("caller", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the Secret's collection", async || {
        secrets
            .get_opt("caller-key")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    drop(running);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_readiness_follows_its_credential_secret() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator(&kubeconfig, free_port());
    let providers: Api<LlmProvider> = Api::namespaced(client.clone(), "default");
    let provider: LlmProvider = serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "openai"},
        "spec": {"type": "openai", "credentials": {"secretRef": {"name": "openai", "key": "apiKey"}}}}))
    .unwrap();
    providers
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    let condition = async |wanted: &str| {
        eventually(wanted, async || {
            let (status, reason) = ready(&providers.get("openai").await.ok()?.status?.conditions)?;
            (reason == wanted).then_some(status)
        })
        .await
    };
    assert_eq!(condition("SecretNotFound").await, "False");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "openai"}, "stringData": {"apiKey": "sk-x"}}),
    )
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    assert_eq!(condition("CredentialsFound").await, "True");
    // Each transition of Ready was recorded as an Event on the provider.
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let seen = eventually("the transition Events", async || {
        let items = events.list(&Default::default()).await.ok()?.items;
        let reasons: Vec<(String, String)> = items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("openai"))
            .map(|e| {
                (
                    e.reason.clone().unwrap_or_default(),
                    e.type_.clone().unwrap_or_default(),
                )
            })
            .collect();
        (reasons.len() >= 2).then_some(reasons)
    })
    .await;
    assert!(
        seen.contains(&("SecretNotFound".to_owned(), "Warning".to_owned())),
        "{seen:?}"
    );
    assert!(
        seen.contains(&("CredentialsFound".to_owned(), "Normal".to_owned())),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_serves_with_a_key_the_operator_generated() {
    let (server, client, kubeconfig) = cluster().await;
    let _operator = operator(&kubeconfig, free_port());
    let fake: LlmProvider = serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "fake"}, "spec": {"type": "fake"}}),
    )
    .unwrap();
    Api::<LlmProvider>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &fake)
        .await
        .unwrap();
    let routes: kube::api::DynamicObject = serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "RoutePolicy",
        "metadata": {"name": "routes"}, "spec": {"routes": [{"model": "m", "targets": [{"provider": "fake"}]}]}})).unwrap();
    let gvk = kube::api::GroupVersionKind::gvk("llmgateway.io", "v1alpha1", "RoutePolicy");
    let resource = kube::api::ApiResource::from_gvk_with_plural(&gvk, "routepolicies");
    Api::<kube::api::DynamicObject>::namespaced_with(client.clone(), "default", &resource)
        .create(&PostParams::default(), &routes)
        .await
        .unwrap();
    Api::<ApiKey>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &api_key("app"))
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let key = eventually("the generated key", async || {
        secrets
            .get_opt("app-key")
            .await
            .ok()?
            .map(|s| secret_key(&s))
    })
    .await;

    let binary = gateway_binary();
    let port = free_port();
    let gateway = Process(
        Command::new(binary)
            .env("KUBECONFIG", kubeconfig.path())
            .env("WATCH_NAMESPACE", "default")
            .env("API_KEY_PEPPER", PEPPER)
            .env("HOST", "127.0.0.1")
            .env("PORT", port.to_string())
            .env("ADMIN_ADDRESS", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = reqwest::Client::new();
    let status = eventually("a served request", async || {
        let response = http
            .post(format!("http://127.0.0.1:{port}/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .ok()?;
        (response.status() != 503).then_some(response.status().as_u16())
    })
    .await;
    assert_eq!(status, 200);
    drop(gateway);
    drop(server);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_get_their_children_kept_as_desired_and_collected_with_them() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
    use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
    use llm_gateway_crds::llm_gateway::LlmGateway;
    let (server, client, kubeconfig) = cluster().await;
    let admin = free_port();
    let _operator = operator(&kubeconfig, admin);
    let gateways: Api<LlmGateway> = Api::namespaced(client.clone(), "default");
    let gateway: LlmGateway = serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
        "metadata": {"name": "main"}, "spec": {}}),
    )
    .unwrap();
    gateways
        .create(&PostParams::default(), &gateway)
        .await
        .unwrap();
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let status = eventually("the gateway status", async || {
        gateways.get("main").await.ok()?.status
    })
    .await;
    assert_eq!(
        status.url.as_deref(),
        Some("http://main-gateway.default.svc.cluster.local:80")
    );
    assert!(
        Api::<ServiceAccount>::namespaced(client.clone(), "default")
            .get_opt("main-gateway")
            .await
            .unwrap()
            .is_some()
    );
    let deployment = deployments.get("main-gateway").await.unwrap();
    assert_eq!(deployment.spec.replicas, Some(3));

    // Unchanged: another reconcile writes nothing at all.
    // Lease renewals are the operator's only expected writes.
    let writes = || {
        server
            .requests()
            .iter()
            .filter(|r| r.method != "GET" && !r.path.contains("/leases/"))
            .count()
    };
    let gateway_reconciles = async || -> f64 {
        reconciles_by_controller(admin)
            .await
            .get("llmgateway")
            .copied()
            .unwrap_or(0.0)
    };
    let (before, reconciled) = quiet("the LlmGateway controller", async || {
        (writes(), gateway_reconciles().await)
    })
    .await;
    gateways
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {"touched": "1"}}})),
        )
        .await
        .unwrap();
    eventually("a reconcile after the touch", async || {
        (gateway_reconciles().await > reconciled).then_some(())
    })
    .await;
    assert_eq!(
        writes(),
        before + 1,
        "only the test's own annotation patch wrote"
    );

    // A settings change updates the ConfigMap and rolls the pods; the Service stays untouched.
    let service_version = services
        .get("main-gateway")
        .await
        .unwrap()
        .metadata
        .resource_version;
    let checksum = |d: &Deployment| {
        d.spec
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["llmgateway.io/settings-checksum"]
            .clone()
    };
    let old_checksum = checksum(&deployment);
    gateways
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"logLevel": "debug"}})),
        )
        .await
        .unwrap();
    eventually("the new settings", async || {
        (maps.get("main-gateway-settings").await.ok()?.data?["LOG_LEVEL"] == "debug").then_some(())
    })
    .await;
    eventually("the rolled pods", async || {
        (checksum(&deployments.get("main-gateway").await.ok()?) != old_checksum).then_some(())
    })
    .await;
    assert_eq!(
        services
            .get("main-gateway")
            .await
            .unwrap()
            .metadata
            .resource_version,
        service_version
    );

    // Deleted children come back; hand edits are corrected.
    services
        .delete("main-gateway", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the re-created Service", async || {
        services.get_opt("main-gateway").await.ok()?.map(|_| ())
    })
    .await;
    deployments
        .patch(
            "main-gateway",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 1}})),
        )
        .await
        .unwrap();
    eventually("the corrected replicas", async || {
        (deployments.get("main-gateway").await.ok()?.spec.replicas == Some(3)).then_some(())
    })
    .await;

    // Autoscaling adds an HPA; turning it off prunes it.
    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    gateways
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"autoscaling": {}}})),
        )
        .await
        .unwrap();
    eventually("the HPA", async || {
        hpas.get_opt("main-gateway").await.ok()?.map(|_| ())
    })
    .await;
    gateways
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"autoscaling": null}})),
        )
        .await
        .unwrap();
    eventually("the pruned HPA", async || {
        hpas.get_opt("main-gateway")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    gateways
        .delete("main", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the collected children", async || {
        let gone = deployments.get_opt("main-gateway").await.ok()?.is_none()
            && services.get_opt("main-gateway").await.ok()?.is_none()
            && maps.get_opt("main-gateway-settings").await.ok()?.is_none();
        gone.then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_policies_report_what_does_not_resolve_and_recover_when_it_does() {
    use llm_gateway_crds::route_policy::RoutePolicy;
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator(&kubeconfig, free_port());
    let policies: Api<RoutePolicy> = Api::namespaced(client.clone(), "default");
    let policy: RoutePolicy = serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "RoutePolicy",
        "metadata": {"name": "routes"}, "spec": {"routes": [{"model": "m", "targets": [{"provider": "later"}]}]}})).unwrap();
    policies
        .create(&PostParams::default(), &policy)
        .await
        .unwrap();
    let unresolved = eventually("the InvalidRoutes condition", async || {
        let status = policies.get("routes").await.ok()?.status?;
        (ready(&status.conditions)?.1 == "InvalidRoutes").then_some(status.unresolved_providers)
    })
    .await;
    assert_eq!(unresolved, ["later"]);
    let provider: LlmProvider = serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": "later"}, "spec": {"type": "fake"}}),
    )
    .unwrap();
    Api::<LlmProvider>::namespaced(client.clone(), "default")
        .create(&PostParams::default(), &provider)
        .await
        .unwrap();
    eventually("the Compiled condition", async || {
        let status = policies.get("routes").await.ok()?.status?;
        (ready(&status.conditions)? == ("True".to_owned(), "Compiled".to_owned())
            && status.unresolved_providers.is_empty())
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_and_a_takeover_when_it_dies() {
    use k8s_openapi::api::coordination::v1::Lease;
    let (server, client, _kubeconfig) = cluster().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "default");
    let holder = async || -> Option<String> {
        leases
            .get_opt("llm-gateway-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    };
    let renewed = async || -> Option<String> {
        let time = leases
            .get_opt("llm-gateway-operator")
            .await
            .ok()??
            .spec?
            .renew_time?;
        Some(format!("{:?}", time.0))
    };
    // Each replica's requests carry its identity as their token, so the request log tells
    // them apart.
    let start = |identity: &str| {
        let kubeconfig = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(kubeconfig.path(), server.kubeconfig_as(identity)).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_llm-gateway-operator"))
            .env("KUBECONFIG", kubeconfig.path())
            .env("ADMIN_ADDRESS", format!("127.0.0.1:{}", free_port()))
            .env("LEASE_DURATION", "2s")
            .env("POD_NAME", identity)
            .env("LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        (Process(child), kubeconfig)
    };
    let lease_reads = |identity: &str| {
        server
            .requests()
            .iter()
            .filter(|r| r.user == identity && r.method == "GET" && r.path.contains("/leases"))
            .count()
    };
    let first = start("first");
    eventually("the first leader", async || {
        (holder().await? == "first").then_some(())
    })
    .await;
    let _second = start("second");
    // "A live leader keeps the Lease" means something only once the second replica contested
    // it for longer than a lease lasts: it read the Lease, the leader renewed it meanwhile, and
    // the second read it again more than a lease duration (2 s) after its first read.
    eventually("the second replica reading the Lease", async || {
        (lease_reads("second") > 0).then_some(())
    })
    .await;
    let (contested, reads, renewal) = (Instant::now(), lease_reads("second"), renewed().await);
    eventually("a lease duration contested and renewed", async || {
        (contested.elapsed() > Duration::from_secs(2)
            && lease_reads("second") > reads
            && renewed().await != renewal)
            .then_some(())
    })
    .await;
    assert_eq!(
        holder().await.as_deref(),
        Some("first"),
        "a live leader keeps the lease"
    );
    let killed = Instant::now();
    drop(first);
    eventually("the takeover", async || {
        (holder().await? == "second").then_some(())
    })
    .await;
    let took = killed.elapsed();
    eprintln!("takeover after {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "takeover took {took:?} (lease 2 s)"
    );
    let keys_api: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    keys_api
        .create(&PostParams::default(), &api_key("after"))
        .await
        .unwrap();
    eventually("a reconcile by the new leader", async || {
        ready(&keys_api.get("after").await.ok()?.status?.conditions).filter(|(s, _)| s == "True")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_by_annotation_keeps_the_old_key_for_its_grace_period() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator(&kubeconfig, free_port());
    let keys_api: Api<ApiKey> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    keys_api
        .create(&PostParams::default(), &api_key("rotating"))
        .await
        .unwrap();
    let old = eventually("the first key", async || {
        secrets
            .get_opt("rotating-key")
            .await
            .ok()?
            .map(|s| secret_key(&s))
    })
    .await;
    let rotate = Patch::Merge(json!({"metadata": {"annotations": {
        "llmgateway.io/rotate": "2026-11-27", "llmgateway.io/rotation-grace": "2s"}}}));
    keys_api
        .patch("rotating", &PatchParams::default(), &rotate)
        .await
        .unwrap();
    let status = eventually("the rotated status", async || {
        let status = keys_api.get("rotating").await.ok()?.status?;
        status.previous_key_hash.is_some().then_some(status)
    })
    .await;
    let secret = secrets.get("rotating-key").await.unwrap();
    let new = secret_key(&secret);
    assert_ne!(new, old);
    keys::check_format(&new).unwrap();
    assert_eq!(
        String::from_utf8(secret.data.as_ref().unwrap()["previousApiKey"].0.clone()).unwrap(),
        old
    );
    assert_eq!(
        status.previous_key_hash.as_deref(),
        Some(keys::hash(PEPPER.as_bytes(), &old).as_str())
    );
    assert_eq!(
        status.key_hash.as_deref(),
        Some(keys::hash(PEPPER.as_bytes(), &new).as_str())
    );
    let ended = eventually("the end of the grace period", async || {
        let status = keys_api.get("rotating").await.ok()?.status?;
        status.previous_key_hash.is_none().then_some(())
    });
    tokio::time::timeout(Duration::from_secs(7), ended)
        .await
        .unwrap();
    let secret = secrets.get("rotating-key").await.unwrap();
    assert!(!secret.data.as_ref().unwrap().contains_key("previousApiKey"));
    assert_eq!(
        secret_key(&secret),
        new,
        "one rotation per annotation value"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_killed_between_two_child_writes_converges_after_a_restart() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::{ConfigMap, Service};
    use llm_gateway_crds::llm_gateway::LlmGateway;
    use test_apiserver::faults::FaultRule;
    let (server, client, kubeconfig) = cluster().await;
    // The Deployment write hangs long enough to kill the operator in the middle of a reconcile,
    // after the ServiceAccount, Role, RoleBinding and ConfigMap were written.
    let hang: FaultRule = serde_json::from_value(
        json!({"verb": "patch", "resource": "deployments", "times": 1,
        "action": {"type": "delay", "millis": 3000}}),
    )
    .unwrap();
    server.add_fault(hang);
    let first = replaced_operator(&kubeconfig, free_port());
    let gateways: Api<LlmGateway> = Api::namespaced(client.clone(), "default");
    let gateway: LlmGateway = serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
        "metadata": {"name": "crash"}, "spec": {}}),
    )
    .unwrap();
    gateways
        .create(&PostParams::default(), &gateway)
        .await
        .unwrap();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    eventually("the ConfigMap before the crash", async || {
        maps.get_opt("crash-gateway-settings")
            .await
            .ok()?
            .map(|_| ())
    })
    .await;
    drop(first);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let _second = replaced_operator(&kubeconfig, free_port());
    eventually("convergence after the restart", async || {
        let complete = deployments.get_opt("crash-gateway").await.ok()?.is_some()
            && Api::<Service>::namespaced(client.clone(), "default")
                .get_opt("crash-gateway")
                .await
                .ok()?
                .is_some()
            && gateways.get("crash").await.ok()?.status.is_some();
        complete.then_some(())
    })
    .await;
    // Deterministic names: exactly one of each child, nothing orphaned.
    let labelled = kube::api::ListParams::default().labels("llmgateway.io/gateway=crash");
    assert_eq!(deployments.list(&labelled).await.unwrap().items.len(), 1);
    let names: Vec<String> = maps
        .list(&labelled)
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.metadata.name.unwrap())
        .collect();
    assert_eq!(
        names,
        ["crash-gateway-last-known-good", "crash-gateway-settings"]
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    assert_eq!(secrets.list(&labelled).await.unwrap().items.len(), 1);
}
