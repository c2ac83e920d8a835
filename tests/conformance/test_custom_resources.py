"""The custom resources we hand to users outside the chart (the samples in
`deployments/kubernetes/` and the YAML examples in the docs) against our CRDs with unknown fields
refused, as kubectl and Argo CD refuse them; and the CRDs' names as kubectl resolves them."""

import pathlib
import re

import jsonschema_rs
import pytest
import yaml

from crd_schemas import crds, strict_schemas

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = sorted((ROOT / "deployments" / "kubernetes").glob("*.yaml"))
DOCUMENTS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md", ROOT / "ARCHITECTURE.md"]


def ours(documents):
    return [d for d in documents if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith("llmgateway.io/")]


def doc_examples(path):
    for block in re.findall(r"^```ya?ml\n(.*?)^```", path.read_text(), re.S | re.M):
        if "llmgateway.io/" in block:
            yield from ours(yaml.safe_load_all(block))


def test_unknown_fields_are_refused():
    schema = strict_schemas()[("llmgateway.io/v1alpha1", "LlmGateway")]
    gateway = {"apiVersion": "llmgateway.io/v1alpha1", "kind": "LlmGateway", "metadata": {"name": "main"},
               "spec": {"autoscaling": {"minReplicas": 1, "maxReplicas": 2, "targetCpuUtilizationPercentage": 70}}}
    jsonschema_rs.validate(schema, gateway)
    gateway["spec"]["autoscaling"]["targetCPUUtilizationPercentage"] = 70
    with pytest.raises(jsonschema_rs.ValidationError):
        jsonschema_rs.validate(schema, gateway)


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_the_kubernetes_samples_match_the_crds(path):
    schemas = strict_schemas()
    documents = ours(yaml.safe_load_all(path.read_text()))
    assert documents, f"no custom resource in {path.name}"
    for document in documents:
        jsonschema_rs.validate(schemas[(document["apiVersion"], document["kind"])], document)


def test_the_docs_examples_match_the_crds():
    schemas = strict_schemas()
    checked = 0
    for path in DOCUMENTS:
        for document in doc_examples(path):
            key = (document["apiVersion"], document["kind"])
            assert key in schemas, f"{path.name}: no CRD for {key}"
            try:
                jsonschema_rs.validate(schemas[key], document)
            except jsonschema_rs.ValidationError as error:
                raise AssertionError(f"{path.name}: {document['kind']} {document['metadata'].get('name')}: {error}")
            checked += 1
    assert checked, "no custom resource example found in the docs"


def test_no_category_shadows_a_resource_name():
    """kubectl expands categories before resource names: a category equal to a resource's
    name makes `kubectl get <that name> <object>` fail with 'you must specify only one resource'."""
    names = set()
    for crd in crds():
        spec = crd["spec"]["names"]
        names |= {spec["singular"], spec["plural"], spec["kind"].lower(), *spec.get("shortNames", [])}
    for crd in crds():
        for category in crd["spec"]["names"].get("categories", []):
            assert category not in names, f"{crd['metadata']['name']}: category {category!r} is a resource name"
