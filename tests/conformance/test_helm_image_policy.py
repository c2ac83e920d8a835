"""The chart sets the operator's image allowlist (`imagePolicy.allowedRepositories` →
`ALLOWED_IMAGE_REPOSITORIES`): empty by default, so the operator runs only its own gateway
image until the installer lists more; values outside the schema are refused."""

import pathlib

import helm_python as helm
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "llm-gateway"


def operator_env(values):
    rendered = helm.Chart.load(str(CHART)).render(values, name="lgw", namespace="ai", is_install=True)
    for path, text in rendered.items():
        if not path.endswith(".yaml"):
            continue
        for document in yaml.safe_load_all(text):
            if document and document["kind"] == "Deployment" and document["metadata"]["name"].endswith("-operator"):
                container = document["spec"]["template"]["spec"]["containers"][0]
                return {e["name"]: e.get("value") for e in container["env"]}
    raise AssertionError("no operator Deployment rendered")


def test_by_default_the_operator_runs_only_its_own_gateway_image():
    assert operator_env(None)["ALLOWED_IMAGE_REPOSITORIES"] == ""


def test_the_listed_repositories_reach_the_operator():
    values = {"imagePolicy": {"allowedRepositories": ["ghcr.io/acme/", "vllm/vllm-openai"]}}
    assert operator_env(values)["ALLOWED_IMAGE_REPOSITORIES"] == "ghcr.io/acme/,vllm/vllm-openai"


@pytest.mark.parametrize("bad", [
    {"imagePolicy": {"allowedRepositories": "ghcr.io/acme/"}},
    {"imagePolicy": {"allowedRepositories": ["ghcr.io/acme/, evil.io/"]}},
    {"imagePolicy": {"allowed": []}},
])
def test_malformed_lists_are_refused(bad):
    with pytest.raises(Exception):
        helm.Chart.load(str(CHART)).validate_schema(bad)
