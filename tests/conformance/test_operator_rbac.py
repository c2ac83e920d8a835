"""The operator, cluster-wide and in namespaced mode (`operator.watchNamespaces`), stays inside
the RBAC the chart renders for it: every request the real operator binary makes while it reconciles a gateway, a
provider, a policy and a key (and prunes a child) is checked against the chart's Roles as RBAC
would decide it (in namespaced mode with no ClusterRole at all, and a namespace it was not
given is left alone). The
test API server records the caller of each request (the bearer token)."""

import json
import pathlib
import time
import urllib.parse
import urllib.request

import helm_python as helm
import pytest
import yaml
from kubernetes import client, config

from conftest import kube_test_server, operator

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-gateway"
RELEASE_NAMESPACE = "ops"
WATCHED = ["team-a", "team-b"]
OPERATOR_USER = "system:serviceaccount:ops:lgw-llm-gateway"
GROUP, VERSION = "llmgateway.io", "v1alpha1"


def rendered(values):
    out = helm.Chart.load(str(CHART)).render(values, name="lgw", namespace=RELEASE_NAMESPACE,
                                             is_install=True)
    return [d for path, text in sorted(out.items()) if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d]


def operator_env(documents):
    deployment = next(d for d in documents if d["kind"] == "Deployment"
                      and d["metadata"]["name"].endswith("-operator"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e["value"] for e in container["env"] if "value" in e}


def roles_by_namespace(documents):
    """The rules bound to the operator's ServiceAccount, per namespace ("" for cluster-wide)."""
    roles = {(d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d["rules"]
             for d in documents if d["kind"] in ("Role", "ClusterRole")}
    bound = {}
    for binding in (d for d in documents if d["kind"] in ("RoleBinding", "ClusterRoleBinding")):
        if not any(s["kind"] == "ServiceAccount" and s["name"] == "lgw-llm-gateway"
                   for s in binding["subjects"]):
            continue
        namespace = binding["metadata"].get("namespace", "")
        ref = binding["roleRef"]
        role_namespace = "" if ref["kind"] == "ClusterRole" else namespace
        bound.setdefault(namespace, []).extend(roles[(ref["kind"], role_namespace, ref["name"])])
    return bound


def attributes(request):
    """(namespace, group, resource, verb, name) as RBAC sees the request; None for discovery."""
    parts = request["path"].strip("/").split("/")
    query = urllib.parse.parse_qs(request["query"])
    if parts[:2] == ["api", "v1"]:
        group, rest = "", parts[2:]
    elif parts[0] == "apis" and len(parts) >= 3:
        group, rest = parts[1], parts[3:]
    else:
        return None
    namespace = ""
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return None
    resource = rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")
    name = rest[1] if len(rest) >= 2 else None
    watching = query.get("watch", [""])[0] in ("true", "1")
    verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(
        request["method"], "get" if name else ("watch" if watching else "list"))
    return namespace, group, resource, verb, name


def permitted(rules, group, resource, verb, name):
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", [])
               and verb in r["verbs"] and (not r.get("resourceNames") or name in r["resourceNames"])
               for r in rules)


def requests_of(kubeconfig, user):
    server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    with urllib.request.urlopen(f"{server}/__fixture/requests") as response:
        return [r for r in json.load(response) if r["user"] == user]


def as_user(kubeconfig, user):
    document = yaml.safe_load(kubeconfig.read_text())
    for entry in document["users"]:
        entry["user"] = {"token": user}
    path = kubeconfig.with_name("operator-kubeconfig")
    path.write_text(yaml.safe_dump(document))
    return path


def until(what, check, limit=30):
    deadline = time.monotonic() + limit
    while True:
        value = check()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {limit} s"
        time.sleep(0.2)


def resources(namespace):
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "openai"},
              "stringData": {"apiKey": "sk-test"}}
    provider = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LlmProvider", "metadata": {"name": "openai"},
                "spec": {"type": "openai", "credentials": {"secretRef": {"name": "openai", "key": "apiKey"}}}}
    policy = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "RoutePolicy", "metadata": {"name": "routes"},
              "spec": {"routes": [{"model": "gpt", "targets": [{"provider": "openai", "model": "gpt-4o"}]}]}}
    key = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ApiKey", "metadata": {"name": "caller"},
           "spec": {"secretName": "caller-key", "owner": "team"}}
    keyless = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "ApiKey", "metadata": {"name": "pod-caller"},
               "spec": {"serviceAccountRef": {"name": "chat"}, "owner": "team"}}
    gateway = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LlmGateway", "metadata": {"name": "main"},
               "spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 2}, "auth": {"serviceAccounts": {}}}}
    return secret, [("llmproviders", provider), ("routepolicies", policy), ("apikeys", key),
                    ("apikeys", keyless), ("llmgateways", gateway)]


