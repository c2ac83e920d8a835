"""The Helm charts (`charts/llm-gateway` and `charts/llm-gateway-crds`) through real Helm v4
(the `helm-python-sdk` wheel): lint, render with the default values and every value set in the
chart's `ci/` folder, check every rendered document against the Kubernetes schemas
(`kubernetes-validate`) or, for our own kinds, against our CRDs with unknown fields refused;
then install both charts into the in-repo test API server, the CRD chart first and the main
chart with its default values (the default LlmGateway included), and watch the real operator
binary reconcile that gateway. The CRDs are templates of their own chart
(`templates/crds.yaml` from `files/crds/`): Helm itself installs, upgrades and, on uninstall,
keeps them in that server, and takes over CRDs an old chart's `crds/` folder left unowned once
they are labelled and annotated (docs/upgrading.md)."""

import base64
import copy
import importlib.util
import json
import pathlib
import re
import shutil
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
# The CRDs are a chart of their own, installed and upgraded before the main chart: Helm maps
# every object of a release to a served API before it creates any, so one release cannot hold
# both the CRDs and the default LlmGateway.
CRD_CHART = ROOT / "charts" / "llm-gateway-crds"
KUBERNETES_VERSION = "1.33.0"
VALUE_SETS = [None] + sorted(p.name for p in (CHART / "ci").glob("*.yaml"))
# Kinds of the Prometheus Operator: no schema ships offline; checked for shape only.
MONITORING = {"ServiceMonitor", "PodMonitor", "PrometheusRule"}
CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding"}
# Where the CRD chart keeps the generated CRDs it renders (`crdgen` writes them; never `crds/`,
# whose CRDs Helm installs once, never upgrades, and which would clash with the templates).
CHART_CRDS = CRD_CHART / "files" / "crds"
CRD_NAMES = {"apikeys.llmgateway.io", "llmgateways.llmgateway.io", "llmproviders.llmgateway.io",
             "routepolicies.llmgateway.io", "llmquotas.llmgateway.io"}


def values(name):
    return yaml.safe_load((CHART / "ci" / name).read_text()) if name else None


def render(name, namespace="ai"):
    return helm_render(values(name), namespace)


def helm_render(values_, namespace="ai", chart=CHART, release="lgw"):
    rendered = helm.Chart.load(str(chart)).render(values_, name=release, namespace=namespace, is_install=True)
    return [doc for path, text in sorted(rendered.items()) if path.endswith(".yaml")
            for doc in yaml.safe_load_all(text) if doc]


