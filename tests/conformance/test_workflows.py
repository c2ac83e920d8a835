"""The GitHub Actions workflows (`.github/workflows/`) pass actionlint (with shellcheck on every
`run:` script) and zizmor offline with its pedantic persona, with no finding at all; both tools
are shown to flag a deliberately bad workflow, so neither check can pass by checking nothing.
Also: every action is pinned to a full commit SHA with its version in a comment, and
tests/cluster/run.sh, which the kind workflow runs, is `bash -n` and shellcheck clean."""

import json
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = pathlib.Path(sys.executable).parent
CLUSTER_SUITE = ROOT / "tests" / "cluster" / "run.sh"

BAD_WORKFLOW = """\
name: bad
on: pull_request_target
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
        with:
          ref: ${{ github.event.pull_request.head.sha }}
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo ${{ github.no_such_context }}
      - run: echo $UNQUOTED
"""


def tool(name):
    path = BIN / name
    if not path.exists():
        pytest.fail(f"{path} missing: install tests/conformance/requirements.txt")
    return str(path)


def shellcheck():
    path = shutil.which("shellcheck")
    if path is None:
        pytest.fail("shellcheck missing: tests/run-all.sh installs it (apt-get install shellcheck)")
    return path


def workflow_files():
    files = sorted(WORKFLOWS.glob("*.yml")) + sorted(WORKFLOWS.glob("*.yaml"))
    assert {p.name for p in files} >= {"ci.yml", "kind.yml", "release.yml"}
    return files


def actionlint(*files):
    # pyflakes off: no step runs Python, and the result must not depend on what is installed.
    return subprocess.run([tool("actionlint"), "-no-color", "-oneline", f"-shellcheck={shellcheck()}",
                           "-pyflakes=", *map(str, files)], capture_output=True, text=True, timeout=120)


def zizmor(path):
    return subprocess.run([tool("zizmor"), "--offline", "--no-config", "--no-progress", "--persona=pedantic",
                           "--format=json", str(path)], capture_output=True, text=True, timeout=120)


def test_actionlint_finds_nothing():
    result = actionlint(*workflow_files())
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_zizmor_finds_nothing():
    result = zizmor(WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_both_linters_flag_a_bad_workflow(tmp_path):
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    (workflows / "bad.yml").write_text(BAD_WORKFLOW)

    linted = actionlint(workflows / "bad.yml")
    assert linted.returncode != 0
    assert "potentially untrusted" in linted.stdout, linted.stdout
    assert "no_such_context" in linted.stdout, linted.stdout
    assert "SC2086" in linted.stdout, "shellcheck did not run: " + linted.stdout

    audited = zizmor(workflows)
    assert audited.returncode != 0
    found = {finding["ident"] for finding in json.loads(audited.stdout)}
    assert {"template-injection", "unpinned-uses", "artipacked", "excessive-permissions",
            "dangerous-triggers"} <= found, found


def test_every_action_is_pinned_to_a_commit_with_its_version():
    pinned = re.compile(r"^\s*(?:-\s+)?uses:\s+[\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+\s*$")
    uses = [(path.name, line) for path in workflow_files() for line in path.read_text().splitlines()
            if re.match(r"^\s*(?:-\s+)?uses:", line)]
    assert uses
    unpinned = [(name, line.strip()) for name, line in uses if not pinned.match(line)]
    assert not unpinned, unpinned


def test_the_workflows_do_what_the_docs_say():
    ci = (WORKFLOWS / "ci.yml").read_text()
    assert "bash .ci/run" in ci
    kind = (WORKFLOWS / "kind.yml").read_text()
    assert "tests/cluster/run.sh" in kind and 'OPERATOR_REPLICAS: "2"' in kind
    release = (WORKFLOWS / "release.yml").read_text()
    for needle in ('tags: ["v*"]', "platforms: linux/amd64,linux/arm64", "sbom: true", "provenance: mode=max",
                   "deployments/docker/gateway.Dockerfile", "deployments/docker/operator.Dockerfile",
                   'helm package charts/llm-gateway --version "$VERSION" --app-version "$VERSION"',
                   'helm push "dist/llm-gateway-$VERSION.tgz" "oci://$REGISTRY/charts"', "crds/yaml/",
                   # The CRD chart (docs/upgrading.md): checked, linted, packaged and pushed too.
                   "charts/llm-gateway-crds/Chart.yaml charts/llm-gateway/Chart.yaml",
                   "helm lint --strict charts/llm-gateway-crds",
                   'helm package charts/llm-gateway-crds --version "$VERSION" --app-version "$VERSION"',
                   'helm push "dist/llm-gateway-crds-$VERSION.tgz" "oci://$REGISTRY/charts"'):
        assert needle in release, needle
    # The CRD chart is pushed before the chart that needs its CRDs.
    assert release.index('helm push "dist/llm-gateway-crds-') < release.index('helm push "dist/llm-gateway-$VERSION')
    # The tag reaches scripts through the environment only.
    assert "${{ github.ref_name }}" not in "".join(
        line for line in release.splitlines() if not line.strip().startswith("TAG:"))


def test_the_cluster_suite_is_a_clean_bash_script():
    subprocess.run(["bash", "-n", str(CLUSTER_SUITE)], check=True)
    result = subprocess.run([shellcheck(), str(CLUSTER_SUITE)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
