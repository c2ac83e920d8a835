"""The gateways users pick instead, as optional targets (`bench.py --peers`): LiteLLM's proxy
(PyPI) and the Portkey gateway (npm, under Node), each configured for the same mock upstream
and pinned to the proxy core like the others. `run.sh --peers` installs them into
`target/bench/peers` (pinned versions) the first time."""

from __future__ import annotations

import os
import pathlib

from harness import procs

LITELLM_CONFIG = """model_list:
  - model_name: bench
    litellm_params:
      model: openai/bench-model
      api_base: "http://127.0.0.1:{upstream}/v1"
      api_key: bench-provider-key
litellm_settings: {{drop_params: true, telemetry: false}}
general_settings: {{master_key: "{master_key}", disable_spend_logs: true}}
"""

# LiteLLM refuses to start without a master key; requests present it (no database, so the
# check is a comparison, like a gateway without keys).
LITELLM_MASTER_KEY = "sk-bench-4f9c2e7a1b8d6035e2c4a9f71d0b3e68"


def start_litellm(peers: pathlib.Path, workdir: pathlib.Path, upstream: int) -> procs.Service:
    """LiteLLM's proxy, one worker, its own logging at ERROR, spend logs off."""
    port = procs.free_port()
    config = workdir / "litellm.yaml"
    config.write_text(LITELLM_CONFIG.format(upstream=upstream, master_key=LITELLM_MASTER_KEY))
    argv = [str(peers / "venv/bin/litellm"), "--config", str(config), "--host", "127.0.0.1",
            "--port", str(port), "--num_workers", "1"]
    env = {**os.environ, "LITELLM_LOG": "ERROR", "DISABLE_ADMIN_UI": "True"}
    service = procs.Service("litellm", argv, port, procs.PROXY_CORE, env=env,
                            log=workdir / "litellm.log", timeout=180)
    return procs.wait_ready(service, f"http://127.0.0.1:{port}/health/liveliness", 180)


def start_portkey(peers: pathlib.Path, workdir: pathlib.Path) -> procs.Service:
    """The Portkey gateway under Node, headless; the upstream is named per request."""
    port = procs.free_port()
    script = peers / "node_modules/@portkey-ai/gateway/build/start-server.js"
    argv = ["node", str(script), f"--port={port}", "--headless"]
    env = {**os.environ, "NODE_ENV": "production"}
    service = procs.Service("portkey", argv, port, procs.PROXY_CORE, env=env,
                            log=workdir / "portkey.log", timeout=60)
    return procs.wait_ready(service, f"http://127.0.0.1:{port}/", 60)


def litellm_headers() -> list[str]:
    return ["--header", f"authorization: Bearer {LITELLM_MASTER_KEY}"]


def portkey_headers(upstream: int) -> list[str]:
    """What Portkey needs on every request to reach the mock as an OpenAI provider."""
    return ["--header", "x-portkey-provider: openai",
            "--header", f"x-portkey-custom-host: http://127.0.0.1:{upstream}/v1",
            "--header", "authorization: Bearer bench-provider-key"]
