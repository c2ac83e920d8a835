//! The operator is no confused deputy: writing an LlmGateway or a self-hosted LlmProvider does
//! not mean running any image with what the operator hands its pods. Through the operator
//! binary on the test API server: an image outside `ALLOWED_IMAGE_REPOSITORIES` is refused
//! (`Ready=False` naming the rule, an Event, nothing built, existing children left as they
//! were); a model server reads Secrets only through `selfHosted.secretEnv`, and only Secrets
//! labelled to consent (`env` with `valueFrom.secretKeyRef` is refused at admission). And every
//! pod template every builder makes meets the restricted Pod Security Standard without a
//! default service-account token.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use common::restricted;
use common::*;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::events::v1::Event;
use kube::Resource;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use llm_gateway_crds::llm_gateway::LlmGateway;
use llm_gateway_crds::llm_provider::LlmProvider;
use llm_gateway_operator::build::{gateway, model_server};
use serde_json::{Value, json};

/// A change that breaks one rule of the profile.
type Mutation = dyn Fn(&mut Value);

const ALLOWED: (&str, &str) = ("ALLOWED_IMAGE_REPOSITORIES", "ghcr.io/acme/");

fn provider(name: &str, self_hosted: Value) -> LlmProvider {
    serde_json::from_value(
        json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmProvider",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"type": "openaiCompatible", "selfHosted": self_hosted}}),
    )
    .unwrap()
}

fn llm_gateway(name: &str, spec: Value) -> LlmGateway {
    serde_json::from_value(json!({"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")}, "spec": spec}))
    .unwrap()
}

/// Every pod template in `objects`, each checked; panics listing every violation.
fn assert_restricted(what: &str, objects: &[Value]) -> usize {
    let mut found = 0;
    for object in objects {
        for (path, pod, annotations) in restricted::pod_templates(object) {
            found += 1;
            let broken = restricted::violations(&pod, &annotations);
            let kind = object["kind"].as_str().unwrap_or("?");
            assert!(
                broken.is_empty(),
                "{what}: {kind} {path} breaks the restricted profile: {broken:#?}"
            );
        }
    }
    found
}