@pytest.mark.parametrize("namespaced", [True, False], ids=["namespaced", "cluster-wide"])
def test_the_operator_needs_only_the_rbac_the_chart_renders(namespaced):
    documents = rendered({"operator": {"watchNamespaces": WATCHED}, "gateway": {"enabled": False}}
                         if namespaced else {})
    bound = roles_by_namespace(documents)
    if namespaced:
        assert "" not in bound, "namespaced mode binds no ClusterRole"
        assert not [d for d in documents if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    env = operator_env(documents)
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
        extensions = client.ApiextensionsV1Api(api)
        for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        for namespace in [RELEASE_NAMESPACE, *WATCHED, "elsewhere"]:
            core.create_namespace({"metadata": {"name": namespace}})
        for namespace in ["team-a", "elsewhere"]:
            secret, objects = resources(namespace)
            core.create_namespaced_secret(namespace, secret)
            for plural, body in objects:
                custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)
        operator_env_vars = {**env, "POD_NAMESPACE": RELEASE_NAMESPACE, "POD_NAME": "operator-0",
                             "LEADER_ELECTION": "true", "LEASE_DURATION": "3s",
                             "KUBECONFIG": str(as_user(kubeconfig, OPERATOR_USER))}
        with operator(kubeconfig, operator_env_vars):
            apps = client.AppsV1Api(api)
            autoscaling = client.AutoscalingV2Api(api)

            def gateway_status():
                status = custom.get_namespaced_custom_object(GROUP, VERSION, "team-a", "llmgateways",
                                                             "main").get("status") or {}
                return status if status.get("observedGeneration") == 1 else None

            until("the team-a gateway reconciled", gateway_status)
            until("the team-a key generated", lambda: any(
                s.metadata.name == "caller-key" for s in core.list_namespaced_secret("team-a").items))
            assert autoscaling.list_namespaced_horizontal_pod_autoscaler("team-a").items
            # Autoscaling off: the operator prunes the autoscaler (a list and a delete).
            custom.patch_namespaced_custom_object(GROUP, VERSION, "team-a", "llmgateways", "main",
                                                  {"spec": {"autoscaling": None, "replicas": 1}})
            until("the autoscaler pruned", lambda: not autoscaling.list_namespaced_horizontal_pod_autoscaler(
                "team-a").items)
            until("the keyless key reconciled", lambda: (custom.get_namespaced_custom_object(
                GROUP, VERSION, "team-a", "apikeys", "pod-caller").get("status") or {}).get("keyId"))
            if namespaced:
                assert not apps.list_namespaced_deployment("elsewhere").items, "an unwatched namespace"
                assert not custom.get_namespaced_custom_object(GROUP, VERSION, "elsewhere", "llmgateways",
                                                               "main").get("status")
            made = requests_of(kubeconfig, OPERATOR_USER)
    checked = [a for a in map(attributes, made) if a]
    assert checked, "the operator's requests were recorded under its ServiceAccount"
    denied = [a for a in checked
              if not permitted(bound.get(a[0], []) + bound.get("", []), *a[1:])]
    assert not denied, f"requests RBAC would deny: {sorted(set(denied))}"
    # Each kind of write the Roles grant was exercised, so none of them is there for nothing.
    used = {(a[1], a[2].split("/")[0], a[3]) for a in checked}
    for expected in [("", "secrets", "create"), ("apps", "deployments", "patch"),
                     ("autoscaling", "horizontalpodautoscalers", "delete"),
                     (GROUP, "apikeys", "patch"), ("coordination.k8s.io", "leases", "update"),
                     ("", "serviceaccounts", "get")]:
        assert expected in used, expected


def test_a_gateway_the_namespaced_operator_would_never_see_is_refused_at_render():
    with pytest.raises(Exception, match="operator.watchNamespaces does not list"):
        rendered({"operator": {"watchNamespaces": WATCHED}})
    watched_here = rendered({"operator": {"watchNamespaces": [*WATCHED, RELEASE_NAMESPACE]}})
    assert any(d["kind"] == "LlmGateway" for d in watched_here)
