"""The benchmark's scenarios. Each runs every target in the same invocation, interleaved round
by round (the order rotates, so drift in the machine's speed spreads over all targets), and
returns per-target medians over the rounds."""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass, field

from . import procs


@dataclass
class Target:
    """Something the load generator can hit: the mock itself, nginx, or a gateway."""

    name: str
    port: int
    service: procs.Service | None = None  # None: the mock directly (no proxy to measure)
    load_args: list[str] = field(default_factory=list)


@dataclass
class Settings:
    binaries: dict
    rounds: int
    seconds: float  # length of one measured load run


def rotate(targets: list[Target], round_index: int) -> list[Target]:
    shift = round_index % len(targets)
    return targets[shift:] + targets[:shift]


def measure(settings: Settings, target: Target, *load: str) -> dict:
    """One load run; adds the proxy's CPU per request and its peak RSS during the run."""
    sampler = RssSampler(target.service)
    before = target.service.cpu() if target.service else 0.0
    with sampler:
        report = procs.run_load(settings.binaries, target.port, *target.load_args, *load)
    used = (target.service.cpu() - before) if target.service else 0.0
    exchanges = report["ok"] + report["errors"]
    report["cpu_us_per_request"] = used * 1e6 / exchanges if exchanges else 0.0
    report["rss_before_kib"] = sampler.before
    report["rss_peak_kib"] = sampler.peak
    return report


class RssSampler:
    """Samples a service's RSS every 50 ms while a run lasts."""

    def __init__(self, service: procs.Service | None):
        self.service = service
        self.before = service.rss() if service else 0
        self.peak = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, self.service.rss())

    def __enter__(self):
        if self.service:
            self._thread.start()
        return self

    def __exit__(self, *_):
        self._stop.set()
        if self.service:
            self._thread.join()


def interleaved(settings: Settings, targets: list[Target], warm: list[str],
                load: list[str]) -> dict[str, list[dict]]:
    """Runs `load` against every target, `settings.rounds` times, after a `warm` run each."""
    reports: dict[str, list[dict]] = {t.name: [] for t in targets}
    for round_index in range(settings.rounds):
        for target in rotate(targets, round_index):
            if warm:
                procs.run_load(settings.binaries, target.port, *target.load_args, *warm)
            reports[target.name].append(measure(settings, target, *load))
    return reports


def throughput(settings: Settings, targets: list[Target]) -> dict[str, list[dict]]:
    """Concurrency 64, small non-streaming bodies, as fast as the load generator goes."""
    closed = ["--mode", "closed", "--concurrency", "64", "--warmup", "0"]
    return interleaved(settings, targets, [*closed, "--duration", "1"],
                       [*closed, "--duration", str(settings.seconds)])


def serial(settings: Settings, targets: list[Target]) -> dict[str, list[dict]]:
    """One request at a time: the latency each hop adds, with no queueing."""
    closed = ["--mode", "closed", "--concurrency", "1", "--warmup", "0"]
    return interleaved(settings, targets, [*closed, "--duration", "0.5"],
                       [*closed, "--duration", str(settings.seconds)])


def fixed_rate(settings: Settings, targets: list[Target], rate: int) -> dict[str, list[dict]]:
    """`rate` requests per second, latency from each request's scheduled start."""
    seconds = max(settings.seconds * 2, 4)
    return interleaved(settings, targets,
                       ["--mode", "closed", "--concurrency", "8", "--duration", "0.5",
                        "--warmup", "0"],
                       ["--mode", "open", "--rate", str(rate), "--connections", "64",
                        "--duration", str(seconds), "--warmup", "1"])


def streams(settings: Settings, targets: list[Target], count: int) -> dict[str, list[dict]]:
    """`count` concurrent streams, all opened at once."""
    return interleaved(settings, targets, [],
                       ["--mode", "streams", "--stream", "--streams", str(count),
                        "--concurrency", str(count)])


def idle_rss(target: Target) -> int:
    return target.service.rss() if target.service else 0


def soak(settings: Settings, target: Target, seconds: float) -> dict:
    """`seconds` of 450 requests/s plus 50 streams/s (about 200 open at a time); RSS sampled
    every 5 s, slope fitted after the first fifth of the run."""
    samples: list[tuple[float, int]] = []
    start = time.monotonic()
    results: dict[str, dict] = {}

    def load(name: str, *args: str) -> None:
        results[name] = procs.run_load(settings.binaries, target.port, *target.load_args,
                                       *args, timeout=seconds + 300)

    threads = [
        threading.Thread(target=load, args=("requests", "--mode", "open", "--rate", "450",
                                            "--connections", "64", "--duration", str(seconds),
                                            "--warmup", "0")),
        threading.Thread(target=load, args=("streams", "--mode", "open", "--stream", "--rate",
                                            "50", "--connections", "400", "--duration",
                                            str(seconds), "--warmup", "0")),
    ]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        samples.append((time.monotonic() - start, target.service.rss()))
        time.sleep(5)
    settled = [(t, kib) for t, kib in samples if t >= seconds / 5] or samples
    return {
        "seconds": seconds,
        "samples": samples,
        "slope_mib_per_min": slope(settled) * 60 / 1024,
        "rss_first_kib": samples[0][1],
        "rss_last_kib": samples[-1][1],
        "errors": sum(r["errors"] for r in results.values()),
        "ok": sum(r["ok"] for r in results.values()),
        "error_samples": [s for r in results.values() for s in r["error_samples"]],
    }


def slope(points: list[tuple[float, int]]) -> float:
    """Least-squares slope (KiB per second)."""
    if len(points) < 2:
        return 0.0
    mean_t = statistics.fmean(t for t, _ in points)
    mean_v = statistics.fmean(v for _, v in points)
    num = sum((t - mean_t) * (v - mean_v) for t, v in points)
    den = sum((t - mean_t) ** 2 for t, _ in points)
    return num / den if den else 0.0