def assert_lints_without_warnings(chart, values_):
    report = helm.lint(str(chart), values_, strict=True, namespace="ai")
    assert report["errors"] == [], report
    # Helm severities: 1 info, 2 warning, 3 error.
    assert all(m["severity"] < 2 for m in report["messages"]), report["messages"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_chart_lints_without_warnings(value_set):
    assert_lints_without_warnings(CHART, values(value_set))


def test_the_crd_chart_lints_without_warnings():
    assert_lints_without_warnings(CRD_CHART, None)


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_rendered_document_is_valid(value_set):
    documents = render(value_set)
    assert documents, "nothing rendered"
    ours = strict_schemas()
    for document in documents:
        kind = document["kind"]
        assert kind != "CustomResourceDefinition", "the CRDs are the llm-gateway-crds chart's"
        where = f"{value_set or 'defaults'}: {kind} {document['metadata'].get('name')}"
        if document["apiVersion"].startswith("llmgateway.io/"):
            # Unknown fields refused: kubectl and Argo CD refuse them where Helm and pruning drop them.
            jsonschema_rs.validate(ours[(document["apiVersion"], kind)], document)
        elif kind in MONITORING:
            assert document["apiVersion"] == "monitoring.coreos.com/v1", where
            assert document["spec"], where
        else:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
        if kind not in CLUSTER_SCOPED:
            assert document["metadata"].get("namespace") == "ai", where


def test_the_crd_chart_s_crds_are_the_generated_ones():
    generated = {p.name: p.read_text() for p in (ROOT / "crds" / "yaml").glob("*.yaml")}
    shipped = {p.name: p.read_text() for p in CHART_CRDS.glob("*.yaml")}
    assert generated and shipped == generated, (
        "run `cargo run -p llm-gateway-crds --bin crdgen`, or copy crds/yaml/*.yaml into "
        "charts/llm-gateway-crds/files/crds/")
    assert {yaml.safe_load(text)["metadata"]["name"] for text in generated.values()} == CRD_NAMES
    # A crds/ folder would be installed by Helm before the templates, unowned, and the templated
    # copies would then be refused as existing resources; the main chart has no CRD at all.
    for chart in (CHART, CRD_CHART):
        assert not (chart / "crds").exists(), chart
        assert helm.Chart.load(str(chart)).crds == [], chart
    assert not (CHART / "files" / "crds").exists(), "the CRDs moved to charts/llm-gateway-crds"


def crds_of(documents):
    return {d["metadata"]["name"]: d for d in documents if d["kind"] == "CustomResourceDefinition"}


def test_the_crd_chart_renders_the_crds_as_generated_with_keep():
    documents = helm_render(None, namespace="default", chart=CRD_CHART, release="llm-gateway-crds")
    rendered = crds_of(documents)
    assert len(rendered) == len(documents), "the CRD chart renders CRDs only"
    generated = {}
    for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
        crd = yaml.safe_load(path.read_text())
        generated[crd["metadata"]["name"]] = crd
    assert set(rendered) == set(generated) == CRD_NAMES
    for name, crd in rendered.items():
        kubernetes_validate.validate(crd, KUBERNETES_VERSION, strict=True)
        crd = copy.deepcopy(crd)
        metadata = crd.pop("metadata")
        assert set(metadata) == {"name", "annotations", "labels"}, name
        assert "namespace" not in metadata, name
        assert metadata["annotations"] == {"helm.sh/resource-policy": "keep"}, name
        assert metadata["labels"]["app.kubernetes.io/instance"] == "llm-gateway-crds", name
        assert metadata["labels"]["app.kubernetes.io/part-of"] == "llm-gateway", name
        assert crd == {k: v for k, v in generated[name].items() if k != "metadata"}, name


def test_the_crd_chart_takes_no_values():
    chart = helm.Chart.load(str(CRD_CHART))
    chart.validate_schema({})
    # The main chart's former switch, or any other value, is a mistake worth an error.
    for bad in ({"crds": {"install": False}}, {"gateway": {"enabled": False}}):
        with pytest.raises(Exception):
            chart.validate_schema(bad)


def test_the_chart_s_version_is_the_release_s():
    """`helm package --version X --app-version X` from tag vX (release.yml) must change nothing
    else: both charts, their appVersion (the operator's image tag) and the binaries (the
    operator's default gateway image) carry one version."""
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    crd_chart = yaml.safe_load((CRD_CHART / "Chart.yaml").read_text())
    workspace = re.search(r'^\[workspace\.package\]\nversion = "([^"]+)"', (ROOT / "Cargo.toml").read_text(), re.M)
    assert workspace, "Cargo.toml has no [workspace.package] version"
    assert chart["version"] == str(chart["appVersion"]) == workspace.group(1)
    assert crd_chart["version"] == str(crd_chart["appVersion"]) == workspace.group(1)
    assert (chart["name"], crd_chart["name"]) == ("llm-gateway", "llm-gateway-crds")
    assert chart["kubeVersion"] == crd_chart["kubeVersion"]
    assert re.fullmatch(r"(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?", chart["version"])
    assert yaml.safe_load((CHART / "values.yaml").read_text())["operator"]["image"]["tag"] == "", (
        "the operator's image tag follows appVersion")


def test_values_outside_the_schema_are_refused():
    chart = helm.Chart.load(str(CHART))
    chart.validate_schema({"gateway": {"replicas": 2}})
    for bad in ({"gateway": {"redis": {"onUnavailable": "maybe"}}}, {"operator": {"replica": 2}}):
        with pytest.raises(Exception):
            chart.validate_schema(bad)


def helm_action(cfg, verb, chart, values_, namespace="default", release="lgw", **options):
    """`helm install` or `helm upgrade` through the SDK's C entry points, which take
    `disable_openapi_validation`: the test API server serves no OpenAPI document, and
    helm-python-sdk 0.2.2's Python wrappers do not pass that option."""
    from helm_python import _native
    from helm_python.config import _loads_obj, _opts

    handle, ref = cfg._chart_args(str(chart))
    return _loads_obj(_native.call_string(
        f"helm_{verb}", cfg._raw(), cfg._context_arg(None), handle, ref, release, json.dumps(values_),
        _opts(namespace=namespace, timeout_seconds=60, disable_openapi_validation=True, **options)))


def helm_config(kubeconfig):
    """What one `helm` command starts from; each command of the docs gets a fresh one, so no
    discovery cached by an earlier command helps a later one. Releases are kept in memory:
    use the same config for every command on one release."""
    return helm.Config(kubeconfig_path=str(kubeconfig), namespace="default", storage_driver="memory")


def assert_owned_by(extensions, release, namespace="default"):
    for name in CRD_NAMES:
        metadata = extensions.read_custom_resource_definition(name).metadata
        assert metadata.labels["app.kubernetes.io/managed-by"] == "Helm", name
        assert metadata.annotations["meta.helm.sh/release-name"] == release, name
        assert metadata.annotations["meta.helm.sh/release-namespace"] == namespace, name
        assert metadata.annotations["helm.sh/resource-policy"] == "keep", name


def test_the_two_charts_install_with_default_values_and_the_operator_reconciles_its_gateway():
    """docs/install.md: `helm install llm-gateway-crds charts/llm-gateway-crds`, then `helm install
    llm-gateway charts/llm-gateway` with the default values, whose LlmGateway `main` Helm maps
    to an API before it creates anything."""
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        extensions = client.ApiextensionsV1Api(api)
        # Why two charts: the main chart alone, into a cluster without the CRDs, is refused.
        with pytest.raises(Exception, match="ensure CRDs are installed first"):
            helm_action(helm_config(kubeconfig), "install", CHART, {}, release="llm-gateway")
        assert not extensions.list_custom_resource_definition().items

        helm_action(helm_config(kubeconfig), "install", CRD_CHART, {}, release="llm-gateway-crds")
        assert_owned_by(extensions, "llm-gateway-crds")
        release = helm_action(helm_config(kubeconfig), "install", CHART, {}, release="llm-gateway")
        assert release["status"] == "deployed", release["status"]
        assert "kind: CustomResourceDefinition" not in release["manifest"]

        # The pepper Secret is the operator's to create (a rendered one changes on every render).
        with operator(kubeconfig, {"API_KEY_PEPPER_SECRET": "llm-gateway-pepper", "POD_NAMESPACE": "default"}):
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
            assert "llm-gateway-operator" in names
            assert gateway["metadata"]["annotations"]["meta.helm.sh/release-name"] == "llm-gateway"
            assert status["url"] == "http://main-gateway.default.svc.cluster.local:80"
            hpa = client.AutoscalingV2Api(api).read_namespaced_horizontal_pod_autoscaler("main-gateway", "default")
            assert (hpa.spec.min_replicas, hpa.spec.max_replicas) == (3, 10)
            pepper = client.CoreV1Api(api).read_namespaced_secret("llm-gateway-pepper", "default")
            assert len(base64.b64decode(pepper.data["pepper"])) == 64, "the operator created a pepper"


def newer_crd_chart(tmp_path):
    """The next release's CRD chart: its ApiKey CRD gained a printer column."""
    newer = tmp_path / "llm-gateway-crds"
    shutil.copytree(CRD_CHART, newer)
    crd_file = newer / "files" / "crds" / "apikeys.llmgateway.io.yaml"
    columns = "  - additionalPrinterColumns:\n"
    assert columns in crd_file.read_text()
    crd_file.write_text(crd_file.read_text().replace(
        columns, columns + "    - {jsonPath: .metadata.creationTimestamp, name: Created, type: date}\n", 1))
    return newer


def test_helm_upgrades_the_crds_and_uninstall_keeps_them_and_their_resources(tmp_path):
    newer = newer_crd_chart(tmp_path)
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
        crds, main = helm_config(kubeconfig), helm_config(kubeconfig)
        helm_action(crds, "install", CRD_CHART, {}, release="llm-gateway-crds")
        helm_action(main, "install", CHART, {}, release="llm-gateway")
        custom.create_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "apikeys", {
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey", "metadata": {"name": "team"},
            "spec": {"owner": "team", "secretName": "team-key"}})

        # docs/upgrading.md: the CRD chart first, then the main chart.
        helm_action(crds, "upgrade", newer, {}, release="llm-gateway-crds")
        apikeys = extensions.read_custom_resource_definition("apikeys.llmgateway.io")
        assert "Created" in [c.name for c in apikeys.spec.versions[0].additional_printer_columns], (
            "helm upgrade did not upgrade the CRD")
        assert_owned_by(extensions, "llm-gateway-crds")
        helm_action(main, "upgrade", CHART, {}, release="llm-gateway")
        custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "llmgateways", "main")

        # The main release owns its default LlmGateway, not the CRDs nor what users created.
        main.uninstall("llm-gateway")
        with pytest.raises(client.ApiException) as gone:
            custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "llmgateways", "main")
        assert gone.value.status == 404
        assert CRD_NAMES <= {c.metadata.name for c in extensions.list_custom_resource_definition().items}
        custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "apikeys", "team")
        crds.uninstall("llm-gateway-crds")
        assert CRD_NAMES <= {c.metadata.name for c in extensions.list_custom_resource_definition().items}, (
            "helm uninstall deleted a CRD")
        custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "apikeys", "team")
        assert_owned_by(extensions, "llm-gateway-crds")

        # Kept CRDs still name their release: installing it again takes them back as they are.
        helm_action(helm_config(kubeconfig), "install", newer, {}, release="llm-gateway-crds")
        helm_action(helm_config(kubeconfig), "install", CHART, {}, release="llm-gateway")
        custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "apikeys", "team")


