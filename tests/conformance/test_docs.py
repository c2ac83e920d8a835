"""Documentation stays current: the configuration reference is what
`docs/generate_reference.py` makes of the CRD schemas today. Relative links in the docs resolve
to files of this repository, and the README links every page of docs/. ARCHITECTURE.md's code
map names every Rust module and only paths that exist, and the invariant it states about
resource shapes holds. Every catalogue id a test or doc cites (F1, L5…) is defined in
docs/testing.md, whose cited tests exist, and nothing points at documents outside the
repository. Slow tests are ignored in a plain `cargo test` only for the test command to run
them in a step of its own. The manifests the keyless guide tells users to apply are valid."""

import importlib.util
import os
import pathlib
import re

import yaml

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


# --- ARCHITECTURE.md's code map names every module, and every path it names exists ----------

ARCHITECTURE = ROOT / "ARCHITECTURE.md"
# The crates whose `src/` the code map covers, by the bullet that opens each one's entry.
CRATES = ["crds", "gateway", "operator", "tests/test-apiserver", "tests/mock-upstream", "tests/bench"]
# A repository path: a source or doc file (`proxy.rs`), or anything with a directory in it
# (`http/openapi.json`, `yaml/`); `credentials.yaml` alone is a Secret's entry, not a path.
PATH_TOKEN = re.compile(r"^(?:[\w.-]+\.(?:rs|md|py|sh|lua)"
                        r"|(?:[\w.-]+/)+(?:[\w.-]+\.(?:rs|md|py|sh|lua|json|yaml|yml|toml|txt))?)$")


def _code_map_blocks(text):
    """The code map's top-level bullets, keyed by the crate directory each opens with."""
    section = text.split("## Code map", 1)[1].split("\n## ", 1)[0]
    blocks, current = {}, None
    for line in section.splitlines():
        opening = re.match(r"^- `([^`]+)/`", line)
        if opening:
            current = opening.group(1)
            blocks.setdefault(current, "")
        elif line.startswith("- "):
            current = None
        if current is not None:
            blocks[current] += line + "\n"
    return blocks


def _backticked(text):
    return set(re.findall(r"`([^`\n]+)`", text))


def _named_modules(blocks, crate):
    """The `src/`-relative .rs paths the crate's entry names (a directory names its mod.rs)."""
    names = set()
    for token in _backticked(blocks.get(crate, "")):
        if token.endswith(".rs"):
            names.add(token)
        elif token.endswith("/"):
            names.add(token + "mod.rs")
    return names


def test_the_code_map_names_every_rust_module():
    blocks = _code_map_blocks(ARCHITECTURE.read_text())
    missing = []
    for crate in CRATES:
        assert crate in blocks, f"ARCHITECTURE.md's code map has no entry opening with `{crate}/`"
        named = _named_modules(blocks, crate)
        src = ROOT / crate / "src"
        for path in sorted(src.rglob("*.rs")):
            relative = path.relative_to(src).as_posix()
            if relative == "lib.rs":  # the crate itself
                continue
            if relative not in named:
                missing.append(f"{crate}/src/{relative}")
    assert not missing, f"name these in ARCHITECTURE.md's code map, by their path in src/: {missing}"


def test_every_path_the_architecture_names_exists():
    text = ARCHITECTURE.read_text()
    blocks = _code_map_blocks(text)
    every_crate = [ROOT / c / "src" for c in CRATES] + [ROOT / c for c in CRATES]

    def exists(token, bases):
        return any((base / token.rstrip("/")).exists() for base in bases)

    missing = []
    for crate, block in blocks.items():
        own = [ROOT / crate / "src", ROOT / crate, ROOT]
        missing += [f"{crate}/: {t}" for t in sorted(_backticked(block))
                    if PATH_TOKEN.match(t) and not exists(t, own)]
    for token in sorted(_backticked(text)):
        if PATH_TOKEN.match(token) and not exists(token, [ROOT, *every_crate]):
            missing.append(token)
    assert not missing, f"ARCHITECTURE.md names paths that do not exist: {sorted(set(missing))}"


