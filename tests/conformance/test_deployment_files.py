"""The container and compose files (no Docker engine runs here, so everything that can be
checked without one): every file a Dockerfile copies or a compose file mounts exists, images
are pinned and run unprivileged, the HEALTHCHECK command works against a running gateway, and
every metric name the Grafana dashboard and the alert rules use is one the gateway (or the
operator) really exports, after real traffic."""

import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import urllib.error
import urllib.request

import helm_python as helm
import yaml

from conftest import _gateway_binary, example_key

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCKER = ROOT / "deployments" / "docker"
COMPOSE = ROOT / "deployments" / "compose"
# Mounted from the operator's host, never committed: TLS certificates.
USER_PROVIDED = {"./ssl"}


def dockerfile_stages(path: pathlib.Path) -> list[list[str]]:
    stages, lines = [], path.read_text().replace("\\\n", " ").splitlines()
    for line in lines:
        line = line.strip()
        if line.startswith("FROM "):
            stages.append([line])
        elif line and not line.startswith("#"):
            stages[-1].append(line)
    return stages


def test_dockerfiles_copy_what_exists_and_run_unprivileged():
    for path in sorted(DOCKER.glob("*.Dockerfile")):
        stages = dockerfile_stages(path)
        assert len(stages) >= 2, f"{path.name}: multi-stage"
        for stage in stages:
            image = stage[0].split()[1]
            assert ":" in image and not image.endswith(":latest"), f"{path.name}: pin {image}"
            for line in stage:
                if line.startswith("COPY ") and "--from=" not in line:
                    for source in line.split()[1:-1]:
                        assert (ROOT / source).exists(), f"{path.name}: {source} does not exist"
        runtime = stages[-1]
        user = next(l for l in runtime if l.startswith("USER "))
        assert user.split()[1].split(":")[0] not in {"0", "root"}, path.name
        build = next(l for s in stages for l in s if "cargo build" in l)
        package = re.search(r"-p (\S+)", build).group(1)
        assert (ROOT / "Cargo.lock").read_text().count(f'name = "{package}"') == 1, package
        entry = json.loads(next(l for l in runtime if l.startswith("ENTRYPOINT ")).split(" ", 1)[1])
        assert any(entry[0] in l for l in runtime if l.startswith("COPY --from=build")), path.name
        if path.name == "gateway.Dockerfile":
            check = next(l for l in runtime if l.startswith("HEALTHCHECK"))
            assert '"healthcheck"' in check
            # The operator's pods choose the source (WATCH_NAMESPACE); an image default would
            # make the gateway refuse to start there ("not both").
            env = " ".join(l for l in runtime if l.startswith("ENV "))
            assert "CONFIG_DIR" not in env and "WATCH_NAMESPACE" not in env, env


def test_the_healthcheck_command_answers_for_a_running_gateway(gateway):
    binary = str(_gateway_binary())
    ok = subprocess.run([binary, "healthcheck", "--url", f"{gateway.url}/health"], capture_output=True)
    assert ok.returncode == 0, ok.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    down = subprocess.run([binary, "healthcheck", "--url", f"http://127.0.0.1:{closed}/health"], capture_output=True)
    assert down.returncode == 1


def test_compose_files_reference_what_exists():
    for name in ("docker-compose.yml", "docker-compose.prod.yml"):
        compose = yaml.safe_load((COMPOSE / name).read_text())
        for service, spec in compose["services"].items():
            build = spec.get("build")
            if build:
                context = (COMPOSE / build["context"]).resolve()
                assert (context / build["dockerfile"]).exists(), f"{name} {service}"
            else:
                image = spec["image"]
                assert ":" in image and not image.endswith(":latest"), f"{name} {service}: pin {image}"
            for volume in spec.get("volumes", []):
                source = volume.split(":")[0]
                if source.startswith(".") and source not in USER_PROVIDED:
                    assert (COMPOSE / source).exists(), f"{name} {service}: {source}"
    prod = yaml.safe_load((COMPOSE / "docker-compose.prod.yml").read_text())
    assert "--requirepass" in prod["services"]["redis"]["command"]
    assert "--appendonly" in prod["services"]["redis"]["command"]
    upstreams = re.findall(r"server (gateway-\d):8000", (COMPOSE / "nginx.conf").read_text())
    assert set(upstreams) == {s for s in prod["services"] if s.startswith("gateway-")}
    scrape = yaml.safe_load((COMPOSE / "prometheus" / "prometheus.yml").read_text())
    targets = scrape["scrape_configs"][0]["static_configs"][0]["targets"]
    assert {t.split(":")[0] for t in targets} == set(upstreams)
    for service, spec in prod["services"].items():
        options = spec.get("logging", {}).get("options", {})
        assert options.get("max-size") and options.get("max-file"), f"{service}: logs unrotated"
        for volume in spec.get("volumes", []):
            assert not volume.split(":")[1].startswith("/var/log"), f"{service}: {volume}"


