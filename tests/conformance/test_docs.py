"""Generated documentation stays current: the configuration reference is what
`docs/generate_reference.py` makes of the CRD schemas today."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_configuration_reference_matches_the_crds():
    spec = importlib.util.spec_from_file_location("reference", ROOT / "docs" / "generate_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    committed = (ROOT / "docs" / "reference.md").read_text()
    assert committed == module.render(), "run: python3 docs/generate_reference.py"
    for kind in ("LlmGateway", "LlmProvider", "RoutePolicy", "ApiKey"):
        assert f"## {kind}" in committed
    assert "`spec.selfHosted.image`" in committed and "`spec.routes[].targets[].weight`" in committed
