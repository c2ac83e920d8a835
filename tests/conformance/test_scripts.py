"""Smoke tests of the operations scripts in deployments/scripts: the health monitor against a
running gateway (healthy, down, alerting), backup → wipe → restore of the llmgateway.io
resources (through Debian's kubectl against the test API server) and of the gateway's Redis
keys (a real redis-server), TTLs included, and deployments/logrotate run by Debian's
logrotate against a live gateway's log."""

import json
import os
import pathlib
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import _free_port, kube_test_server

ROOT = pathlib.Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "deployments" / "scripts"


def test_the_health_monitor_reports_alerts_and_exits(gateway, tmp_path):
    ok = subprocess.run([str(SCRIPTS / "health-monitor.sh"), "--once", gateway.admin_url], capture_output=True, text=True)
    assert ok.returncode == 0 and f"ok {gateway.admin_url}" in ok.stdout, ok.stdout + ok.stderr
    alert_file = tmp_path / "alert"
    down_url = f"http://127.0.0.1:{_free_port()}"
    down = subprocess.run([str(SCRIPTS / "health-monitor.sh"), "--once", down_url], capture_output=True, text=True,
                          env={**os.environ, "FAILURES": "1", "ALERT_COMMAND": f"cat > {alert_file}"})
    assert down.returncode == 1 and "FAIL" in down.stdout and "not alive" in down.stdout, down.stdout
    assert "failed 1 checks" in alert_file.read_text()


def redis_cli(port: int, *args: str) -> str:
    return subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, check=True).stdout


def test_backup_wipe_restore_brings_resources_and_redis_keys_back(tmp_path):
    kubectl = os.environ.get("KUBECTL")
    if not kubectl or not pathlib.Path(kubectl).exists():
        pytest.fail("KUBECTL must name Debian's kubectl (tests/run-all.sh sets it)")
    port = _free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    try:
        with kube_test_server() as kubeconfig:
            backup_and_restore(kubectl, kubeconfig, port, tmp_path)
    finally:
        redis.kill()
        redis.wait()


def backup_and_restore(kubectl: str, kubeconfig: pathlib.Path, port: int, tmp_path: pathlib.Path):
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "KUBECTL": kubectl,
           "REDIS_URL": f"redis://127.0.0.1:{port}"}
    run = lambda *args: subprocess.run(list(args), env=env, capture_output=True, text=True, check=True).stdout
    run(kubectl, "apply", "--validate=false", "-f", str(ROOT / "crds" / "yaml"))
    run(kubectl, "apply", "--validate=false", "-f", str(ROOT / "deployments" / "kubernetes"))
    for _ in range(50):
        if redis_cli(port, "PING").strip() == "PONG":
            break
        time.sleep(0.1)
    usage = "lgw:{key:default/search-team}:usage:2026-11-01"
    redis_cli(port, "HSET", usage, "requests", "7", "spend_nanos", "123456")
    redis_cli(port, "PEXPIRE", usage, "86400000")
    redis_cli(port, "SET", "unrelated", "x")

    backup_dir = tmp_path / "backup"
    out = run(str(SCRIPTS / "backup.sh"), "backup", str(backup_dir))
    assert "resources: 5 written" in out and "redis: 1 keys written" in out, out

    run(kubectl, "delete", "llmgateways,llmproviders,routepolicies,apikeys", "--all")
    redis_cli(port, "FLUSHALL")
    out = run(str(SCRIPTS / "backup.sh"), "restore", str(backup_dir))
    assert "redis: 1 keys restored" in out, out

    names = run(kubectl, "get", "llmgateways,llmproviders,routepolicies,apikeys", "-o", "name").split()
    assert sorted(names) == sorted([
        "llmgateway.llmgateway.io/main", "llmprovider.llmgateway.io/fake", "llmprovider.llmgateway.io/openai",
        "routepolicy.llmgateway.io/default", "apikey.llmgateway.io/search-team"]), names
    restored = json.loads(run(kubectl, "get", "apikey", "search-team", "-o", "json"))
    assert restored["spec"]["budget"] == {"usd": 500, "period": "monthly"}
    assert redis_cli(port, "HGET", usage, "requests").strip() == "7"
    assert 0 < int(redis_cli(port, "PTTL", usage)) <= 86400000
    assert redis_cli(port, "EXISTS", "unrelated").strip() == "0", "only lgw: keys are backed up"


