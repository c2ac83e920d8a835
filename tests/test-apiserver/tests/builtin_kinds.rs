//! Built-in kinds over real HTTP: every stored kind round-trips through kube-rs's typed
//! clients (no false unknown fields), unknown fields and values of the wrong type are refused
//! as a real server refuses them, and resource quantities are stored in canonical form.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::{Client, Config};
use serde_json::{Value, json};
use test_apiserver::TestApiServer;

async fn client(server: &TestApiServer) -> Client {
    Client::try_from(Config::new(server.url().parse().unwrap())).unwrap()
}

fn api(client: &Client, api_version: &str, kind: &str, plural: &str) -> Api<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let resource = ApiResource::from_gvk_with_plural(&gvk, plural);
    if kind.starts_with("Cluster") || kind == "Namespace" {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), "default", &resource)
    }
}

fn object(api_version: &str, kind: &str, name: &str, body: Value) -> DynamicObject {
    let mut value = json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
    for (key, field) in body.as_object().unwrap() {
        match (key.as_str(), field.as_object()) {
            ("metadata", Some(meta)) => {
                for (k, v) in meta {
                    value["metadata"][k] = v.clone();
                }
            }
            _ => value[key] = field.clone(),
        }
    }
    serde_json::from_value(value).unwrap()
}

fn pod_template() -> Value {
    json!({"metadata": {"labels": {"app": "a"}}, "spec": {
        "containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 8080, "name": "http"}],
            "readinessProbe": {"httpGet": {"path": "/", "port": "http"}},
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}},
            "securityContext": {"runAsNonRoot": true, "capabilities": {"drop": ["ALL"]}}}],
        "volumes": [{"name": "tmp", "emptyDir": {}}]}})
}

/// One realistic object of every kind the server stores.
fn every_kind() -> Vec<(&'static str, &'static str, &'static str, Value)> {
    let subject = json!([{"kind": "ServiceAccount", "name": "sa", "namespace": "default"}]);
    let rules = json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]);
    let role_ref =
        |kind: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": "r"});
    vec![
        (
            "v1",
            "Namespace",
            "namespaces",
            json!({"metadata": {"labels": {}}}),
        ),
        (
            "v1",
            "Secret",
            "secrets",
            json!({"type": "Opaque", "stringData": {"k": "v"}, "immutable": false}),
        ),
        (
            "v1",
            "ConfigMap",
            "configmaps",
            json!({"data": {"k": "v"}, "binaryData": {"b": "AA=="}}),
        ),
        (
            "v1",
            "Service",
            "services",
            json!({"spec": {"selector": {"app": "a"}, "type": "ClusterIP",
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}),
        ),
        (
            "v1",
            "ServiceAccount",
            "serviceaccounts",
            json!({"automountServiceAccountToken": false}),
        ),
        (
            "v1",
            "Event",
            "events",
            json!({"involvedObject": {"kind": "Pod", "name": "p"},
            "reason": "R", "message": "m", "type": "Normal", "count": 1}),
        ),
        (
            "events.k8s.io/v1",
            "Event",
            "events",
            json!({"eventTime": "2024-01-01T00:00:00.000000Z",
            "reportingController": "c", "reportingInstance": "i", "action": "A", "reason": "R",
            "regarding": {"kind": "Pod", "name": "p"}, "type": "Normal"}),
        ),
        (
            "apps/v1",
            "Deployment",
            "deployments",
            json!({"spec": {"replicas": 2,
            "selector": {"matchLabels": {"app": "a"}}, "template": pod_template(),
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}}}}),
        ),
        (
            "autoscaling/v2",
            "HorizontalPodAutoscaler",
            "horizontalpodautoscalers",
            json!({"spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
            "minReplicas": 1, "maxReplicas": 3, "metrics": [{"type": "Resource", "resource":
                {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]}}),
        ),
        (
            "policy/v1",
            "PodDisruptionBudget",
            "poddisruptionbudgets",
            json!({"spec": {
            "maxUnavailable": 1, "selector": {"matchLabels": {"app": "a"}}}}),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "Role",
            "roles",
            json!({"rules": rules}),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "RoleBinding",
            "rolebindings",
            json!({"roleRef": role_ref("Role"), "subjects": subject}),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            "clusterroles",
            json!({"rules": rules}),
        ),
        (
            "rbac.authorization.k8s.io/v1",
            "ClusterRoleBinding",
            "clusterrolebindings",
            json!({"roleRef": role_ref("ClusterRole"), "subjects": subject}),
        ),
        (
            "networking.k8s.io/v1",
            "NetworkPolicy",
            "networkpolicies",
            json!({"spec": {
            "podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8080}]}]}}),
        ),
        (
            "networking.k8s.io/v1",
            "Ingress",
            "ingresses",
            json!({"spec": {"ingressClassName": "nginx",
            "rules": [{"host": "a.example.com", "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": "s", "port": {"number": 80}}}}]}}],
            "tls": [{"hosts": ["a.example.com"], "secretName": "tls"}]}}),
        ),
        (
            "coordination.k8s.io/v1",
            "Lease",
            "leases",
            json!({"spec": {"holderIdentity": "h",
            "leaseDurationSeconds": 15, "renewTime": "2024-01-01T00:00:00.000000Z"}}),
        ),
    ]
}

