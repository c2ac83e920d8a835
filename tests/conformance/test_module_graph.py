"""The gateway's module graph runs one way: no top-level module of `gateway/src` reaches back
to one that reaches it (a cycle, found as a strongly connected component over `crate::`
references outside `#[cfg(test)]` code). The knots there were (limits ↔ metrics; config →
providers → translate → providers with providers → config; http → state → http) are untied
and must stay so."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
SOURCES = ROOT / "gateway" / "src"

def top_level_module(path: pathlib.Path) -> str | None:
    parts = path.relative_to(SOURCES).with_suffix("").parts
    return None if parts in (("lib",), ("main",)) else parts[0]


def production_code(text: str) -> str:
    """The file without its unit tests (they may reach anywhere)."""
    return re.split(r"#\[cfg\(test\)\]\s*mod \w+\s*\{", text, maxsplit=1)[0]


def references(text: str) -> set[str]:
    found = set(re.findall(r"crate::([a-z_][a-z0-9_]*)", text))
    for group in re.findall(r"crate::\{([^}]*)\}", text):
        found.update(re.split(r"::|\s", item.strip())[0] for item in group.split(",") if item.strip())
    return found


def module_graph() -> dict[str, set[str]]:
    modules = {top_level_module(p) for p in SOURCES.rglob("*.rs")} - {None}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in SOURCES.rglob("*.rs"):
        source = top_level_module(path)
        if source is None:
            continue
        targets = references(production_code(path.read_text())) & modules
        graph[source] |= targets - {source}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_gateway_module_graph_has_no_cycle():
    assert cycles(module_graph()) == []


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_layers_that_were_knotted_run_one_way():
    graph = module_graph()
    assert "limits" not in graph["metrics"], "metrics must not import limits"
    assert not graph["sse"] & {"providers", "translate", "config"}, "the SSE wire format is a leaf"
    assert not graph["translate"] & {"providers", "config"}, "translators depend on the wire format only"
    assert "config" not in graph["providers"], "config builds the providers' runtime, never the reverse"
    assert "http" not in graph["state"], "the shared state knows nothing of the HTTP layer"
