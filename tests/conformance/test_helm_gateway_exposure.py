"""The chart's `gateway.*` placement, shutdown and exposure values reach the LlmGateway it
renders (through real Helm v4, the `helm-python-sdk` wheel), which our CRD accepts with unknown
fields refused; and the real operator binary, reconciling such an LlmGateway in the in-repo
test API server, writes a Deployment, Service and Ingress that the Kubernetes schemas accept
(`kubernetes-validate`, strict) and an HTTPRoute that the Gateway API's schema accepts."""

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

EXPOSED = {"gateway": {
    "service": {"port": 8080, "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
    "shutdown": {"delay": "20s", "drainTimeout": "10m"},
    "nodeSelector": {"pool": "gateway"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]}]}}},
    "priorityClassName": "gateway-critical",
    "imagePullSecrets": [{"name": "registry"}],
    "podAnnotations": {"sidecar.istio.io/inject": "false"},
    "podLabels": {"team": "ai"},
    "env": [{"name": "WRITE_TIMEOUT", "value": "60s"}],
    "exposure": {
        "ingress": {"enabled": True, "className": "nginx", "hosts": ["llm.example.com"],
                    "tls": {"enabled": True, "clusterIssuer": "letsencrypt"}},
        "httpRoute": {"enabled": True, "hostnames": ["llm.example.com"],
                      "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}]},
    },
}}

# The parts of the Gateway API's HTTPRoute (gateway.networking.k8s.io/v1, standard channel)
# the operator writes, transcribed from its CRD with unknown fields refused: no schema of it
# ships offline.
_NAME = {"type": "string", "minLength": 1, "maxLength": 253}
_HOSTNAME = {"type": "string", "minLength": 1, "maxLength": 253,
             "pattern": r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"}
_DURATION = {"type": "string", "pattern": r"^([0-9]{1,5}(h|m|s|ms)){1,4}$"}
_OBJECT = {"type": "object", "additionalProperties": False}
HTTP_ROUTE_SCHEMA = {**_OBJECT, "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
    "apiVersion": {"const": "gateway.networking.k8s.io/v1"}, "kind": {"const": "HTTPRoute"},
    "metadata": {"type": "object"}, "status": {"type": "object"},
    "spec": {**_OBJECT, "properties": {
        "hostnames": {"type": "array", "maxItems": 16, "items": _HOSTNAME},
        "parentRefs": {"type": "array", "maxItems": 32, "items": {**_OBJECT, "required": ["name"], "properties": {
            "group": {"type": "string", "maxLength": 253}, "kind": {"type": "string", "maxLength": 63},
            "name": _NAME, "namespace": {"type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
            "sectionName": {**_NAME, "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"},
            "port": {"type": "integer", "minimum": 1, "maximum": 65535}}}},
        "rules": {"type": "array", "maxItems": 16, "items": {**_OBJECT, "properties": {
            "matches": {"type": "array", "maxItems": 64, "items": {**_OBJECT, "properties": {
                "path": {**_OBJECT, "properties": {
                    "type": {"enum": ["Exact", "PathPrefix", "RegularExpression"]},
                    "value": {"type": "string", "maxLength": 1024, "pattern": "^/"}}}}}},
            "backendRefs": {"type": "array", "maxItems": 16, "items": {**_OBJECT, "required": ["name"], "properties": {
                "group": {"type": "string", "maxLength": 253}, "kind": {"type": "string", "maxLength": 63},
                "name": _NAME, "namespace": {"type": "string"},
                "port": {"type": "integer", "minimum": 1, "maximum": 65535},
                "weight": {"type": "integer", "minimum": 0, "maximum": 1000000}}}},
            "timeouts": {**_OBJECT, "properties": {"request": _DURATION, "backendRequest": _DURATION}}}}}}}}}

# Stand-ins for the kinds the test API server does not serve: it stores what it is sent.
STAND_INS = [("networking.k8s.io", "Ingress", "ingresses"), ("gateway.networking.k8s.io", "HTTPRoute", "httproutes")]


def render(values, namespace="ai"):
    rendered = helm.Chart.load(str(CHART)).render(values, name="lgw", namespace=namespace, is_install=True)
    return [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def gateway_of(documents):
    return next(d for d in documents if d["kind"] == "LlmGateway")


def test_the_values_reach_the_llm_gateway_and_its_crd_accepts_them():
    report = helm.lint(str(CHART), EXPOSED, strict=True, namespace="ai")
    assert report["errors"] == [], report
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]
    gateway = gateway_of(render(EXPOSED))
    jsonschema_rs.validate(strict_schemas()[("llmgateway.io/v1alpha1", "LlmGateway")], gateway)
    spec, values = gateway["spec"], EXPOSED["gateway"]
    for field in ("shutdown", "nodeSelector", "tolerations", "affinity", "priorityClassName",
                  "imagePullSecrets", "podAnnotations", "podLabels", "env"):
        assert spec[field] == values[field], field
    assert spec["serviceAnnotations"] == values["service"]["annotations"]
    assert spec["exposure"] == {
        "ingress": {"className": "nginx", "hosts": ["llm.example.com"], "paths": ["/"],
                    "tls": {"clusterIssuer": "letsencrypt"}},
        "httpRoute": {"hostnames": ["llm.example.com"], "paths": ["/"],
                      "parentRefs": [{"name": "public", "namespace": "gateways", "sectionName": "https"}]},
    }


def test_unset_values_leave_the_crd_defaults_and_an_empty_spread_is_kept():
    spec = gateway_of(render(None))["spec"]
    for field in ("shutdown", "exposure", "topologySpreadConstraints", "env", "serviceAnnotations"):
        assert field not in spec, field
    # [] turns the operator's default spread (zones, then nodes) off; it must not be dropped.
    spec = gateway_of(render({"gateway": {"topologySpreadConstraints": []}}))["spec"]
    assert spec["topologySpreadConstraints"] == []
    tls_only = {"gateway": {"exposure": {"requestTimeout": "15m", "ingress": {
        "enabled": True, "hosts": ["a.example.com"], "tls": {"enabled": True}}}}}
    exposure = gateway_of(render(tls_only))["spec"]["exposure"]
    assert exposure == {"requestTimeout": "15m",
                        "ingress": {"hosts": ["a.example.com"], "paths": ["/"], "tls": {}}}


@pytest.mark.parametrize("bad", [
    {"gateway": {"exposure": {"ingress": {"enabled": True, "host": "typo.example.com"}}}},
    {"gateway": {"exposure": {"httpRoute": {"parentRefs": [{"gateway": "public"}]}}}},
    {"gateway": {"shutdown": {"drainTimeout": "five minutes"}}},
])
def test_values_outside_the_schema_are_refused(bad):
    with pytest.raises(Exception):
        helm.Chart.load(str(CHART)).validate_schema(bad)


def stand_in_crd(group, kind, plural):
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


def test_the_operator_s_children_are_valid_kubernetes_objects():
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        extensions = client.ApiextensionsV1Api(api)
        for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        for stand_in in STAND_INS:
            extensions.create_custom_resource_definition(stand_in_crd(*stand_in))
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "llmgateways",
                                               gateway_of(render(EXPOSED, namespace="default")))
        with operator(kubeconfig, {"API_KEY_PEPPER": "exposure-test"}):
            children = wait_for_children(custom)
    for kind in ("Deployment", "Service", "Ingress"):
        kubernetes_validate.validate(children[kind], KUBERNETES_VERSION, strict=True)
    jsonschema_rs.validate(HTTP_ROUTE_SCHEMA, children["HTTPRoute"])
    assert_streaming_settings(children)


