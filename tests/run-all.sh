#!/usr/bin/env bash
# Runs every test suite of the project. Installs what the suites need on a fresh Debian
# machine first (idempotent): redis-server (each Redis test starts its own on a free loopback
# port), openssl, shellcheck, kubectl 1.20 (Debian's, for the test API server's outside-client
# test), a Python venv with the pinned packages of tests/conformance (actionlint and zizmor
# for the GitHub workflows among them), and the Node clients of tests/conformance/node.
# Usage: tests/run-all.sh            (from anywhere; exits non-zero on the first failure)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental artefacts only pay off across edits; in one run they only fill the disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "System packages the suites use (redis-server, openssl for RS256 test keys, curl and logrotate for the operations scripts, nginx for the proxy configuration and the benchmark harness, shellcheck for the workflows' scripts and the cluster suite, python3-venv)"
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)  # the operations scripts' smoke tests
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v logrotate >/dev/null || [ -x /usr/sbin/logrotate ] || missing+=(logrotate)
command -v shellcheck >/dev/null || missing+=(shellcheck)  # actionlint runs it on every run: step
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  # Install without starting services (nginx must not take port 80): a policy-rc.d that denies
  # starts, only for this install and only when the machine has none of its own.
  policy=/usr/sbin/policy-rc.d
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy"; added_policy=1; fi
  apt_status=0
  { apt-get update -qq && RUNLEVEL=1 apt-get install -y -qq "${missing[@]}"; } || apt_status=$?
  if [ "${added_policy:-}" = 1 ]; then rm -f "$policy"; fi
  if [ "$apt_status" != 0 ]; then exit "$apt_status"; fi
fi
redis-server --version

step "kubectl 1.20 (Debian's kubernetes-client, extracted into .tools/ so no other kubectl is touched)"
kubectl_root=.tools/kubernetes-client
if [ ! -x "$kubectl_root/usr/bin/kubectl" ]; then
  mkdir -p .tools/download
  (cd .tools/download && { apt-get download -qq kubernetes-client 2>/dev/null \
    || { apt-get update -qq && apt-get download -qq kubernetes-client; }; })
  dpkg-deb -x .tools/download/kubernetes-client_*.deb "$kubectl_root"
fi
export KUBECTL="$PWD/$kubectl_root/usr/bin/kubectl"
"$KUBECTL" version --client --short

step "Python venv with pinned test packages (.venv)"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install --quiet --disable-pip-version-check -r tests/conformance/requirements.txt

step "Node clients for the conformance suite (npm ci: the openai and Anthropic SDKs, the Vercel AI SDK, pinned by tests/conformance/node/package-lock.json)"
command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
node --version
(cd tests/conformance/node && npm ci --no-audit --no-fund --loglevel=error)

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Rust unit and integration tests (the fast suite: what a plain cargo test runs)"
cargo test --workspace --locked

# Tests marked #[ignore = "slow: run by tests/run-all.sh"] (the operator's L5 scale test and
# its idle minute) stay out of a plain `cargo test`, never out of this command: this step runs
# every ignored test of the workspace, and tests/conformance/test_docs.py fails if a test is
# ignored for any other reason or if this step goes away.
step "Slow Rust tests (#[ignore]d in the fast suite, run here every time)"
cargo test --workspace --locked -- --ignored

step "The example config passes the config check"
cargo run --quiet --locked -p llm-gateway -- check --config deployments/standalone

step "Conformance: the official OpenAI, Anthropic and Google GenAI Python SDKs against the running gateway, and the Python kubernetes client against the test API server, the Helm chart through Helm v4, GitOps health checks, nginx in front of the gateway, the GitHub workflows through actionlint and zizmor"
cargo build --quiet --locked -p llm-gateway -p llm-gateway-mock-upstream -p llm-gateway-test-apiserver \
  -p llm-gateway-operator -p llm-gateway-bench
GATEWAY_BIN="$PWD/target/debug/llm-gateway" MOCK_UPSTREAM_BIN="$PWD/target/debug/mock-upstream" \
  TEST_APISERVER_BIN="$PWD/target/debug/test-apiserver" OPERATOR_BIN="$PWD/target/debug/llm-gateway-operator" \
  .venv/bin/python -m pytest tests/conformance -q -p no:cacheprovider

step "all suites passed"