def test_the_architecture_check_notices_a_module_it_no_longer_names():
    text = ARCHITECTURE.read_text()
    blocks = _code_map_blocks(text.replace("`controllers/rotation.rs`", "the rotation module"))
    assert "controllers/rotation.rs" in _named_modules(_code_map_blocks(text), "operator")
    assert "controllers/rotation.rs" not in _named_modules(blocks, "operator")
    assert "config/mod.rs" in _named_modules(_code_map_blocks(text), "gateway")


def _production_code(text):
    """A Rust file without its unit tests and comments."""
    text = re.split(r"#\[cfg\(test\)\]", text, maxsplit=1)[0]
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def test_outside_its_config_module_the_gateway_knows_no_resource_shape():
    """The invariant ARCHITECTURE.md states: resource objects stay in `crds`, the gateway's
    `config/` and the operator; the rest of the gateway uses compiled types and plain values."""
    shapes = re.compile(r"\b(?:LlmProvider|RoutePolicy|ApiKey|LlmGateway)(?:Spec|Status)?\b|k8s_openapi|ObjectMeta"
                        r"|llm_gateway_crds::(?:manifest|api_key|route_policy|snapshot)\b")
    src = ROOT / "gateway" / "src"
    allowed = {src / "kube_events.rs"}  # points Events at the object a notice is about
    found = []
    for path in sorted(src.rglob("*.rs")):
        if path.is_relative_to(src / "config") or path in allowed:
            continue
        for match in shapes.finditer(_production_code(path.read_text())):
            found.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not found, found


# --- docs/testing.md defines every catalogue id, and nothing points outside the repository --

TESTING = ROOT / "docs" / "testing.md"
CATALOGUE_ID = re.compile(r"\b[FLBNSPR][0-9]{1,2}[a-z]?\b")
SKIPPED_DIRS = {".git", "target", ".venv", ".tools", ".hypothesis", ".schemathesis", "__pycache__",
                ".pytest_cache", "node_modules"}
SKIPPED_PATHS = {("fuzz", "corpus"), ("fuzz", "artifacts"), ("fuzz", "coverage")}


def _repository_files(suffixes=None):
    """The repository's text files (build output, environments and fuzz data left out)."""
    for directory, subdirectories, files in os.walk(ROOT):
        here = pathlib.Path(directory)
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRS
                                   and (here / d).relative_to(ROOT).parts not in SKIPPED_PATHS)
        for name in sorted(files):
            path = here / name
            if suffixes is not None and path.suffix not in suffixes:
                continue
            if path.is_symlink() or path.stat().st_size > 2_000_000:
                continue
            try:
                yield path, path.read_text()
            except UnicodeDecodeError:
                continue


def _defined_ids():
    """Catalogue ids docs/testing.md defines: the first cell of a table row (F4 stands for F4a and F4b)."""
    ids = set(re.findall(r"^\| *([FLBN][0-9]{1,2}[a-z]?) *\|", TESTING.read_text(), flags=re.M))
    return ids | {re.sub(r"[a-z]$", "", i) for i in ids}


def test_every_catalogue_id_cited_is_defined_in_docs_testing():
    defined = _defined_ids()
    assert {"L5", "F1", "F9", "B6", "N4"} <= defined
    undefined = []
    for path, text in _repository_files({".rs", ".md", ".py", ".sh"}):
        if path == TESTING:
            continue
        for match in CATALOGUE_ID.finditer(text):
            if match.group(0) not in defined:
                line = text.count("\n", 0, match.start()) + 1
                undefined.append(f"{path.relative_to(ROOT)}:{line}: {match.group(0)}")
    assert not undefined, f"define these in docs/testing.md or reword them: {undefined}"


