"""The official Python `kubernetes` client as an outside client of the in-repo test API server
(`tests/test-apiserver`): apply our CRDs, wait for Established, apply the example resources,
get, server-side apply with a conflict, watch, delete. A fixture bug that kube-rs tolerates
often breaks another client, which is why this suite exists."""

import pathlib

import pytest
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from conftest import kube_test_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
GROUP, VERSION = "llmgateway.io", "v1alpha1"
PLURALS = {"LlmProvider": "llmproviders", "RoutePolicy": "routepolicies", "ApiKey": "apikeys"}


@pytest.fixture(scope="module")
def api_client():
    with kube_test_server() as kubeconfig:
        yield config.new_client_from_config(config_file=str(kubeconfig))


def test_crds_examples_ssa_conflict_watch_and_delete(api_client):
    extensions = client.ApiextensionsV1Api(api_client)
    for path in sorted((ROOT / "crds" / "yaml").glob("*.yaml")):
        extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
    for crd in extensions.list_custom_resource_definition().items:
        conditions = {c.type: c.status for c in crd.status.conditions}
        assert conditions.get("Established") == "True", crd.metadata.name

    core = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    for path in sorted((ROOT / "deployments" / "standalone").glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if document["kind"] == "Secret":
                core.create_namespaced_secret("default", document)
            else:
                custom.create_namespaced_custom_object(GROUP, VERSION, "default", PLURALS[document["kind"]], document)
    providers = custom.list_namespaced_custom_object(GROUP, VERSION, "default", "llmproviders")
    assert {"fake", "openai", "flaky"} <= {p["metadata"]["name"] for p in providers["items"]}
    secret = core.read_namespaced_secret("example-api-key", "default")
    assert secret.string_data is None and "apiKey" in secret.data, "stringData folded into data"

    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "LlmProvider",
            "metadata": {"name": "ssa"}, "spec": {"type": "fake", "maxConcurrency": 5}}
    custom.patch_namespaced_custom_object(GROUP, VERSION, "default", "llmproviders", "ssa", body,
                                          field_manager="first", _content_type="application/apply-patch+yaml")
    body["spec"]["maxConcurrency"] = 7
    with pytest.raises(ApiException) as conflict:
        custom.patch_namespaced_custom_object(GROUP, VERSION, "default", "llmproviders", "ssa", body,
                                              field_manager="second", _content_type="application/apply-patch+yaml")
    assert conflict.value.status == 409 and "conflict" in conflict.value.body

    events = []
    stream = watch.Watch().stream(custom.list_namespaced_custom_object, GROUP, VERSION, "default",
                                  "llmproviders", timeout_seconds=2)
    for event in stream:
        events.append((event["type"], event["object"]["metadata"]["name"]))
        if len(events) == len(providers["items"]) + 1:
            break
    assert ("ADDED", "ssa") in events

    custom.delete_namespaced_custom_object(GROUP, VERSION, "default", "llmproviders", "flaky")
    with pytest.raises(ApiException) as gone:
        custom.get_namespaced_custom_object(GROUP, VERSION, "default", "llmproviders", "flaky")
    assert gone.value.status == 404
    assert yaml.safe_load(gone.value.body)["kind"] == "Status"
