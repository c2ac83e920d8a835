"""Starts the real binaries the suites run against: the gateway on the example config, the
mock upstream, the in-repo Kubernetes API test server and the operator."""

import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLE_CONFIG = ROOT / "deployments" / "standalone"


def _binary(variable: str, name: str, package: str) -> pathlib.Path:
    binary = pathlib.Path(os.environ.get(variable, ROOT / "target" / "debug" / name))
    if not binary.exists():
        pytest.fail(f"{name} binary {binary} not found: build it with `cargo build -p {package}`")
    return binary


def _gateway_binary() -> pathlib.Path:
    return _binary("GATEWAY_BIN", "llm-gateway", "llm-gateway")


@contextlib.contextmanager
def kube_test_server():
    """The in-repo Kubernetes API test server on a free port: yields its kubeconfig's path."""
    binary = _binary("TEST_APISERVER_BIN", "test-apiserver", "llm-gateway-test-apiserver")
    with tempfile.TemporaryDirectory() as tmp:
        kubeconfig = pathlib.Path(tmp) / "kubeconfig"
        process = subprocess.Popen([str(binary), "--port", "0", "--kubeconfig", str(kubeconfig)],
                                   stdout=subprocess.PIPE, text=True)
        try:
            process.stdout.readline()  # the URL: printed once the kubeconfig is written
            yield kubeconfig
        finally:
            process.kill()
            process.wait()


@contextlib.contextmanager
def operator(kubeconfig: pathlib.Path, env: dict[str, str] | None = None):
    """The operator binary against `kubeconfig`, one replica without leader election."""
    binary = _binary("OPERATOR_BIN", "llm-gateway-operator", "llm-gateway-operator")
    full_env = {"KUBECONFIG": str(kubeconfig), "LEADER_ELECTION": "false", "ADMIN_ADDRESS": "127.0.0.1:0",
                "PATH": os.environ.get("PATH", ""), **(env or {})}
    process = subprocess.Popen([str(binary)], env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, seconds: float = 20) -> bool:
    """Whether the gateway at `url` answers `/ready` with 200 within `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ready", timeout=1) as response:
                if response.status == 200:
                    return True
        except OSError:
            time.sleep(0.05)
    return False


def example_key() -> str:
    text = (EXAMPLE_CONFIG / "api-keys.yaml").read_text()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if "apiKey:" in line)


class Gateway:
    def __init__(self, config_dir: pathlib.Path, env: dict[str, str] | None = None):
        self.config_dir = config_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.admin_url = f"http://127.0.0.1:{_free_port()}"
        # Dev mode, as the README's first command: the example configuration's published key.
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "LOG_LEVEL": "warn",
                    "DEV_MODE": "true", "AUTH_FAILURES_PER_MINUTE": "0", "ADMIN_ADDRESS": self.admin_url.removeprefix("http://")}
        for variable in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_GEMINI_API_KEY"):
            full_env.pop(variable, None)
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [str(_gateway_binary()), "--config", str(config_dir)], env=full_env
        )
        if not wait_ready(self.url):
            self.stop()
            pytest.fail("gateway did not become ready within 20 s")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="session")
def gateway():
    """The gateway serving a copy of deployments/standalone, as a new user runs it."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "config"
        shutil.copytree(EXAMPLE_CONFIG, config)
        gw = Gateway(config, env={"MAX_REQUEST_BODY_BYTES": "65536"})
        yield gw
        gw.stop()


class MockUpstream:
    """tests/mock-upstream: OpenAI, Anthropic and Gemini wire formats on one port."""

    def __init__(self):
        binary = _binary("MOCK_UPSTREAM_BIN", "mock-upstream", "llm-gateway-mock-upstream")
        self.process = subprocess.Popen([str(binary)], stdout=subprocess.PIPE, text=True)
        self.url = self.process.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.process.kill()
            pytest.fail(f"mock-upstream did not print its URL (got {self.url!r})")

    def requests(self) -> list[dict]:
        import json

        with urllib.request.urlopen(f"{self.url}/__requests", timeout=5) as response:
            return json.load(response)

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)


TRANSLATION_CONFIG = """
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: anthropic}}
spec: {{type: anthropic, baseUrl: "{url}", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: gemini}}
spec: {{type: gemini, baseUrl: "{url}", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {{name: translated}}
spec:
  routes:
  - {{model: claude-mock, targets: [{{provider: anthropic, model: claude-sonnet-4-5}}]}}
  - {{model: gemini-mock, targets: [{{provider: gemini, model: gemini-2.5-flash}}]}}
  - {{model: gpt-mock, targets: [{{provider: openai-mock, model: smart-gpt}}]}}
  - {{model: gpt-native, targets: [{{provider: openai-native, model: smart-gpt-native}}]}}
  - {{model: vllm-native, targets: [{{provider: vllm-responses, model: smart-vllm}}]}}
  - {{model: azure-native, targets: [{{provider: azure-responses, model: gpt-deployment}}]}}
  - {{model: embed-openai, targets: [{{provider: openai-mock, model: text-embedding-3-small}}]}}
  - {{model: embed-gemini, targets: [{{provider: gemini, model: text-embedding-004}}]}}
  - {{model: embed-claude, targets: [{{provider: anthropic, model: claude-sonnet-4-5}}]}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: openai-mock}}
spec: {{type: openaiCompatible, baseUrl: "{url}/v1", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: openai-native}}
spec: {{type: openai, baseUrl: "{url}/v1", allowLocalAddresses: true, credentials: {{env: MOCK_PROVIDER_KEY}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: vllm-responses}}
spec: {{type: openaiCompatible, baseUrl: "{url}/v1", allowLocalAddresses: true, protocols: [responses]}}
---
apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: azure-responses}}
spec: {{type: azureOpenAI, baseUrl: "{url}", allowLocalAddresses: true, protocols: [responses], credentials: {{env: MOCK_PROVIDER_KEY}}}}
"""


@pytest.fixture(scope="session")
def mock_upstream():
    mock = MockUpstream()
    yield mock
    mock.stop()


def translating_gateway_with_key(mock_upstream, directory: pathlib.Path, name: str, spec: str):
    """A gateway on the translating configuration plus the ApiKey `name` (its spec fields in
    `spec`, a flow mapping's inside); returns the gateway and the new key."""
    made = subprocess.run([str(_gateway_binary()), "keygen"], capture_output=True, text=True, check=True)
    key = made.stdout.split()[0]
    shutil.copy(EXAMPLE_CONFIG / "api-keys.yaml", directory / "api-keys.yaml")
    (directory / "providers.yaml").write_text(TRANSLATION_CONFIG.format(url=mock_upstream.url))
    (directory / f"{name}.yaml").write_text(
        f"apiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: {name}}}\n"
        f"spec: {{secretName: {name}-key, {spec}}}\n---\n"
        f"apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}-key}}\nstringData: {{apiKey: {key}}}\n"
    )
    return Gateway(directory, env={"MOCK_PROVIDER_KEY": "mock-provider-secret"}), key


@pytest.fixture(scope="session")
def translating_gateway(mock_upstream):
    """A gateway whose routes go to the mock's Anthropic and Gemini APIs."""
    with tempfile.TemporaryDirectory() as tmp:
        config = pathlib.Path(tmp) / "config"
        config.mkdir()
        shutil.copy(EXAMPLE_CONFIG / "api-keys.yaml", config / "api-keys.yaml")
        (config / "providers.yaml").write_text(TRANSLATION_CONFIG.format(url=mock_upstream.url))
        gw = Gateway(config, env={"MOCK_PROVIDER_KEY": "mock-provider-secret"})
        yield gw
        gw.stop()
