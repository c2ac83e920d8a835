"""Renders `llm-gateway.yaml`, the raw manifests for `kubectl apply` users, from the Helm
chart with `values.yaml`, so they never drift from it (a test renders again and compares).
The chart renders no CRD (the llm-gateway-crds chart holds them); kubectl users apply
`crds/yaml/` first, the same files.

Run: python3 deployments/manifests/render.py   (needs the pinned `helm-python-sdk` and PyYAML)
"""

import pathlib

import helm_python as helm
import yaml

HERE = pathlib.Path(__file__).resolve().parent
CHART = HERE.parents[1] / "charts" / "llm-gateway"
NAMESPACE = "llm-gateway"
RELEASE = "llm-gateway"
HEADER = f"""# Generated from charts/llm-gateway by deployments/manifests/render.py; do not edit.
# Install: kubectl apply --server-side -f crds/yaml/
#          kubectl create namespace {NAMESPACE}
#          kubectl -n {NAMESPACE} create secret generic llm-gateway-pepper --from-literal=pepper="$(openssl rand -hex 24)"
#          kubectl apply -f deployments/manifests/llm-gateway.yaml
"""


def render() -> str:
    values = yaml.safe_load((HERE / "values.yaml").read_text())
    rendered = helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    documents = [text.strip() for path, text in sorted(rendered.items()) if path.endswith(".yaml") and text.strip()]
    return HEADER + "".join(f"---\n{doc}\n" for doc in documents)


if __name__ == "__main__":
    (HERE / "llm-gateway.yaml").write_text(render())
    print(f"wrote {HERE / 'llm-gateway.yaml'}")
