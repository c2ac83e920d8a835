"""Writes docs/reference.md, the configuration reference of every llmgateway.io kind, from the
generated CRD schemas (crds/yaml), so it can never disagree with what the API server enforces
(a test regenerates it and compares). Run: python3 docs/generate_reference.py"""

import json
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
ORDER = ["LlmGateway", "LlmProvider", "RoutePolicy", "ApiKey", "LlmQuota"]
# Kubernetes' own types embedded in our schemas: linked, not expanded.
K8S_FIELDS = {"resources", "env", "tolerations", "conditions"}


def kind_of(path: pathlib.Path) -> tuple[str, dict]:
    crd = yaml.safe_load(path.read_text())
    return crd["spec"]["names"]["kind"], crd


def type_of(schema: dict) -> str:
    kind = schema.get("type", "object" if "properties" in schema else "any")
    if kind == "array":
        return f"list of {type_of(schema.get('items', {}))}"
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"] if v is not None)
    return kind


def constraints(schema: dict) -> str:
    parts = []
    for key, label in (("minimum", "≥"), ("maximum", "≤"), ("minLength", "length ≥"), ("maxLength", "length ≤"),
                       ("maxItems", "items ≤"), ("pattern", "pattern")):
        if key in schema:
            value = schema[key]
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            value = f"`{value}`" if key == "pattern" else value
            parts.append(f"{label} {value}")
    if "default" in schema:
        parts.append(f"default `{json.dumps(schema['default'])}`")
    return "; ".join(parts)


def rows(schema: dict, prefix: str, required: set[str]) -> list[str]:
    out = []
    for name, field in (schema.get("properties") or {}).items():
        path = f"{prefix}.{name}" if prefix else name
        description = " ".join((field.get("description") or "").split()).replace("|", "\\|")
        extra = constraints(field)
        must = "yes" if name in required else ""
        out.append(f"| `{path}` | {type_of(field)} | {must} | {description}{' (' + extra + ')' if extra else ''} |")
        if name in K8S_FIELDS:
            continue
        inner = field.get("items", field) if field.get("type") == "array" else field
        suffix = "[]" if field.get("type") == "array" else ""
        if inner.get("properties"):
            out += rows(inner, path + suffix, set(inner.get("required", [])))
    return out


def rules(schema: dict) -> list[str]:
    found = [f"- {r.get('message', r['rule'])} (`{r['rule']}`)" for r in schema.get("x-kubernetes-validations", [])]
    for field in (schema.get("properties") or {}).values():
        found += rules(field.get("items", field) if field.get("type") == "array" else field)
    return found


def render() -> str:
    crds = dict(kind_of(p) for p in sorted((ROOT / "crds" / "yaml").glob("*.yaml")))
    categories = sorted({c for crd in crds.values() for c in crd["spec"]["names"].get("categories", [])})
    out = ["# Configuration reference", "",
           "Generated from the CRD schemas in `crds/yaml` by `docs/generate_reference.py`; do not edit.",
           "Every kind is namespaced, in API group `llmgateway.io`, version `v1alpha1`; "
           + " or ".join(f"`kubectl get {c}`" for c in categories) + " lists objects of every kind.", ""]
    for kind in ORDER:
        crd = crds[kind]
        version = crd["spec"]["versions"][0]
        schema = version["schema"]["openAPIV3Schema"]
        names = crd["spec"]["names"]
        out += [f"## {kind}", "", " ".join((schema.get("description") or "").split()), "",
                f"`kubectl get {names['plural']}` (short name `{names.get('shortNames', [''])[0]}`).", "",
                "| field | type | required | meaning |", "|---|---|---|---|"]
        spec = schema["properties"]["spec"]
        out += rows(spec, "spec", set(spec.get("required", [])))
        status = schema["properties"].get("status")
        if status:
            out += rows(status, "status", set())
        checks = rules(spec)
        if checks:
            out += ["", "Checked by the API server (CEL):", ""] + checks
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    (ROOT / "docs" / "reference.md").write_text(render())
    print("wrote docs/reference.md")
