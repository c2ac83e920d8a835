"""Our CRDs' openAPIV3Schemas made strict, as a real API server with field validation (kubectl,
Argo CD server-side apply) treats them: a field a schema does not declare is refused unless its
object carries `x-kubernetes-preserve-unknown-fields`, instead of being pruned silently."""

import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds" / "yaml"
# Every custom resource may carry these; the CRD schema need not declare them.
_OBJECT_FIELDS = {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                  "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}


def _strict(schema):
    schema = dict(schema)
    if schema.pop("nullable", False) and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    if "properties" in schema:
        schema["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        schema["items"] = _strict(schema["items"])
    if isinstance(schema.get("additionalProperties"), dict):
        schema["additionalProperties"] = _strict(schema["additionalProperties"])
    # Structural schemas: only `properties` / `additionalProperties` decide which fields are
    # known (anyOf/oneOf/allOf branches only validate), so those stay as they are.
    is_object = schema.get("type") in ("object", ["object", "null"]) or "properties" in schema
    if (is_object and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    return schema


def crds():
    return [yaml.safe_load(path.read_text()) for path in sorted(CRDS.glob("*.yaml"))]


def strict_schemas():
    """`{(apiVersion, kind): strict schema}` for every version of every CRD."""
    schemas = {}
    for crd in crds():
        for version in crd["spec"]["versions"]:
            root = dict(version["schema"]["openAPIV3Schema"])
            root["properties"] = {**_OBJECT_FIELDS, **root.get("properties", {})}
            key = (f"{crd['spec']['group']}/{version['name']}", crd["spec"]["names"]["kind"])
            schemas[key] = _strict(root)
    return schemas
