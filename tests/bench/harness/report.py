"""The markdown report: per-scenario tables (medians over the interleaved rounds, added
latency computed round by round against the direct run of the same round) and the issue's
targets with the measured figure and a verdict."""

from __future__ import annotations

import statistics

PROXIES = ["nginx", "gateway", "gateway+auth+redis"]
# Measured with `--traces` and `--peers` only.
TRACED = ["gateway+traces 1%", "gateway+traces 100%", "gateway+traces, collector down"]
TRANSPORTS = ["gateway via reqwest"]
PEERS = ["litellm", "portkey"]


def _get(report: dict, path: str) -> float:
    value = report
    for key in path.split("."):
        value = value[key]
    return float(value)


def med(results: dict, target: str, path: str) -> float | None:
    runs = results.get(target)
    if not runs:
        return None
    return statistics.median(_get(r, path) for r in runs)


def added(results: dict, target: str, path: str) -> float | None:
    """Median over rounds of (target − direct) for the same round."""
    if not results.get(target) or not results.get("direct"):
        return None
    return statistics.median(_get(t, path) - _get(d, path)
                             for t, d in zip(results[target], results["direct"]))


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}"


def row(label: str, cells: list[str]) -> str:
    return f"| {label} | " + " | ".join(cells) + " |"


def table(title: str, rows: list[tuple[str, list[str]]], columns: list[str]) -> list[str]:
    lines = [f"### {title}", "", row("", columns), row("---", ["---:"] * len(columns))]
    lines += [row(label, cells) for label, cells in rows]
    return lines + [""]


def per_target(results: dict, names: list[str], fn) -> list[str]:
    return [fn(results, name) for name in names]


def scenario_tables(results: dict) -> list[str]:
    proxies = PROXIES + [t for t in TRANSPORTS + TRACED + PEERS
                         if t in results.get("idle_rss_kib", {})]
    names = ["direct", *proxies]
    out: list[str] = []
    if "throughput" in results:
        r = results["throughput"]
        out += table("Non-streaming, concurrency 64 (load generator saturated)", [
            ("throughput, req/s", per_target(r, names, lambda r, n: fmt(med(r, n, "throughput_rps")))),
            ("proxy CPU per request, µs", ["–"] + per_target(r, proxies, lambda r, n: fmt(med(r, n, "cpu_us_per_request"), 1))),
            ("latency p50 / p99, µs", per_target(r, names, lambda r, n: f"{fmt(med(r, n, 'latency_us.p50'))} / {fmt(med(r, n, 'latency_us.p99'))}")),
            ("errors", per_target(r, names, lambda r, n: fmt(med(r, n, "errors")))),
        ], names)
    if "serial" in results:
        r = results["serial"]
        out += table("Serial requests (concurrency 1)", [
            ("latency p50 / p99, µs", per_target(r, names, lambda r, n: f"{fmt(med(r, n, 'latency_us.p50'))} / {fmt(med(r, n, 'latency_us.p99'))}")),
            ("added p50 / p99 vs direct, µs", ["–"] + per_target(r, proxies, lambda r, n: f"{fmt(added(r, n, 'latency_us.p50'))} / {fmt(added(r, n, 'latency_us.p99'))}")),
            ("proxy CPU per request, µs", ["–"] + per_target(r, proxies, lambda r, n: fmt(med(r, n, "cpu_us_per_request"), 1))),
        ], names)
    if "rate" in results:
        r = results["rate"]
        out += table("Fixed 500 requests/s (latency from the scheduled start)", [
            ("latency p50 / p99 / p99.9, µs", per_target(r, names, lambda r, n: " / ".join(fmt(med(r, n, f"latency_us.{q}")) for q in ("p50", "p99", "p999")))),
            ("added p50 / p99 / p99.9, µs", ["–"] + per_target(r, proxies, lambda r, n: " / ".join(fmt(added(r, n, f"latency_us.{q}")) for q in ("p50", "p99", "p999")))),
            ("proxy CPU per request, µs", ["–"] + per_target(r, proxies, lambda r, n: fmt(med(r, n, "cpu_us_per_request"), 1))),
            ("errors", per_target(r, names, lambda r, n: fmt(med(r, n, "errors")))),
        ], names)
    if "streams" in results:
        r = results["streams"]
        out += table(f"{results.get('streams_count', 1000):,} concurrent streams × 200 chunks, 20 ms apart", [
            ("time to first chunk p50 / p99, ms", per_target(r, names, lambda r, n: f"{fmt(ms(med(r, n, 'ttfb_us.p50')), 2)} / {fmt(ms(med(r, n, 'ttfb_us.p99')), 2)}")),
            ("added time to first chunk p50, ms", ["–"] + per_target(r, proxies, lambda r, n: fmt(ms(added(r, n, "ttfb_us.p50")), 2))),
            ("added gap p50 / p99, ms", ["–"] + per_target(r, proxies, lambda r, n: f"{fmt(ms(added(r, n, 'gap_us.p50')), 2)} / {fmt(ms(added(r, n, 'gap_us.p99')), 2)}")),
            ("proxy CPU per stream, ms", ["–"] + per_target(r, proxies, lambda r, n: fmt(ms(med(r, n, "cpu_us_per_request")), 2))),
            ("RSS per open stream, KiB", ["–"] + per_target(r, proxies, lambda r, n: fmt(rss_per_stream(r, n), 1))),
            ("errors", per_target(r, names, lambda r, n: fmt(med(r, n, "errors")))),
        ], names)
    return out