def old_chart_with_a_crds_folder(tmp_path):
    """A stand-in for the charts before llm-gateway-crds (0.1.0): the CRDs in a `crds/` folder,
    which Helm creates on install without any ownership metadata and never touches again."""
    old = tmp_path / "old" / "llm-gateway"
    (old / "crds").mkdir(parents=True)
    (old / "Chart.yaml").write_text('apiVersion: v2\nname: llm-gateway\nversion: 0.1.0\nappVersion: "0.1.0"\n')
    for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
        shutil.copy(path, old / "crds" / path.name)
    return old


@pytest.mark.parametrize("adopt", ["label-and-annotate", "take-ownership"])
def test_crds_from_an_old_crds_folder_move_to_the_crd_chart(tmp_path, adopt):
    """docs/upgrading.md, "From a chart with a crds/ folder"."""
    with kube_test_server() as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        extensions, custom = client.ApiextensionsV1Api(api), client.CustomObjectsApi(api)
        main = helm_config(kubeconfig)
        helm_action(main, "install", old_chart_with_a_crds_folder(tmp_path), {}, release="llm-gateway")
        for name in CRD_NAMES:
            labels = extensions.read_custom_resource_definition(name).metadata.labels or {}
            assert "app.kubernetes.io/managed-by" not in labels, name
        custom.create_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "apikeys", {
            "apiVersion": "llmgateway.io/v1alpha1", "kind": "ApiKey", "metadata": {"name": "team"},
            "spec": {"owner": "team", "secretName": "team-key"}})

        # As they are, Helm refuses to take them into a release.
        with pytest.raises(Exception, match="invalid ownership metadata"):
            helm_action(helm_config(kubeconfig), "install", CRD_CHART, {}, release="llm-gateway-crds")

        crds = helm_config(kubeconfig)
        if adopt == "label-and-annotate":
            # kubectl label crd <each> app.kubernetes.io/managed-by=Helm; kubectl annotate crd <each>
            # meta.helm.sh/release-name=llm-gateway-crds meta.helm.sh/release-namespace=default
            for name in CRD_NAMES:
                extensions.patch_custom_resource_definition(name, {"metadata": {
                    "labels": {"app.kubernetes.io/managed-by": "Helm"},
                    "annotations": {"meta.helm.sh/release-name": "llm-gateway-crds",
                                    "meta.helm.sh/release-namespace": "default"}}})
            helm_action(crds, "install", CRD_CHART, {}, release="llm-gateway-crds")
        else:
            helm_action(crds, "install", CRD_CHART, {}, release="llm-gateway-crds", take_ownership=True)
        assert_owned_by(extensions, "llm-gateway-crds")

        # Then the main release moves to the new chart, its default LlmGateway included.
        helm_action(main, "upgrade", CHART, {}, release="llm-gateway")
        custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "llmgateways", "main")
        custom.get_namespaced_custom_object("llmgateway.io", "v1alpha1", "default", "apikeys", "team")
        helm_action(crds, "upgrade", newer_crd_chart(tmp_path), {}, release="llm-gateway-crds")
        apikeys = extensions.read_custom_resource_definition("apikeys.llmgateway.io")
        assert "Created" in [c.name for c in apikeys.spec.versions[0].additional_printer_columns]


def test_the_raw_manifests_are_the_chart_rendered():
    spec = importlib.util.spec_from_file_location("render", ROOT / "deployments" / "manifests" / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "deployments" / "manifests" / "llm-gateway.yaml").read_text()
    assert committed == module.render(), "run: python3 deployments/manifests/render.py"
    for document in yaml.safe_load_all(committed):
        if document:
            kubernetes_validate.validate(document, KUBERNETES_VERSION, strict=True)