def wait_for_children(custom):
    """The gateway's children, once the operator has written all of them."""
    wanted = {"Deployment": ("apps", "deployments"), "Service": ("", "services"),
              "Ingress": ("networking.k8s.io", "ingresses"), "HTTPRoute": ("gateway.networking.k8s.io", "httproutes")}
    deadline = time.monotonic() + 30
    found = {}
    while len(found) < len(wanted):
        for kind, (group, plural) in wanted.items():
            if kind not in found:
                found[kind] = get(custom, group, plural)
                if found[kind] is None:
                    del found[kind]
        assert time.monotonic() < deadline, f"only {sorted(found)} written"
        time.sleep(0.2)
    return found


def get(custom, group, plural):
    """The object as the server stores it (raw JSON, not the client's models, which drop
    fields they do not know), or None."""
    try:
        if group:
            return custom.get_namespaced_custom_object(group, "v1", "default", plural, "main-gateway")
        response = client.CoreV1Api(custom.api_client).read_namespaced_service(
            "main-gateway", "default", _preload_content=False)
    except client.ApiException as error:
        if error.status == 404:
            return None
        raise
    return json.loads(response.data) if response.status == 200 else None


def assert_streaming_settings(children):
    pod = children["Deployment"]["spec"]["template"]["spec"]
    # 20 s delay + 600 s drain + 5 s for cut streams + 10 s to settle + 5 s of margin.
    assert pod["terminationGracePeriodSeconds"] == 640
    assert pod["nodeSelector"] == {"pool": "gateway"}
    assert pod["priorityClassName"] == "gateway-critical"
    assert [c["topologyKey"] for c in pod["topologySpreadConstraints"]] == [
        "topology.kubernetes.io/zone", "kubernetes.io/hostname"]
    # Besides the operator's own digest of what it applied.
    service_annotations = dict(children["Service"]["metadata"]["annotations"])
    assert service_annotations.pop("llmgateway.io/applied-hash")
    assert service_annotations == {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    ingress = children["Ingress"]
    annotations = ingress["metadata"]["annotations"]
    assert annotations["cert-manager.io/cluster-issuer"] == "letsencrypt"
    assert annotations["nginx.ingress.kubernetes.io/proxy-buffering"] == "off"
    # The drain (10m) is longer than the default provider total timeout (5m): it wins.
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "600"
    assert ingress["spec"]["tls"] == [{"hosts": ["llm.example.com"], "secretName": "main-gateway-tls"}]
    rule = children["HTTPRoute"]["spec"]["rules"][0]
    assert rule["timeouts"] == {"request": "10m"}
    assert rule["backendRefs"][0]["port"] == 8080
    for child in children.values():
        assert child["metadata"]["labels"]["llmgateway.io/gateway"] == "main"
        assert child["metadata"]["ownerReferences"][0]["kind"] == "LlmGateway"
