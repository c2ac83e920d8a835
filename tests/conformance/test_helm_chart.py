"""The Helm chart (`charts/llm-gateway`) through real Helm v4 (the `helm-python-sdk` wheel):
lint, render with the default values and every value set in the chart's `ci/` folder, check
every rendered document against the Kubernetes schemas (`kubernetes-validate`) or, for our own
kinds, against our CRDs with unknown fields refused; then install the default rendering into the in-repo test API server
and watch the real operator binary reconcile the chart's default LlmGateway."""

import base64
import importlib.util
import json
import pathlib
import time

import helm_python as helm
import jsonschema_rs
import kubernetes_validate
import pytest
import yaml
from kubernetes import client, config

from conftest import kube_test_server, operator
from crd_schemas import strict_schemas

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-gateway"
KUBERNETES_VERSION = "1.33.0"
VALUE_SETS = [None] + sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
# Kinds of the Prometheus Operator: no schema ships offline; checked for shape only.
MONITORING = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}


def values(name):
    return yaml.safe_load((CHART / "ci" / name).read_text()) if name else None


def render(name, namespace="ai"):
    rendered = helm.Chart.load(str(CHART)).render(values(name), name="lgw", namespace=namespace, is_install=True)
    return [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_chart_lints_without_warnings(value_set):
    report = helm.lint(str(CHART), values(value_set), strict=True, namespace="ai")
    assert report["errors"] == [], report
    # Helm severities: 1 info, 2 warning, 3 error.
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_document_is_valid(value_set):
    documents = render(value_set)
    assert documents, "nothing rendered"
    ours = strict_schemas()
    for document in documents:
        kind = document["kind"]
        where = f"{value_set or 'defaults'}: {kind} {document['metadata'].get('name')}"
        if document["apiVersion"].startswith("llmgateway.io/"):
            # Unknown fields refused: kubectl and Argo CD refuse them where Helm and pruning drop them.
            jsonschema_rs.validate(ours[(document["apiVersion"], kind)], document)
        elif kind in MONITORING:
            assert document["apiVersion"] == "monitoring.coreos.com/v1", where
            assert document["spec"], where
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        if kind not in {"ClusterRole", "ClusterRoleBinding"}:
            assert document["metadata"].get("namespace") == "ai", where


def test_the_chart_s_crds_are_the_generated_ones():
    generated = {p.name: p.read_text() for p in (ROOT / "crds" / "yaml").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in (CHART / "crds").glob("*.yaml")}
    assert shipped == generated, "copy crds/yaml/*.yaml into charts/llm-gateway/crds/"


def test_values_outside_the_schema_are_refused():
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema({"gateway": {"replicas": 2}})
    for bad in ({"gateway": {"redis": {"onUnavailable": "maybe"}}}, {"operator": {"replica": 2}}):
        with pytest.raises(Exception):
            chart.validate_schema(bad)


def test_the_default_rendering_installs_and_the_operator_reconciles_its_gateway():
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        install(api, render(None, namespace="default"))
        # The pepper Secret is the operator's to create (a rendered one changes on every render).
        with operator(kubeconfig, {"API_KEY_PEPPER_SECRET": "lgw-llm-gateway-pepper", "POD_NAMESPACE": "default"}):
            apps = client.AppsV1Api(api)
            custom = client.CustomObjectsApi(api)
            deadline = time.monotonic() + 20
            while True:
                names = {d.metadata.name for d in apps.list_namespaced_deployment("default").items}
                gateway = custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default",
                                                              "llmgateways", "main")
                status = gateway.get("status") or {}
                if "main-gateway" in names and status.get("observedGeneration") == 1:
                    break
                assert time.monotonic() < deadline, f"not reconciled: {names}, {json.dumps(status)}"
                time.sleep(0.2)
            assert status["url"] == "http://main-gateway.default.svc.cluster.local:80"
            hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("main-gateway", "default")
            assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 10)
            pepper = client.CoreV1Api(api).read_namespaced_secret("lgw-llm-gateway-pepper", "default")
            assert len(base64.b64decode(pepper.data["pepper"])) == 64, "the operator created a pepper"


def install(api, documents):
    """Creates the chart's CRDs and rendered documents, as `helm install` would."""
    extensions = client.ApiextensionsV1Api(api)
    for path in sorted((CHART / "crds").glob("*.yaml")):
        extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    core, apps, rbac = client.CoreV1Api(api), client.AppsV1Api(api), client.RbacAuthorizationV1Api(api)
    custom = client.CustomObjectsApi(api)
    create = {
        "ServiceAccount": lambda d: core.create_namespaced_service_account("default", d),
        "Secret": lambda d: core.create_namespaced_secret("default", d),
        "Service": lambda d: core.create_namespaced_service("default", d),
        "Deployment": lambda d: apps.create_namespaced_deployment("default", d),
        "PodDisruptionBudget": lambda d: client.PolicyV1Api(api).create_namespaced_pod_disruption_budget(
            "default", d),
        "ClusterRole": rbac.create_cluster_role,
        "ClusterRoleBinding": rbac.create_cluster_role_binding,
        "Role": lambda d: rbac.create_namespaced_role("default", d),
        "RoleBinding": lambda d: rbac.create_namespaced_role_binding("default", d),
        "LlmGateway": lambda d: custom.create_namespaced_custom_object(
            "llmgateway.io", "v1alpha1", "default", "llmgateways", d),
    }
    for document in documents:
        create[document["kind"]](document)


def test_the_raw_manifests_are_the_chart_rendered():
    spec = importlib.util.spec_from_file_location("render", ROOT / "deployments" / "manifests" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "deployments" / "manifests" / "llm-gateway.yaml").read_text()
    assert committed == module.render(), "run: python3 deployments/manifests/render.py"
    for document in yaml.safe_load_all(committed):
        if document:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
