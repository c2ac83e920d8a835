"""Starts the real llm-gateway binary on the example config for the SDK conformance suite."""

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


def _gateway_binary() -> pathlib.Path:
    binary = pathlib.Path(os.environ.get("GATEWAY_BIN", ROOT / "target" / "debug" / "llm-gateway"))
    if not binary.exists():
        pytest.fail(f"gateway binary {binary} not found: build it with `cargo build -p llm-gateway`")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def example_key() -> str:
    text = (EXAMPLE_CONFIG / "api-keys.yaml").read_text()
    return next(line.split(":", 1)[1].strip() for line in text.splitlines() if "apiKey:" in line)


class Gateway:
    def __init__(self, config_dir: pathlib.Path, env: dict[str, str] | None = None):
        self.config_dir = config_dir
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(self.port), "LOG_LEVEL": "warn"}
        full_env.pop("OPENAI_API_KEY", None)
        full_env.update(env or {})
        self.process = subprocess.Popen(
            [str(_gateway_binary()), "--config", str(config_dir)], env=full_env
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.05)
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