#[tokio::test]
async fn every_stored_kind_takes_its_known_fields_and_refuses_unknown_ones() {
    let server = TestApiServer::start().await.unwrap();
    let client = client(&server).await;
    for (api_version, kind, plural, body) in every_kind() {
        let api = api(&client, api_version, kind, plural);
        let created = api
            .create(
                &PostParams::default(),
                &object(api_version, kind, "ok", body.clone()),
            )
            .await;
        assert!(created.is_ok(), "{api_version} {kind}: {created:?}");
        let mut bad = body.clone();
        bad["bogusField"] = json!({"x": 1});
        let refused = api
            .create(
                &PostParams::default(),
                &object(api_version, kind, "bad", bad),
            )
            .await;
        let expected = format!(
            "{kind} in version \"{}\" cannot be handled as a {kind}: strict decoding error: unknown field \"bogusField\"",
            api_version.rsplit('/').next().unwrap()
        );
        assert!(
            matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400 && e.message == expected),
            "{api_version} {kind}: {refused:?}"
        );
    }
}

#[tokio::test]
async fn nested_unknown_fields_wrong_types_and_apply_are_refused() {
    let server = TestApiServer::start().await.unwrap();
    let client = client(&server).await;
    let deployments = api(&client, "apps/v1", "Deployment", "deployments");
    let mut body =
        json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": pod_template()}});
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = json!("Always");
    let refused = deployments
        .create(
            &PostParams::default(),
            &object("apps/v1", "Deployment", "d", body.clone()),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400
            && e.message.ends_with(r#"unknown field "spec.template.spec.containers[0].imagePullPolicyy""#)),
        "{refused:?}"
    );
    let mut wrong = body.clone();
    wrong["spec"]["replicas"] = json!("two");
    let refused = deployments
        .create(
            &PostParams::default(),
            &object("apps/v1", "Deployment", "d", wrong),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400 && e.reason == "BadRequest"
            && e.message.contains("spec.replicas: invalid type")),
        "{refused:?}"
    );
    let applied = Patch::Apply(object("apps/v1", "Deployment", "d", body));
    let refused = deployments
        .patch("d", &PatchParams::apply("t").validation_ignore(), &applied)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 500
            && e.message.ends_with(".spec.template.spec.containers[0].imagePullPolicyy: field not declared in schema")),
        "{refused:?}"
    );
    let secret = object("v1", "Secret", "s", json!({"data": {"k": "not base64!"}}));
    let refused = api(&client, "v1", "Secret", "secrets")
        .create(&PostParams::default(), &secret)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400
            && e.message.starts_with("Secret in version \"v1\" cannot be handled as a Secret: data.k: ")),
        "{refused:?}"
    );
    let merge = Patch::Merge(json!({"spec": {"paused": true, "pausd": true}}));
    let config_maps = api(&client, "v1", "ConfigMap", "configmaps");
    config_maps
        .create(
            &PostParams::default(),
            &object("v1", "ConfigMap", "c", json!({})),
        )
        .await
        .unwrap();
    let refused = config_maps
        .patch("c", &PatchParams::default(), &merge)
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400
            && e.message == r#"strict decoding error: unknown field "spec""#),
        "{refused:?}"
    );
    let warned = config_maps
        .patch("c", &PatchParams::default().validation_warn(), &merge)
        .await
        .unwrap();
    assert!(warned.data.get("spec").is_none(), "dropped");
}

#[tokio::test]
async fn quantities_are_stored_in_canonical_form() {
    let server = TestApiServer::start().await.unwrap();
    let client = client(&server).await;
    let mut template = pod_template();
    template["spec"]["containers"][0]["resources"] = json!({
        "requests": {"cpu": 0.5, "memory": "1024Mi"},
        "limits": {"cpu": "1000m", "memory": "2000Mi", "ephemeral-storage": "1e3"}});
    template["spec"]["volumes"][0]["emptyDir"] = json!({"sizeLimit": "1.5Gi"});
    let body = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": template}});
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let applied = Patch::Apply(object("apps/v1", "Deployment", "q", body));
    let stored = deployments
        .patch("q", &PatchParams::apply("t"), &applied)
        .await
        .unwrap();
    let pod = stored.spec.template.spec.unwrap();
    let resources = serde_json::to_value(pod.containers[0].resources.clone()).unwrap();
    assert_eq!(
        resources,
        json!({"requests": {"cpu": "500m", "memory": "1Gi"},
               "limits": {"cpu": "1", "memory": "2000Mi", "ephemeral-storage": "1e3"}})
    );
    let size = pod.volumes.unwrap()[0]
        .empty_dir
        .clone()
        .unwrap()
        .size_limit
        .unwrap();
    assert_eq!(size.0, "1536Mi");
    let again = deployments
        .patch("q", &PatchParams::apply("t"), &applied)
        .await
        .unwrap();
    assert_eq!(
        again.metadata.resource_version, stored.metadata.resource_version,
        "re-applying the same quantities in another spelling changes nothing"
    );

    let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), "default");
    let hpa = object(
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "h",
        json!({"spec": {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "q"},
        "maxReplicas": 2, "metrics": [{"type": "Pods", "pods": {"metric": {"name": "m"},
            "target": {"type": "AverageValue", "averageValue": "1000m"}}}]}}),
    );
    let created = hpas
        .patch("h", &PatchParams::apply("t"), &Patch::Apply(hpa))
        .await
        .unwrap();
    let target = &created.spec.metrics.unwrap()[0];
    let average = target.pods.as_ref().unwrap().target.average_value.clone();
    assert_eq!(average.unwrap().0, "1");

    let mut bad = pod_template();
    bad["spec"]["containers"][0]["resources"] = json!({"limits": {"memory": "1GB"}});
    let body = json!({"spec": {"selector": {"matchLabels": {"app": "a"}}, "template": bad}});
    let refused = api(&client, "apps/v1", "Deployment", "deployments")
        .create(
            &PostParams::default(),
            &object("apps/v1", "Deployment", "bad", body),
        )
        .await;
    assert!(
        matches!(&refused, Err(kube::Error::Api(e)) if e.code == 400 && e.message.contains("quantities must match")),
        "{refused:?}"
    );
}
