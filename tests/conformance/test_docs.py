"""Generated documentation stays current: the configuration reference is what
`docs/generate_reference.py` makes of the CRD schemas today. Relative links in the docs resolve
to files of this repository, and the README links every page of docs/."""

import importlib.util
import pathlib
import re

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


MARKDOWN = [ROOT / "README.md", ROOT / "ARCHITECTURE.md", ROOT / "charts" / "README.md",
            ROOT / "tests" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def _prose(text):
    """The text outside fenced code blocks and inline code, where links are links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)
    return re.sub(r"`[^`\n]*`", "", text)


def test_relative_links_in_the_docs_resolve():
    broken = []
    for page in MARKDOWN:
        for target in re.findall(r"\]\(([^)\s]+)\)", _prose(page.read_text())):
            if re.match(r"[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.is_relative_to(ROOT) or not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, broken


def test_every_doc_is_linked_from_the_readme():
    readme = ROOT / "README.md"
    linked = {(readme.parent / target.split("#", 1)[0]).resolve()
              for target in re.findall(r"\]\(([^)\s]+)\)", _prose(readme.read_text()))}
    missing = [p.name for p in sorted((ROOT / "docs").glob("*.md")) if p.resolve() not in linked]
    assert not missing, f"add to the README's docs list: {missing}"
