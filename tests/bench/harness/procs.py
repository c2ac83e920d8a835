"""The processes a benchmark runs: the mock upstream, nginx, redis, the gateway and the load
generator, each pinned to its core, and what /proc says about their CPU time and memory."""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

LOAD_CORE = "0"
PROXY_CORE = "1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on {port} within {timeout} s")


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (nginx's workers)."""
    found = [pid]
    for task in pathlib.Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(descendants(int(child)))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid`'s process tree, threads that exited included."""
    total = 0
    for member in descendants(pid):
        try:
            fields = pathlib.Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


def rss_kib(pid: int) -> int:
    """Resident memory of `pid`'s process tree."""
    total = 0
    for member in descendants(pid):
        try:
            for line in pathlib.Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


class Service:
    """A long-running process of the benchmark, stopped on exit."""

    def __init__(self, name: str, argv: list[str], port: int, core: str, env=None, log=None,
                 timeout: float = 30):
        self.name = name
        self.port = port
        self.log = log
        output = open(log, "ab") if log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            ["taskset", "-c", core, *argv],
            env=env if env is not None else dict(os.environ),
            stdout=output,
            stderr=output,
            stdin=subprocess.DEVNULL,
        )
        wait_for_port(port, self.process, name, timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu(self) -> float:
        return cpu_seconds(self.pid)

    def rss(self) -> int:
        return rss_kib(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_mock(binaries: dict, chunks: int, gap_ms: int) -> Service:
    port = free_port()
    argv = [binaries["bench-upstream"], "--port", str(port), "--chunks", str(chunks)]
    return Service("mock", [*argv, "--gap-ms", str(gap_ms)], port, LOAD_CORE)


NGINX_CONF = """
worker_processes 1;
worker_rlimit_nofile 65536;
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 16384; }}
http {{
    access_log {dir}/nginx-access.log;
    client_body_temp_path {dir}/client_body;
    proxy_temp_path {dir}/proxy;
    upstream mock {{ server 127.0.0.1:{upstream}; keepalive 1024; keepalive_requests 1000000; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        keepalive_requests 1000000;
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
        }}
    }}
}}
"""


def start_nginx(binary: str, workdir: pathlib.Path, upstream: int) -> Service:
    """Debian's nginx as a plain `proxy_pass` with buffering off, one worker, access log on
    (as the gateway logs every request by default)."""
    port = free_port()
    conf = workdir / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=workdir, upstream=upstream, port=port))
    return Service("nginx", [binary, "-c", str(conf), "-p", str(workdir)], port, PROXY_CORE)


def start_redis(binary: str, workdir: pathlib.Path) -> Service:
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir)]
    return Service("redis", argv, port, LOAD_CORE)


# Settings a developer's shell may hold that would change what is measured.
GATEWAY_SETTINGS = {"OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_GEMINI_API_KEY", "REDIS_URL",
                    "WATCH_NAMESPACE", "LOG_LEVEL", "RATE_LIMIT_STORAGE", "API_KEY_PEPPER",
                    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "USAGE_EVENTS_PATH"}


def start_gateway(binaries: dict, config: pathlib.Path, workdir: pathlib.Path, env=None,
                  name="gateway") -> Service:
    """The gateway with its production defaults (access log at info) on the proxy core."""
    port = free_port()
    inherited = {k: v for k, v in os.environ.items() if k not in GATEWAY_SETTINGS}
    full_env = {**inherited, "HOST": "127.0.0.1", "PORT": str(port), "LOG_FORMAT": "json",
                "ADMIN_ADDRESS": "127.0.0.1:0", "MOCK_PROVIDER_KEY": "bench-provider-key",
                **(env or {})}
    service = Service(name, [binaries["llm-gateway"], "--config", str(config)], port,
                      PROXY_CORE, env=full_env, log=workdir / f"{name}.log")
    return wait_ready(service, f"http://127.0.0.1:{port}/ready", 60)


def wait_ready(service: Service, url: str, timeout: float) -> Service:
    """Waits until `url` answers 200 (a proxy listens before it can serve); stops the service
    and fails if it never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return service
        except OSError:
            time.sleep(0.05)
    service.stop()
    raise RuntimeError(f"{service.name} did not become ready at {url}; see {service.log}")


def run_load(binaries: dict, port: int, *args: str, timeout: float = 900) -> dict:
    """Runs `bench-load` on the load core against 127.0.0.1:`port`; returns its report."""
    argv = ["taskset", "-c", LOAD_CORE, binaries["bench-load"],
            "--address", f"127.0.0.1:{port}", *args]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=True)
    return json.loads(done.stdout)
