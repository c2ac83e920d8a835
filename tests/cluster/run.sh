#!/usr/bin/env bash
# The real-cluster suite: install the chart on the cluster KUBECONFIG points at (kind, k3d or
# any other), apply the samples, and get a first completion through the gateway Service.
# It cannot run in CI (no cluster there) and is not part of tests/run-all.sh.
#
# Needs: kubectl, helm (v3.8+ or v4), curl, and images the cluster can pull. With kind:
#   kind create cluster --name lgw
#   docker build -f deployments/docker/gateway.Dockerfile -t llm-gateway:dev .
#   docker build -f deployments/docker/operator.Dockerfile -t llm-gateway-operator:dev .
#   kind load docker-image llm-gateway:dev llm-gateway-operator:dev --name lgw
#   GATEWAY_IMAGE=llm-gateway:dev OPERATOR_IMAGE=llm-gateway-operator:dev tests/cluster/run.sh
# With k3d, `k3d image import` instead of `kind load`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

namespace="${NAMESPACE:-lgw-e2e}"
operator_image="${OPERATOR_IMAGE:-ghcr.io/llm-gateway/llm-gateway-operator:0.1.0}"
gateway_image="${GATEWAY_IMAGE:-ghcr.io/llm-gateway/llm-gateway:0.1.0}"
timeout="${TIMEOUT:-300s}"
step() { printf '\n==> %s\n' "$*"; }
fail() { echo "FAILED: $*" >&2; kubectl -n "$namespace" get all,llmgateways,llmproviders,routepolicies,apikeys >&2 || true; exit 1; }

step "cluster: $(kubectl config current-context)"
kubectl version >/dev/null || fail "no cluster reachable through KUBECONFIG"

step "helm install (operator $operator_image, gateway $gateway_image)"
helm upgrade --install lgw charts/llm-gateway --namespace "$namespace" --create-namespace --wait --timeout "$timeout" \
  --set operator.image.repository="${operator_image%:*}" --set operator.image.tag="${operator_image##*:}" \
  --set operator.image.pullPolicy=IfNotPresent --set operator.replicas=1 \
  --set gateway.image="$gateway_image" --set gateway.autoscaling.enabled=false --set gateway.replicas=1

step "samples: providers, routes, a caller"
kubectl -n "$namespace" apply -f deployments/kubernetes/providers.yaml \
  -f deployments/kubernetes/routes.yaml -f deployments/kubernetes/api-keys.yaml

step "everything Ready"
kubectl -n "$namespace" wait --for=condition=Ready --timeout="$timeout" \
  llmprovider/fake routepolicy/default apikey/search-team llmgateway/main || fail "not Ready"
kubectl -n "$namespace" rollout status deployment/main-gateway --timeout="$timeout" || fail "gateway pods"

step "a first completion through the Service"
key=$(kubectl -n "$namespace" get secret search-team-llm-key -o jsonpath='{.data.apiKey}' | base64 -d)
kubectl -n "$namespace" port-forward service/main-gateway 18080:80 >/dev/null 2>&1 &
forward=$!
trap 'kill $forward 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:18080/ready 2>/dev/null && break; sleep 0.2; done
answer=$(curl -fsS http://127.0.0.1:18080/v1/chat/completions -H "Authorization: Bearer $key" \
  -H 'Content-Type: application/json' -d '{"model": "fake-gpt", "messages": [{"role": "user", "content": "hi"}]}') \
  || fail "the completion request failed"
echo "$answer" | grep -q 'Hello from llm-gateway in Kubernetes' || fail "unexpected answer: $answer"
echo "$answer"

step "usage reaches the ApiKey status (within the 60 s sync; needs gateway.redis, else skipped)"
if kubectl -n "$namespace" get llmgateway main -o jsonpath='{.spec.redis}' | grep -q url; then
  kubectl -n "$namespace" wait --for=jsonpath='{.status.usage.requests}'=1 --timeout=90s apikey/search-team \
    || fail "usage not synced"
fi

step "cleanup (KEEP=1 keeps the namespace)"
if [ -z "${KEEP:-}" ]; then
  helm uninstall lgw --namespace "$namespace"
  kubectl delete namespace "$namespace" --wait=false
fi
echo "cluster suite passed"