def ms(micros: float | None) -> float | None:
    return None if micros is None else micros / 1000


def rss_per_stream(results: dict, name: str) -> float | None:
    """Growth of RSS per open stream, the largest over rounds: the first round starts from a
    fresh process, later ones reuse memory the allocator kept and would understate it."""
    runs = results.get(name)
    if not runs:
        return None
    return max((r["rss_peak_kib"] - r["rss_before_kib"]) / max(r["ok"] + r["errors"], 1)
               for r in runs)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def verdict(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def target_rows(results: dict) -> list[tuple[str, str, str, str]]:
    """(target, measured, goal, met) for each of the issue's targets that was measured."""
    rows = []
    if "throughput" in results:
        t = results["throughput"]
        cpu = ratio(med(t, "gateway", "cpu_us_per_request"), med(t, "nginx", "cpu_us_per_request"))
        rows.append(("CPU per request, saturated (gateway / nginx)", f"{fmt(cpu, 2)}×", "≤ 1.0×",
                     verdict(cpu is not None and cpu <= 1.0)))
    if "serial" in results:
        s = results["serial"]
        g, n = added(s, "gateway", "latency_us.p50"), added(s, "nginx", "latency_us.p50")
        rows.append(("serial added p50 (gateway vs nginx)", f"{fmt(g)} µs vs {fmt(n)} µs",
                     "≤ nginx (aim ½)", verdict(g is not None and n is not None and g <= n)))
    if "rate" in results:
        r = results["rate"]
        g, n = added(r, "gateway", "latency_us.p99"), added(r, "nginx", "latency_us.p99")
        rows.append(("added p99 at 500 req/s (gateway vs nginx)", f"{fmt(g)} µs vs {fmt(n)} µs",
                     "≤ nginx", verdict(g is not None and n is not None and g <= n)))
    if "streams" in results:
        st = results["streams"]
        g, n = added(st, "gateway", "ttfb_us.p50"), added(st, "nginx", "ttfb_us.p50")
        rows.append(("streams: added time to first chunk p50", f"{fmt(ms(g), 2)} ms vs {fmt(ms(n), 2)} ms",
                     "≤ nginx", verdict(g is not None and n is not None and g <= n)))
        g, n = med(st, "gateway", "cpu_us_per_request"), med(st, "nginx", "cpu_us_per_request")
        rows.append(("streams: CPU per stream", f"{fmt(ms(g), 2)} ms vs {fmt(ms(n), 2)} ms",
                     "≤ nginx", verdict(g is not None and n is not None and g <= n)))
        errors = med(st, "gateway", "errors")
        per = rss_per_stream(st, "gateway")
        rows.append((f"{results.get('streams_count', 1000):,} streams: errors, RSS per stream", f"{fmt(errors)}, {fmt(per, 1)} KiB",
                     "0, < 150 KB", verdict(errors == 0 and per is not None and per < 150 * 1000 / 1024)))
    idle = results.get("idle_rss_kib", {}).get("gateway")
    if idle:
        rows.append(("idle RSS", f"{idle / 1024:.1f} MiB", "≤ 30 MB", verdict(idle * 1024 <= 30e6)))
    if "soak" in results:
        so = results["soak"]
        rows.append((f"soak RSS slope ({so['seconds'] / 60:.0f} min)",
                     f"{so['slope_mib_per_min']:+.3f} MiB/min, {so['errors']} errors",
                     "< 1 MB/min", verdict(so["slope_mib_per_min"] * 1.048576 < 1 and so["errors"] == 0)))
    if "reload" in results:
        rl = results["reload"]
        worst = max(rl["swap_ms"], default=None)
        rows.append(("reload 10k keys + 1k routes: swap, failed requests",
                     f"{fmt(worst, 1)} ms, {rl['errors']}", "≤ 100 ms, 0",
                     verdict(worst is not None and worst <= 100 and rl["errors"] == 0)))
    return rows


def extra_sections(results: dict) -> list[str]:
    out = []
    idle = results.get("idle_rss_kib")
    if idle:
        out += table("Idle RSS", [("MiB", [fmt(idle[n] / 1024, 1) if n != "direct" else "–"
                                           for n in ["direct", *PROXIES]])], ["direct", *PROXIES])
    if "reload" in results:
        rl = results["reload"]
        out += ["### Reload under load (10,000 ApiKeys + 1,000 routes, 500 req/s)", "",
                f"- start-up to ready: {rl['startup_s']:.2f} s (first compile {rl['initial_compile_ms']:.0f} ms)",
                f"- compile + swap per reload: {', '.join(f'{v:.1f}' for v in rl['swap_ms'])} ms",
                f"- file written → new key accepted: {', '.join(f'{v:.0f}' for v in rl['visible_ms'])} ms"
                " (includes the file watcher's 150 ms debounce)",
                f"- requests: {rl['ok']} ok, {rl['errors']} failed; p99 {fmt(rl['latency_us'].get('p99'))} µs",
                f"- RSS with this configuration: {rl['rss_kib'] / 1024:.1f} MiB", ""]
    if "soak" in results:
        so = results["soak"]
        out += [f"### Soak ({so['seconds']:.0f} s, 450 req/s + 50 streams/s, gateway+auth+redis)", "",
                f"- RSS {so['rss_first_kib'] / 1024:.1f} → {so['rss_last_kib'] / 1024:.1f} MiB, "
                f"slope {so['slope_mib_per_min']:+.3f} MiB/min after the first fifth",
                f"- {so['ok']} exchanges, {so['errors']} errors", ""]
    return out


def markdown(results: dict) -> str:
    m = results["machine"]
    s = results["settings"]
    lines = [f"Measured {m['date']} at commit {m['commit']} on {m['cpu']} ({m['cores']} cores, "
             f"Linux {m['kernel']}, {m['nginx']}); load generator and mock pinned to core 0, "
             f"the proxy under test to core 1; {s['rounds']} interleaved round(s) of "
             f"{s['seconds']:g} s, medians shown.", ""]
    lines += ["### Targets", "", "| target | measured | goal | met |", "| --- | --- | --- | --- |"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in target_rows(results)]
    lines.append("")
    lines += scenario_tables(results)
    lines += extra_sections(results)
    return "\n".join(lines)
