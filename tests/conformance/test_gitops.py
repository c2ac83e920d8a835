"""GitOps support: the Argo CD health script (run in Lua 5.1, Argo CD's dialect, through
`lupa`) on hand-made statuses and on the live statuses the real operator writes; the
argocd-cm snippet carrying it; the Flux and Argo CD examples pointing at real paths; and no
perpetual diff: every field of every sample reads back from the API server exactly as written
(defaults come from the schema, status only from the status subresource)."""

import base64
import pathlib
import time

import lupa.lua51 as lua51
import helm_python as helm
import pytest
import yaml
from kubernetes import client, config

from conftest import kube_test_server, operator

ROOT = pathlib.Path(__file__).resolve().parents[2]
GITOPS = ROOT / "deployments" / "gitops"
SAMPLES = ROOT / "deployments" / "kubernetes"
GROUP, VERSION = "llmgateway.io", "v1alpha1"
PLURALS = {"LlmProvider": "llmproviders", "RoutePolicy": "routepolicies", "ApiKey": "apikeys",
           "LlmGateway": "llmgateways", "LlmQuota": "llmquotas"}
SCRIPT = (GITOPS / "argocd" / "health.lua").read_text()


def health(obj: dict) -> tuple[str, str]:
    lua = lua51.LuaRuntime()
    lua.globals().obj = lua.table_from(obj, recursive=True)
    result = lua.execute(SCRIPT)
    return result["status"], result["message"]


def ready(status, reason, generation=1, observed=1, **spec):
    return {"metadata": {"generation": generation}, "spec": spec,
            "status": {"observedGeneration": observed,
                       "conditions": [{"type": "Ready", "status": status, "reason": reason, "message": "m"}]}}


@pytest.mark.parametrize("obj, expected", [
    ({"metadata": {"generation": 1}, "spec": {}}, "Progressing"),
    (ready("True", "Compiled"), "Healthy"),
    (ready("True", "Compiled", generation=2, observed=1), "Progressing"),
    (ready("False", "InvalidRoutes"), "Degraded"),
    (ready("False", "SecretNotFound"), "Degraded"),
    (ready("False", "ModelServerProgressing"), "Progressing"),
    (ready("False", "Progressing"), "Progressing"),
    (ready("True", "KeyReady", disabled=True), "Suspended"),
])
def test_the_health_script_reads_the_ready_condition(obj, expected):
    assert health(obj)[0] == expected


def test_the_argocd_snippet_carries_the_script_for_every_kind():
    snippet = yaml.safe_load((GITOPS / "argocd" / "argocd-cm.yaml").read_text())
    for kind in PLURALS:
        assert snippet["data"][f"resource.customizations.health.{GROUP}_{kind}"] == SCRIPT, kind


def flux_documents():
    return [d for d in yaml.safe_load_all((GITOPS / "flux" / "llm-gateway.yaml").read_text()) if d]


def argocd_applications():
    return [d for d in yaml.safe_load_all((GITOPS / "argocd" / "application.yaml").read_text()) if d]


def test_the_gitops_examples_point_at_real_paths():
    applications = {a["metadata"]["name"]: a for a in argocd_applications()}
    assert {a["kind"] for a in applications.values()} == {"Application"}
    assert {n: a["spec"]["source"]["path"] for n, a in applications.items()} == {
        "llm-gateway-crds": "charts/llm-gateway-crds", "llm-gateway": "charts/llm-gateway"}
    for application in applications.values():
        assert (ROOT / application["spec"]["source"]["path"] / "Chart.yaml").exists()
    # The CRDs sync first where the Applications are synced in waves, and are never pruned.
    wave = {n: int(a["metadata"]["annotations"]["argocd.argoproj.io/sync-wave"]) for n, a in applications.items()}
    assert wave["llm-gateway-crds"] < wave["llm-gateway"]
    assert applications["llm-gateway-crds"]["spec"]["syncPolicy"]["automated"]["prune"] is False
    assert "finalizers" not in applications["llm-gateway-crds"]["metadata"]
    assert applications["llm-gateway"]["spec"]["syncPolicy"]["retry"]

    documents = flux_documents()
    releases = {d["metadata"]["name"]: d for d in documents if d["kind"] == "HelmRelease"}
    assert {n: r["spec"]["chart"]["spec"]["chart"] for n, r in releases.items()} == {
        "llm-gateway-crds": "./charts/llm-gateway-crds", "llm-gateway": "./charts/llm-gateway"}
    for release in releases.values():
        assert (ROOT / release["spec"]["chart"]["spec"]["chart"] / "Chart.yaml").exists()
    assert releases["llm-gateway"]["spec"]["dependsOn"] == [{"name": "llm-gateway-crds"}]
    kustomization = next(d for d in documents if d["kind"] == "Kustomization")
    assert (ROOT / kustomization["spec"]["path"]).is_dir()
    # Flux resolves a Kustomization's dependsOn to Kustomizations only.
    kustomizations = {d["metadata"]["name"] for d in documents if d["kind"] == "Kustomization"}
    assert {d["name"] for d in kustomization["spec"].get("dependsOn", [])} <= kustomizations


def rendered_objects(chart_path, values, release):
    chart = helm.Chart.load(str(ROOT / chart_path))
    rendered = chart.render(values, name=release, namespace="ai", is_install=True)
    return {(d["kind"], d["metadata"]["name"])
            for path, text in rendered.items() if path.endswith(".yaml")
            for d in yaml.safe_load_all(text) if d}


