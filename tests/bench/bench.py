#!/usr/bin/env python3
"""The llm-gateway benchmark: the mock upstream directly, nginx `proxy_pass` and the gateway,
measured in one invocation and interleaved, on 127.0.0.1 only. Prints a markdown table of
ratios against nginx with absolute numbers as context, and writes every raw report as JSON.

Run it through `tests/bench/run.sh` (builds the release binaries first); see README.md."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))

from harness import config, peers, procs, reload, report, scenarios  # noqa: E402

STREAM_CHUNKS = 200
STREAM_GAP_MS = 20  # 50 tokens per second, a fast model's pace
STREAMS = 1000


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--binaries", type=pathlib.Path, default=pathlib.Path("target/release"))
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per scenario")
    parser.add_argument("--seconds", type=float, default=5, help="length of one measured run")
    parser.add_argument("--soak-seconds", type=float, default=600)
    parser.add_argument("--streams", type=int, default=STREAMS,
                        help="concurrent streams in the streams scenario")
    parser.add_argument("--quick", action="store_true",
                        help="1 round, 2 s runs, 60 s soak: a smoke run, not a result")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["throughput", "serial", "rate", "streams", "soak", "reload"])
    parser.add_argument("--traces", action="store_true",
                        help="also measure the gateway exporting traces (1%% and 100%% sampled, "
                             "and with its collector down)")
    parser.add_argument("--transports", action="store_true",
                        help="also measure the gateway sending through reqwest's pooled client "
                             "(UPSTREAM_HTTP2=true) instead of its in-task connections")
    parser.add_argument("--peers", action="store_true",
                        help="also measure LiteLLM's proxy and the Portkey gateway "
                             "(run.sh --peers installs them)")
    parser.add_argument("--peers-dir", type=pathlib.Path,
                        default=pathlib.Path("target/bench/peers"))
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("target/bench"))
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.seconds, args.soak_seconds = 1, 2, 60
    return args


def binaries(directory: pathlib.Path) -> dict:
    found = {}
    for name in ("llm-gateway", "bench-upstream", "bench-load"):
        path = directory / name
        if not path.is_file():
            sys.exit(f"bench: {path} is missing; run tests/bench/run.sh (it builds them)")
        found[name] = str(path.resolve())
    for tool in ("nginx", "redis-server", "taskset"):
        # Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
        path = shutil.which(tool) or shutil.which(tool, path="/usr/sbin:/sbin")
        if not path:
            sys.exit(f"bench: {tool} is not installed; run tests/bench/run.sh (it installs it)")
        found[tool] = path
    if len(os.sched_getaffinity(0)) < 2:
        sys.exit("bench: needs 2 cores (one for load and mock, one for the proxy)")
    return found


def machine(nginx_binary: str) -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown CPU")
    nginx = subprocess.run([nginx_binary, "-v"], capture_output=True, text=True).stderr.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"cpu": cpu, "cores": os.cpu_count(), "kernel": os.uname().release, "nginx": nginx,
            "commit": commit or "unknown", "date": time.strftime("%Y-%m-%d")}


def main() -> None:
    args = parse_args()
    found = binaries(args.binaries)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 8192:
        sys.exit(f"bench: 1,000 streams need 8,192 open files; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    settings = scenarios.Settings(binaries=found, rounds=args.rounds, seconds=args.seconds)
    results: dict = {"machine": machine(found["nginx"]), "settings": vars(args) | {"binaries": str(args.binaries)}}
    with tempfile.TemporaryDirectory(prefix="llm-gateway-bench-") as tmp:
        workdir = pathlib.Path(tmp)
        services: list[procs.Service] = []
        try:
            run_all(args, settings, workdir, services, results)
        finally:
            for service in reversed(services):
                service.stop()
    results["streams_count"] = args.streams
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    print(f"raw reports: {args.out / 'results.json'}", file=sys.stderr)


def run_all(args, settings, workdir, services, results) -> None:
    def start(service: procs.Service) -> procs.Service:
        services.append(service)
        return service

    say = lambda text: print(f"bench: {text}", file=sys.stderr, flush=True)  # noqa: E731
    mock = start(procs.start_mock(settings.binaries, STREAM_CHUNKS, STREAM_GAP_MS))
    redis = start(procs.start_redis(settings.binaries["redis-server"], workdir))
    redis_url = f"redis://127.0.0.1:{redis.port}"
    nginx = start(procs.start_nginx(settings.binaries["nginx"], workdir, mock.port))
    gateway = start(procs.start_gateway(settings.binaries,
                                        config.anonymous(workdir / "plain", mock.port), workdir))
    key = config.generate_keys(settings.binaries["llm-gateway"], 1)[0]
    authed = start(procs.start_gateway(
        settings.binaries, config.with_keys(workdir / "auth", mock.port, [key]), workdir,
        env={"REDIS_URL": redis_url, "API_KEY_PEPPER": "bench"}, name="gateway-auth"))
    targets = [
        scenarios.Target("direct", mock.port),
        scenarios.Target("nginx", nginx.port, nginx),
        scenarios.Target("gateway", gateway.port, gateway),
        scenarios.Target("gateway+auth+redis", authed.port, authed,
                         ["--header", f"authorization: Bearer {key}"]),
    ]
    if args.traces:
        targets += traced_targets(settings, workdir, mock.port, start)
    if args.transports:
        reqwest = start(procs.start_gateway(
            settings.binaries, config.anonymous(workdir / "via-reqwest", mock.port), workdir,
            env={"UPSTREAM_HTTP2": "true"}, name="gateway-via-reqwest"))
        targets.append(scenarios.Target("gateway via reqwest", reqwest.port, reqwest))
    if args.peers:
        litellm = start(peers.start_litellm(args.peers_dir, workdir, mock.port))
        portkey = start(peers.start_portkey(args.peers_dir, workdir))
        targets += [scenarios.Target("litellm", litellm.port, litellm, peers.litellm_headers()),
                    scenarios.Target("portkey", portkey.port, portkey,
                                     peers.portkey_headers(mock.port))]
    results["idle_rss_kib"] = {t.name: scenarios.idle_rss(t) for t in targets}
    if "throughput" not in args.skip:
        say("throughput: concurrency 64, non-streaming")
        results["throughput"] = scenarios.throughput(settings, targets)
    if "serial" not in args.skip:
        say("serial: concurrency 1")
        results["serial"] = scenarios.serial(settings, targets)
    if "rate" not in args.skip:
        say("fixed rate: 500 requests/s")
        results["rate"] = scenarios.fixed_rate(settings, targets, 500)
    if "streams" not in args.skip:
        say(f"streams: {args.streams} concurrent x {STREAM_CHUNKS} chunks, {STREAM_GAP_MS} ms apart")
        results["streams"] = scenarios.streams(settings, targets, args.streams)
    if "reload" not in args.skip:
        say("reload: 10,000 keys + 1,000 routes under 500 requests/s")
        results["reload"] = reload.run(settings.binaries, workdir, mock.port, redis_url)
    if "soak" not in args.skip:
        say(f"soak: {args.soak_seconds:.0f} s against gateway+auth+redis")
        results["soak"] = scenarios.soak(settings, targets[3], args.soak_seconds)


def traced_targets(settings, workdir, mock_port: int, start) -> list:
    """The plain gateway exporting OTLP/HTTP traces to the mock (which answers `/v1/traces`
    like a collector), at 1% and 100% sampling, and at 100% to a collector that is down."""
    down = procs.free_port()
    variants = [("gateway+traces 1%", mock_port, "0.01"), ("gateway+traces 100%", mock_port, "1"),
                ("gateway+traces, collector down", down, "1")]
    targets = []
    for name, port, ratio in variants:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
               "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": ratio}
        service = start(procs.start_gateway(
            settings.binaries, config.anonymous(workdir / name.replace(" ", "-").replace("%", "")
                                                .replace(",", ""), mock_port),
            workdir, env=env, name=name.replace(" ", "-").replace("%", "").replace(",", "")))
        targets.append(scenarios.Target(name, service.port, service))
    return targets


if __name__ == "__main__":
    main()