#[test]
fn every_pod_template_of_every_builder_meets_the_restricted_profile() {
    let gateways = [
        json!({}),
        json!({"image": "ghcr.io/acme/gateway:1", "replicas": 1, "logLevel": "debug"}),
        json!({"autoscaling": {"targetInFlightRequestsPerPod": 100},
            "redis": {"urlSecretRef": {"name": "redis", "key": "url"}, "onUnavailable": "failClosed"},
            "resources": {"limits": {"cpu": "2"}}, "service": {"type": "LoadBalancer", "port": 8080}}),
    ];
    for spec in gateways {
        let objects: Vec<Value> = gateway::children(&llm_gateway("main", spec.clone()))
            .into_iter()
            .map(|c| c.object)
            .collect();
        assert_eq!(
            assert_restricted(&format!("gateway {spec}"), &objects),
            1,
            "the gateway has one pod template"
        );
    }
    let servers = [
        json!({"image": "ghcr.io/acme/vllm:1"}),
        json!({"image": "ghcr.io/acme/vllm:1", "args": ["--model", "m"], "port": 8080,
            "env": [{"name": "A", "value": "1"}, {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
            "secretEnv": [{"name": "HF_TOKEN", "secretKeyRef": {"name": "hf", "key": "token"}}],
            "resources": {"limits": {"nvidia.com/gpu": "1"}}, "nodeSelector": {"gpu": "true"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
            "autoscaling": {"maxReplicas": 2}}),
    ];
    for spec in servers {
        let objects: Vec<Value> = model_server::children(&provider("qwen", spec.clone()))
            .into_iter()
            .map(|c| c.object)
            .collect();
        assert_eq!(
            assert_restricted(&format!("model server {spec}"), &objects),
            1,
            "the model server has one pod template"
        );
    }
}

#[test]
fn the_checker_catches_what_the_restricted_profile_forbids() {
    let good = json!({"automountServiceAccountToken": false,
        "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
        "volumes": [{"name": "v", "emptyDir": {}}],
        "containers": [{"name": "c", "securityContext": {"allowPrivilegeEscalation": false,
            "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}]});
    assert_eq!(
        restricted::violations(&good, &Value::Null),
        Vec::<String>::new()
    );
    let breaks = |patch: &dyn Fn(&mut Value)| {
        let mut pod = good.clone();
        patch(&mut pod);
        restricted::violations(&pod, &Value::Null)
    };
    let cases: [(&str, &Mutation); 11] = [
        ("token", &|p: &mut Value| {
            p["automountServiceAccountToken"] = json!(true)
        }),
        ("host network", &|p: &mut Value| {
            p["hostNetwork"] = json!(true)
        }),
        ("host path", &|p: &mut Value| {
            p["volumes"][0] = json!({"name": "v", "hostPath": {"path": "/"}})
        }),
        ("root", &|p: &mut Value| {
            p["securityContext"]["runAsNonRoot"] = Value::Null
        }),
        ("uid 0", &|p: &mut Value| {
            p["containers"][0]["securityContext"]["runAsUser"] = json!(0)
        }),
        ("escalation", &|p: &mut Value| {
            p["containers"][0]["securityContext"]["allowPrivilegeEscalation"] = Value::Null
        }),
        ("privileged", &|p: &mut Value| {
            p["containers"][0]["securityContext"]["privileged"] = json!(true)
        }),
        ("caps", &|p: &mut Value| {
            p["containers"][0]["securityContext"]["capabilities"]["add"] = json!(["SYS_ADMIN"])
        }),
        ("no drop", &|p: &mut Value| {
            p["containers"][0]["securityContext"]["capabilities"]["drop"] = json!([])
        }),
        ("seccomp", &|p: &mut Value| {
            p["securityContext"]["seccompProfile"] = json!({"type": "Unconfined"})
        }),
        ("host port", &|p: &mut Value| {
            p["containers"][0]["ports"] = json!([{"containerPort": 80, "hostPort": 80}])
        }),
    ];
    for (what, patch) in cases {
        assert!(!breaks(patch).is_empty(), "{what} went unnoticed");
    }
}

/// The `Ready` (status, reason) of `provider` once its status describes its generation.
async fn provider_ready(providers: &Api<LlmProvider>, name: &str) -> Option<(String, String)> {
    let provider = providers.get(name).await.ok()?;
    let status = provider.status?;
    (status.observed_generation == provider.metadata.generation)
        .then(|| ready(&status.conditions))?
}

/// Whether a Warning Event with `reason` was recorded about the object `name`.
async fn warned(client: &kube::Client, name: &str, reason: &str) -> Option<()> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let list = events.list(&ListParams::default()).await.ok()?;
    list.items
        .iter()
        .any(|e| {
            e.reason.as_deref() == Some(reason)
                && e.type_.as_deref() == Some("Warning")
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .then_some(())
}

fn as_json(deployment: &Deployment) -> Value {
    serde_json::to_value(deployment).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_hosted_image_outside_the_allowlist_is_refused_and_nothing_is_built() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator_with(&kubeconfig, free_port(), &[ALLOWED]);
    let providers: Api<LlmProvider> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut miner = provider("miner", json!({"image": "docker.io/attacker/miner:1"}));
    miner.meta_mut().uid = None;
    providers
        .create(&PostParams::default(), &miner)
        .await
        .unwrap();
    let refused = ("False".to_owned(), "ImageNotAllowed".to_owned());
    eventually("the provider refused", async || {
        (provider_ready(&providers, "miner").await? == refused).then_some(())
    })
    .await;
    eventually("a Warning Event naming the rule", async || {
        warned(&client, "miner", "ImageNotAllowed").await
    })
    .await;
    assert!(deployments.get_opt("miner-model").await.unwrap().is_none());
    assert!(services.get_opt("miner-model").await.unwrap().is_none());

    // An allowed image is built, and its pods meet the restricted profile.
    let image = |image: &str| Patch::Merge(json!({"spec": {"selfHosted": {"image": image}}}));
    let params = PatchParams::default();
    providers
        .patch("miner", &params, &image("ghcr.io/acme/vllm:v1"))
        .await
        .unwrap();
    let built = eventually("the allowed model server", async || {
        deployments.get_opt("miner-model").await.ok()?
    })
    .await;
    assert_restricted("the applied model server", &[as_json(&built)]);

    // Refused again: the running model server is removed, not left running the image (and
    // Secrets) it is no longer allowed, nor rebuilt with the refused image.
    providers
        .patch("miner", &params, &image("ghcr.io/acme-evil/vllm:v1"))
        .await
        .unwrap();
    eventually("the provider refused again", async || {
        (provider_ready(&providers, "miner").await? == refused).then_some(())
    })
    .await;
    eventually("the refused model server removed", async || {
        deployments
            .get_opt("miner-model")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    assert!(services.get_opt("miner-model").await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_image_outside_the_allowlist_is_refused_and_nothing_is_built() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator_with(&kubeconfig, free_port(), &[ALLOWED]);
    let gateways: Api<LlmGateway> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");
    let mut evil = llm_gateway("main", json!({"image": "evil.example/gateway:1"}));
    evil.meta_mut().uid = None;
    gateways
        .create(&PostParams::default(), &evil)
        .await
        .unwrap();
    eventually("the gateway refused", async || {
        let gateway = gateways.get("main").await.ok()?;
        let status = gateway.status?;
        let current = status.observed_generation == gateway.metadata.generation;
        (current
            && ready(&status.conditions)? == ("False".to_owned(), "ImageNotAllowed".to_owned()))
            .then_some(())
    })
    .await;
    eventually("a Warning Event naming the rule", async || {
        warned(&client, "main", "ImageNotAllowed").await
    })
    .await;
    assert!(deployments.get_opt("main-gateway").await.unwrap().is_none());
    assert!(
        secrets
            .get_opt("main-gateway-credentials")
            .await
            .unwrap()
            .is_none(),
        "no provider key is copied for a refused gateway"
    );

    // Without `image` the operator's own gateway runs, with restricted pods.
    gateways
        .patch(
            "main",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"image": null}})),
        )
        .await
        .unwrap();
    let built = eventually("the gateway's Deployment", async || {
        deployments.get_opt("main-gateway").await.ok()?
    })
    .await;
    let template = as_json(&built);
    assert_restricted("the applied gateway", std::slice::from_ref(&template));
    assert_eq!(
        template["spec"]["template"]["spec"]["containers"][0]["image"],
        gateway::DEFAULT_IMAGE
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_server_reads_only_secrets_named_in_secret_env_that_consent() {
    let (_server, client, kubeconfig) = cluster().await;
    let _operator = operator_with(&kubeconfig, free_port(), &[ALLOWED]);
    let providers: Api<LlmProvider> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "default");

    // `env` naming any Secret of the namespace (here a gateway's credentials) is refused at
    // admission by the CRD's rule.
    let mut stealing = provider(
        "stealing",
        json!({"image": "ghcr.io/acme/vllm:v1", "env": [{"name": "KEYS", "valueFrom":
            {"secretKeyRef": {"name": "main-gateway-credentials", "key": "credentials.yaml"}}}]}),
    );
    stealing.meta_mut().uid = None;
    let refused = providers.create(&PostParams::default(), &stealing).await;
    match refused {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 422, "{status:?}");
            assert!(format!("{status:?}").contains("secretEnv"), "{status:?}");
        }
        other => panic!("env reading a Secret was admitted: {other:?}"),
    }
    assert!(
        deployments
            .get_opt("stealing-model")
            .await
            .unwrap()
            .is_none()
    );

    // Named in `secretEnv`, but the Secret did not consent: refused, nothing built.
    let hf: Secret = serde_json::from_value(
        json!({"metadata": {"name": "hf"}, "stringData": {"token": "hf_secret"}}),
    )
    .unwrap();
    secrets.create(&PostParams::default(), &hf).await.unwrap();
    let mut hosted = provider(
        "qwen",
        json!({"image": "ghcr.io/acme/vllm:v1",
            "secretEnv": [{"name": "HF_TOKEN", "secretKeyRef": {"name": "hf", "key": "token"}}]}),
    );
    hosted.meta_mut().uid = None;
    providers
        .create(&PostParams::default(), &hosted)
        .await
        .unwrap();
    eventually("the provider refused", async || {
        let state = provider_ready(&providers, "qwen").await?;
        (state == ("False".to_owned(), "SecretNotShared".to_owned())).then_some(())
    })
    .await;
    assert!(deployments.get_opt("qwen-model").await.unwrap().is_none());

    // The Secret's manager labels it: the model server is built with the variable.
    let consent = json!({"metadata": {"labels": {"llmgateway.io/model-server-secret": "true"}}});
    secrets
        .patch("hf", &PatchParams::default(), &Patch::Merge(consent))
        .await
        .unwrap();
    let built = eventually("the model server", async || {
        deployments.get_opt("qwen-model").await.ok()?
    })
    .await;
    let template = as_json(&built);
    let env = &template["spec"]["template"]["spec"]["containers"][0]["env"];
    let token = env
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "HF_TOKEN")
        .unwrap();
    assert_eq!(
        token["valueFrom"]["secretKeyRef"],
        json!({"name": "hf", "key": "token"})
    );
    assert_restricted("the applied model server", std::slice::from_ref(&template));
}