def assert_one_owner_each(owners):
    """`owners`: {who: set of (kind, name)}; no object in two of them."""
    seen = {}
    for who, objects in owners.items():
        assert objects, f"{who} renders nothing"
        for obj in objects:
            assert obj not in seen, f"{obj} is managed by both {seen[obj]} and {who}"
            seen[obj] = who


def test_the_flux_example_gives_every_object_one_owner():
    documents = flux_documents()
    owners = {f"HelmRelease {d['metadata']['name']}": rendered_objects(
                  d["spec"]["chart"]["spec"]["chart"], d["spec"].get("values"),
                  d["spec"].get("releaseName", d["metadata"]["name"]))
              for d in documents if d["kind"] == "HelmRelease"}
    for kustomization in (d for d in documents if d["kind"] == "Kustomization"):
        owners[f"Kustomization {kustomization['metadata']['name']}"] = {
            (d["kind"], d["metadata"]["name"])
            for path in sorted((ROOT / kustomization["spec"]["path"]).glob("*.yaml"))
            for d in yaml.safe_load_all(path.read_text()) if d}
    assert_one_owner_each(owners)
    crds = {name for kind, name in owners["HelmRelease llm-gateway-crds"] if kind == "CustomResourceDefinition"}
    assert len(crds) == 5, owners["HelmRelease llm-gateway-crds"]


def test_the_argocd_example_gives_every_object_one_owner():
    owners = {f"Application {a['metadata']['name']}": rendered_objects(
                  a["spec"]["source"]["path"], a["spec"]["source"].get("helm", {}).get("valuesObject"),
                  a["metadata"]["name"])
              for a in argocd_applications()}
    assert_one_owner_each(owners)
    assert {kind for kind, _ in owners["Application llm-gateway-crds"]} == {"CustomResourceDefinition"}


def is_subset(desired, live, path="") -> list[str]:
    """Fields of `desired` whose live value differs (what a GitOps diff would show)."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [path]
        return [p for k, v in desired.items() for p in is_subset(v, live.get(k), f"{path}.{k}")]
    if isinstance(desired, list):
        if not isinstance(live, list) or len(live) != len(desired):
            return [path]
        return [p for i, (d, l) in enumerate(zip(desired, live)) for p in is_subset(d, l, f"{path}[{i}]")]
    return [] if desired == live else [f"{path}: {desired!r} != {live!r}"]


@pytest.fixture()
def cluster():
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        extensions = client.ApiextensionsV1Api(api)
        for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        with operator(kubeconfig):
            yield api


def test_samples_read_back_unchanged_and_get_the_health_argo_cd_would_show(cluster):
    core, custom = client.CoreV1Api(cluster), client.CustomObjectsApi(cluster)
    samples = [d for path in sorted(SAMPLES.glob("*.yaml")) for d in yaml.safe_load_all(path.read_text()) if d]
    for document in samples:
        if document["kind"] == "Secret":
            core.create_namespaced_secret("default", document)
        else:
            custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURALS[document["kind"]], document)
    expected = {("LlmProvider", "fake"): "Healthy", ("LlmProvider", "openai"): "Degraded",
                ("RoutePolicy", "default"): "Healthy", ("ApiKey", "search-team"): "Healthy",
                ("LlmGateway", "main"): "Progressing"}
    deadline = time.monotonic() + 20
    while True:
        seen = {}
        for document in samples:
            if document["kind"] == "Secret":
                continue
            live = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURALS[document["kind"]],
                                                       document["metadata"]["name"])
            seen[(document["kind"], document["metadata"]["name"])] = health(live)[0]
        if seen == expected:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    # No perpetual diff: every field a sample sets reads back as written.
    for document in samples:
        name = document["metadata"]["name"]
        if document["kind"] == "Secret":
            live = core.read_namespaced_secret(name, "default").data
            written = {k: base64.b64encode(v.encode()).decode() for k, v in document["stringData"].items()}
            assert live == written, name
            continue
        live = custom.get_namespaced_custom_object(GROUP, VERSION, "default", PLURALS[document["kind"]], name)
        differences = is_subset({k: v for k, v in document.items() if k != "metadata"}, live)
        assert differences == [], f"{document['kind']} {name}: {differences}"


CHART = ROOT / "charts" / "llm-gateway"
CHART_VALUE_SETS = [None] + sorted(p.name for p in (CHART / "ci").glob("*.yaml"))


def template(value_set):
    """`helm template` as Argo CD runs it: no cluster, so `lookup` finds nothing."""
    values = yaml.safe_load((CHART / "ci" / value_set).read_text()) if value_set else {}
    return helm.Chart.load(str(CHART)).render(values, name="lgw", namespace="ai", is_install=True)


@pytest.mark.parametrize("value_set", CHART_VALUE_SETS)
def test_two_renders_are_identical_so_a_sync_has_nothing_to_change(value_set):
    # A random value in a render (a generated pepper was one) is a perpetual diff under GitOps,
    # and a pepper that changes with every sync invalidates every issued key.
    assert template(value_set) == template(value_set)


def test_the_chart_renders_no_pepper_and_points_the_operator_at_one_it_keeps():
    documents = [doc for path, text in template(None).items() if path.endswith(".yaml")
                 for doc in yaml.safe_load_all(text) if doc]
    assert not [d for d in documents if d["kind"] == "Secret"], "no Secret with a secret in it"
    operator_env = next(c["env"] for d in documents if d["kind"] == "Deployment"
                        and d["metadata"]["name"].endswith("-operator")
                        for c in d["spec"]["template"]["spec"]["containers"])
    names = {e["name"]: e.get("value") for e in operator_env}
    assert names["API_KEY_PEPPER_SECRET"] == "lgw-llm-gateway-pepper"
    assert "API_KEY_PEPPER" not in names