def test_docs_testing_names_tests_that_exist():
    """Every `file::test` docs/testing.md cites is a test function of that file."""
    cited = re.findall(r"`([\w/.-]+\.(?:rs|py))::(\w+)`", TESTING.read_text())
    assert len(cited) > 40
    missing = []
    for file, test in cited:
        path = ROOT / file
        if not path.is_file() or not re.search(rf"\b(?:fn|def) {test}\b", path.read_text()):
            missing.append(f"{file}::{test}")
    assert not missing, missing


def test_nothing_points_at_documents_outside_the_repository():
    # Spelled in pieces so this file does not match itself.
    outside = [".." + "/shared", "DESIGN" + ".md", "TESTING" + ".md"]
    found = [f"{path.relative_to(ROOT)}: {needle}" for path, text in _repository_files()
             for needle in outside if needle in text]
    assert not found, found


# --- slow tests are separate from the fast suite, never skipped -----------------------------

SLOW = 'slow: run by tests/run-all.sh'


def test_ignored_tests_are_the_slow_ones_and_the_test_command_runs_them():
    ignored = []
    for path, text in _repository_files({".rs"}):
        for reason in re.findall(r"^\s*#\[ignore(?: = \"([^\"]*)\")?\]\s*$", text, flags=re.M):
            ignored.append((path.relative_to(ROOT).as_posix(), reason))
    assert ignored, "no slow test is marked; tests/README.md says which are"
    assert all(reason == SLOW for _, reason in ignored), ignored
    run_all = (ROOT / "tests" / "run-all.sh").read_text()
    assert re.search(r"^cargo test --workspace --locked -- --ignored$", run_all, flags=re.M)
    assert re.search(r"^cargo test --workspace --locked$", run_all, flags=re.M)
    readme = (ROOT / "tests" / "README.md").read_text()
    for path, _ in ignored:
        assert f"`{path}`" in readme, f"tests/README.md's slow suite does not list {path}"


# --- the manifests a guide tells users to apply are valid --------------------------------------

def _yaml_blocks(path):
    text = path.read_text()
    return [block for block in re.findall(r"```yaml\n(.*?)```", text, re.S)]


def test_the_keyless_guide_s_manifests_are_valid():
    """docs/service-accounts.md: every document of its YAML blocks passes the CRD schemas (unknown
    fields refused) or, for built-in kinds, Kubernetes' own schemas."""
    import jsonschema_rs
    import kubernetes_validate
    import textwrap

    from crd_schemas import strict_schemas

    ours = strict_schemas()
    documents = [d for block in _yaml_blocks(ROOT / "docs" / "service-accounts.md")
                 for d in yaml.safe_load_all(textwrap.dedent(block)) if d]
    assert {d["kind"] for d in documents} >= {"LlmGateway", "ApiKey", "ServiceAccount", "Deployment"}
    for document in documents:
        if document["apiVersion"].startswith("llmgateway.io/"):
            jsonschema_rs.validate(ours[(document["apiVersion"], document["kind"])], document)
        else:
            kubernetes_validate.validate(document, "1.33.0", strict=True)


def test_every_reason_code_is_documented_in_the_runbook():
    """Each label of `ApiError::label` (sent as `x-llm-gateway-reason`) has a row in
    docs/runbook.md's reason table, and the table names no code the gateway does not send."""
    source = (ROOT / "gateway" / "src" / "error.rs").read_text()
    body = source[source.index("pub fn label(&self)"):]
    body = body[:body.index("\n    }\n")]
    codes = set(re.findall(r'=> "([a-z_]+)"', body))
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    table = runbook[runbook.index("## Why a request was refused"):]
    table = table[:table.index("\n## ")]
    documented = set(re.findall(r"^\| `([a-z_]+)` \|", table, re.M))
    assert codes, "no labels found in error.rs"
    assert codes == documented, f"undocumented: {codes - documented}; not sent: {documented - codes}"