def exported_names(metrics_text: str) -> set[str]:
    names = set()
    for line in metrics_text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            names.update({"counter": [f"{name}_total"],
                          "histogram": [f"{name}_bucket", f"{name}_sum", f"{name}_count"]}.get(kind, []))
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def used_names(expressions) -> set[str]:
    return {name for expr in expressions for name in re.findall(r"\b(llm_[a-z0-9_]+)", expr)}


def test_every_metric_the_dashboard_and_alerts_use_exists(gateway):
    key = example_key()
    for stream in (False, True):
        body = json.dumps({"model": "fake-gpt", "stream": stream,
                           "messages": [{"role": "user", "content": "hi"}]}).encode()
        request = urllib.request.Request(f"{gateway.url}/v1/chat/completions", data=body, headers={
            "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()
    # An error, so the error counter has a series.
    unknown = urllib.request.Request(f"{gateway.url}/v1/chat/completions", headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        data=b'{"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}')
    try:
        urllib.request.urlopen(unknown, timeout=10)
    except urllib.error.HTTPError as error:
        assert error.code == 404
    with urllib.request.urlopen(f"{gateway.admin_url}/metrics", timeout=5) as response:
        exported = exported_names(response.read().decode())
    operator_source = (ROOT / "operator" / "src" / "metrics.rs").read_text()
    exported |= {f"{n}_total" for n in re.findall(r'"(llm_operator_[a-z_]+)"', operator_source)}

    dashboard = json.loads((COMPOSE / "grafana" / "dashboards" / "llm-gateway.json").read_text())
    alerts = yaml.safe_load((COMPOSE / "prometheus" / "alerts.yml").read_text())
    rendered = helm.Chart.load(str(ROOT / "charts" / "llm-gateway")).render(
        {"metrics": {"prometheusRule": {"enabled": True}}}, name="lgw", namespace="ai")
    rule = yaml.safe_load(rendered["llm-gateway/templates/prometheusrule.yaml"])
    expressions = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    expressions += [r["expr"] for g in alerts["groups"] for r in g["rules"]]
    expressions += [r["expr"] for g in rule["spec"]["groups"] for r in g["rules"]]
    used = used_names(expressions)
    assert used, "no metric found in the expressions"
    assert used <= exported, f"not exported: {sorted(used - exported)}"


def test_production_artifacts_never_ship_the_published_example_key():
    """The prod stack and the image take the user's configuration, never deployments/standalone
    (whose key the README prints); the gateway refuses that key outside --dev (tested in Rust)."""
    prod = (COMPOSE / "docker-compose.prod.yml").read_text()
    assert "standalone" not in prod
    dockerfile = (ROOT / "deployments" / "docker" / "gateway.Dockerfile").read_text()
    assert not any(l.startswith("COPY") and "standalone" in l for l in dockerfile.splitlines())


def test_the_example_configuration_is_refused_outside_dev_mode(tmp_path):
    config = tmp_path / "config"
    shutil.copytree(ROOT / "deployments" / "standalone", config)
    env = {k: v for k, v in os.environ.items() if k not in ("DEV_MODE", "API_KEY_PEPPER")}
    env.update({"HOST": "127.0.0.1", "PORT": "0", "ADMIN_ADDRESS": "127.0.0.1:0",
                "API_KEY_PEPPER": "a-real-pepper"})
    done = subprocess.run([str(_gateway_binary()), "--config", str(config)], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "published" in done.stderr and "keygen" in done.stderr, done.stderr
