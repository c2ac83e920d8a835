"""Gateway configuration directories for the benchmark: one route to the mock upstream,
optionally behind API keys with Redis-backed limits, and the reload scenario's 10,000 keys
and 1,000 routes."""

from __future__ import annotations

import pathlib
import subprocess

PROVIDER = """apiVersion: llmgateway.io/v1alpha1
kind: LlmProvider
metadata: {{name: bench}}
spec: {{type: openaiCompatible, baseUrl: "http://127.0.0.1:{port}/v1", allowLocalAddresses: true,
       credentials: {{env: MOCK_PROVIDER_KEY}}}}
---
apiVersion: llmgateway.io/v1alpha1
kind: RoutePolicy
metadata: {{name: bench}}
spec:
  routes:
  - {{model: bench, targets: [{{provider: bench, model: bench-model}}]}}
"""

ANONYMOUS = """apiVersion: llmgateway.io/v1alpha1
kind: LlmGateway
metadata: {name: bench}
spec: {auth: {apiKeys: false}}
"""

KEY = """---
apiVersion: llmgateway.io/v1alpha1
kind: ApiKey
metadata: {{name: {name}}}
spec:
  secretName: {name}
  owner: team-{team}
  models: ["*"]
  limits: {{requestsPerMinute: 100000000, tokensPerMinute: 100000000000, maxConcurrent: 100000}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}}}
stringData: {{apiKey: {key}}}
"""


def generate_keys(gateway_binary: str, count: int) -> list[str]:
    done = subprocess.run([gateway_binary, "keygen", "--count", str(count)], check=True,
                          capture_output=True, text=True)
    keys = done.stdout.split()
    assert len(keys) == count, f"keygen printed {len(keys)} keys, wanted {count}"
    return keys


def anonymous(directory: pathlib.Path, upstream: int) -> pathlib.Path:
    """A route to the mock with authentication off: the gateway at its leanest."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "providers.yaml").write_text(PROVIDER.format(port=upstream))
    (directory / "gateway.yaml").write_text(ANONYMOUS)
    return directory


def with_keys(directory: pathlib.Path, upstream: int, keys: list[str]) -> pathlib.Path:
    """A route to the mock behind API keys, each with request, token and concurrency limits
    high enough never to refuse, so every request pays the full admission cost."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "providers.yaml").write_text(PROVIDER.format(port=upstream))
    write_keys(directory / "api-keys.yaml", keys)
    return directory


def write_keys(path: pathlib.Path, keys: list[str], numbers: list[int] | None = None) -> None:
    """The ApiKeys and Secrets of `keys`, the i-th named `key-<numbers[i]>` (default: i), so a
    rewrite that drops or adds a key leaves every other key's documents as they were."""
    numbers = numbers if numbers is not None else list(range(len(keys)))
    text = "".join(KEY.format(name=f"key-{n}", team=n % 50, key=key) for n, key in zip(numbers, keys))
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    temporary.rename(path)


def many_routes(directory: pathlib.Path, upstream: int, routes: int) -> None:
    """`routes` extra routes over 10 RoutePolicies, each with a fallback, all to the mock."""
    per_policy = routes // 10
    documents = []
    for policy in range(10):
        lines = [f"apiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\n"
                 f"metadata: {{name: routes-{policy}}}\nspec:\n  routes:"]
        for index in range(per_policy):
            model = f"model-{policy}-{index}"
            lines.append(f"  - {{model: {model}, targets: [{{provider: bench, model: {model}}}],"
                         f" fallbacks: [bench]}}")
        documents.append("\n".join(lines) + "\n")
    (directory / "routes.yaml").write_text("---\n".join(documents))
