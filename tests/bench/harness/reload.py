"""Reload under load: a gateway holding 10,000 API keys and 1,000 routes takes 500 requests
per second while its key file is rewritten three times (one key revoked, one added each
time). Reports the compile-and-swap time the gateway logs, the time until the new key is
accepted (file-watch debounce included), and every failed request."""

from __future__ import annotations

import json
import pathlib
import threading
import time
import urllib.error
import urllib.request

from . import config, procs

KEYS = 10_000
ROUTES = 1_000
RELOADS = 3


def accepted(port: int, key: str) -> bool:
    body = json.dumps({"model": "bench", "messages": [{"role": "user", "content": "hi"}]})
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/chat/completions", data=body.encode(),
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status == 200
    except urllib.error.HTTPError:
        return False


def applied_reloads(log: pathlib.Path) -> list[dict]:
    """The gateway's `configuration applied` log events (JSON lines)."""
    events = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", event)
        if fields.get("message") == "configuration applied":
            events.append(fields)
    return events


def run(binaries: dict, workdir: pathlib.Path, upstream: int, redis_url: str) -> dict:
    keys = config.generate_keys(binaries["llm-gateway"], KEYS + RELOADS)
    directory = config.with_keys(workdir / "reload-config", upstream, keys[:KEYS])
    config.many_routes(directory, upstream, ROUTES)
    started = time.monotonic()
    gateway = procs.start_gateway(binaries, directory, workdir, name="gateway-reload",
                                  env={"REDIS_URL": redis_url, "API_KEY_PEPPER": "bench"})
    startup_s = time.monotonic() - started
    try:
        return {"startup_s": startup_s, **under_load(binaries, gateway, directory, keys)}
    finally:
        gateway.stop()


def under_load(binaries: dict, gateway: procs.Service, directory: pathlib.Path,
               keys: list[str]) -> dict:
    seconds = 4 * (RELOADS + 1)
    result: dict = {}

    def load() -> None:
        result.update(procs.run_load(
            binaries, gateway.port, "--header", f"authorization: Bearer {keys[0]}",
            "--mode", "open", "--rate", "500", "--connections", "64",
            "--duration", str(seconds), "--warmup", "0"))

    thread = threading.Thread(target=load)
    thread.start()
    visible_ms = []
    for reload in range(1, RELOADS + 1):
        time.sleep(3)
        # Key `reload` revoked and key `KEYS + reload` added; every other key's documents
        # are written exactly as before (a one-key edit, as a platform team makes it).
        numbers = [0, *range(1 + reload, KEYS + reload)]
        current = [keys[n] for n in numbers]
        newest = current[-1]
        written = time.monotonic()
        config.write_keys(directory / "api-keys.yaml", current, numbers)
        while not accepted(gateway.port, newest):
            if time.monotonic() - written > 30:
                raise RuntimeError("the new key was not accepted within 30 s")
            time.sleep(0.005)
        visible_ms.append((time.monotonic() - written) * 1000)
        if accepted(gateway.port, keys[reload]):
            raise RuntimeError("a revoked key was still accepted after the reload")
    thread.join()
    # The new configuration serves before its log line is written (the old one is dropped
    # in between), so wait for the last line.
    deadline = time.monotonic() + 30
    while len(reloads := applied_reloads(gateway.log)) < RELOADS + 1:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(reloads)} 'configuration applied' log lines, wanted {RELOADS + 1}")
        time.sleep(0.05)
    return {
        "swap_ms": [float(event.get("took_ms", 0)) for event in reloads[1:]],
        "initial_compile_ms": float(reloads[0].get("took_ms", 0)) if reloads else 0.0,
        "visible_ms": visible_ms,
        "ok": result.get("ok", 0),
        "errors": result.get("errors", 0),
        "error_samples": result.get("error_samples", []),
        "latency_us": result.get("latency_us", {}),
        "rss_kib": gateway.rss(),
    }