DOCKER_SHIM = """#!/usr/bin/env bash
# Records every call; `compose ... exec` (the health check) fails for services in UNHEALTHY.
echo "$*" >> "$CALLS"
if [ "$1" = compose ] && [[ " $* " == *" exec "* ]]; then
  for service in $UNHEALTHY; do [[ " $* " == *" $service "* ]] && exit 1; done
fi
exit 0
"""


def run_update(tmp_path, unhealthy: str):
    shim = tmp_path / "docker"
    shim.write_text(DOCKER_SHIM)
    shim.chmod(0o755)
    calls = tmp_path / "calls"
    result = subprocess.run([str(SCRIPTS / "update.sh")], capture_output=True, text=True, env={
        **os.environ, "DOCKER": str(shim), "CALLS": str(calls), "UNHEALTHY": unhealthy,
        "HEALTH_TRIES": "2", "HEALTH_INTERVAL": "0"})
    return result, calls.read_text().splitlines()


def test_update_rolls_replicas_one_at_a_time(tmp_path):
    result, calls = run_update(tmp_path, unhealthy="")
    assert result.returncode == 0, result.stderr
    ups = [c for c in calls if " up -d " in c]
    assert [c.split()[-1] for c in ups] == ["gateway-1", "gateway-2"]
    assert not any(c.startswith("tag llm-gateway:rollback") for c in calls)


def test_update_rolls_back_when_a_replica_stays_unhealthy(tmp_path):
    result, calls = run_update(tmp_path, unhealthy="gateway-1")
    assert result.returncode == 1 and "rolling back gateway-1" in result.stderr
    assert "tag llm-gateway:rollback llm-gateway:0.1.0" in calls
    assert not any(c.endswith("up -d --no-deps gateway-2") for c in calls), "the second replica was never touched"
    last_up = [c for c in calls if " up -d " in c][-1]
    assert last_up.endswith("gateway-1"), "the failed replica is restarted on the previous image"


def test_logrotate_rotates_a_live_gateway_log_without_losing_lines(tmp_path):
    """deployments/logrotate/llm-gateway, run by Debian's logrotate against a gateway whose
    stderr is appended to the log: the old lines move to the rotated file and the gateway's
    next lines land at the start of the truncated one."""
    logrotate = shutil.which("logrotate") or shutil.which("logrotate", path="/usr/sbin:/sbin")
    assert logrotate, "logrotate is not installed; tests/run-all.sh installs it"
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    log = log_dir / "gateway.log"
    conf = tmp_path / "llm-gateway.conf"
    conf.write_text((ROOT / "deployments/logrotate/llm-gateway").read_text()
                    .replace("/var/log/llm-gateway", str(log_dir)))
    config = tmp_path / "config"
    shutil.copytree(ROOT / "deployments/standalone", config)
    port = _free_port()
    env = {**os.environ, "HOST": "127.0.0.1", "PORT": str(port), "LOG_FORMAT": "json",
           "DEV_MODE": "true", "ADMIN_ADDRESS": "127.0.0.1:0"}
    with open(log, "ab") as stderr:
        gateway = subprocess.Popen([os.environ["GATEWAY_BIN"], "--config", str(config)], env=env,
                                   stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_ready(port)
        get(port, "/v1/models")
        wait_for_text(log, "/v1/models")
        done = subprocess.run([logrotate, "-f", "-s", str(tmp_path / "state"), str(conf)],
                              capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        rotated = [p for p in log_dir.iterdir() if p.name.startswith("gateway.log-")]
        assert len(rotated) == 1, sorted(p.name for p in log_dir.iterdir())
        assert "llm-gateway listening" in rotated[0].read_text()
        get(port, "/health")
        get(port, "/v1/models")
        wait_for_text(log, "/v1/models")
        fresh = log.read_bytes()
        assert fresh.startswith(b"{") and b"\0" not in fresh, fresh[:80]
        assert b"llm-gateway listening" not in fresh
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)


def get(port: int, path: str) -> None:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5).close()
    except urllib.error.HTTPError:
        pass  # a 401 is logged like any other request


def wait_ready(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise AssertionError("gateway not ready within 20 s")


def wait_for_text(path, text: str) -> None:
    deadline = time.monotonic() + 10
    while text not in path.read_text():
        assert time.monotonic() < deadline, f"{text!r} never appeared in {path}"
        time.sleep(0.05)
