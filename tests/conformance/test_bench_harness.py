"""The benchmark harness (tests/bench) runs end to end: every target and scenario but the
soak, at smoke size, with the debug binaries the test command built. It checks the harness
works and reports sane figures, not performance (that is tests/bench/run.sh's job)."""

import json
import os
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_the_benchmark_runs_every_target_and_prints_the_table(tmp_path):
    binaries = pathlib.Path(os.environ["GATEWAY_BIN"]).parent
    for name in ("bench-upstream", "bench-load"):
        assert (binaries / name).is_file(), f"{name} is not built; run-all.sh builds it"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests/bench/bench.py"), "--binaries", str(binaries),
         "--rounds", "1", "--seconds", "0.5", "--streams", "20", "--skip", "soak", "--traces",
         "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    for scenario in ("throughput", "serial", "rate", "streams"):
        for target in ("direct", "nginx", "gateway", "gateway+auth+redis"):
            report = results[scenario][target][0]
            assert report["errors"] == 0, (scenario, target, report["error_samples"])
            assert report["ok"] > 0, (scenario, target)
        assert results[scenario]["gateway"][0]["cpu_us_per_request"] > 0
    # Exporting traces (1% and 100% sampled, and to a collector that is down) fails nothing.
    for target in ("gateway+traces 1%", "gateway+traces 100%", "gateway+traces, collector down"):
        report = results["throughput"][target][0]
        assert report["errors"] == 0 and report["ok"] > 0, (target, report)
    streams = results["streams"]["gateway"][0]
    assert streams["ok"] == 20 and streams["gap_us"]["count"] == 20 * 200
    reload = results["reload"]
    assert reload["errors"] == 0 and len(reload["swap_ms"]) == 3 and len(reload["visible_ms"]) == 3
    table = (tmp_path / "results.md").read_text()
    assert "| CPU per request, saturated (gateway / nginx) |" in table
    assert "### Reload under load" in table and table in done.stdout
    assert "gateway+traces 100%" in table
