"""The gateway's own OpenAPI document (`/openapi.json`) exercised by schemathesis against the
running gateway: no 5xx and every response conforming to the document. Bounded: at most 30
generated examples per operation, deterministic generation."""

import pathlib
import shutil
import subprocess
import sys
import tempfile

import pytest

from conftest import EXAMPLE_CONFIG, Gateway, example_key

FAKE_ONLY = """
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {name: fake}
spec: {type: fake}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {name: routes}
spec:
  routes:
  - {model: fake-gpt, targets: [{provider: fake}]}
"""


@pytest.fixture(scope="module")
def fake_gateway():
    """Only the fake provider, so every documented 5xx would be a real failure."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "config"
        config.mkdir()
        shutil.copy(EXAMPLE_CONFIG / "api-keys.yaml", config / "api-keys.yaml")
        (config / "routes.yaml").write_text(FAKE_ONLY)
        gw = Gateway(config)
        yield gw
        gw.stop()


def test_schemathesis_finds_no_server_error_and_no_nonconforming_response(fake_gateway):
    cli = pathlib.Path(sys.executable).parent / "schemathesis"
    result = subprocess.run(
        [
            str(cli), "run", f"{fake_gateway.url}/openapi.json",
            "--header", f"Authorization: Bearer {example_key()}",
            "--max-examples", "30",
            "--generation-deterministic",
            "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
