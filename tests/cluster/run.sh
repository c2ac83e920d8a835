#!/usr/bin/env bash
# The real-cluster suite: install the CRD chart and then the chart on the cluster KUBECONFIG
# points at (kind, k3d or any other), apply the samples, get a first completion through the
# gateway Service, upgrade both (the CRD chart first; `helm upgrade --wait` with rollback on
# failure) while the gateway keeps answering, and watch usage reach the ApiKey status. CI runs it on kind
# (.github/workflows/kind.yml); it is not part of tests/run-all.sh (no cluster there).
#
# Needs: kubectl, helm (v3.8+ or v4), curl, and images the cluster can pull. By default the
# chart's own images (ghcr.io/llm-gateway/*:<appVersion>); to test a build, load it under
# those names, which needs no value overridden (kind shown; `k3d image import` for k3d):
#   kind create cluster --name lgw
#   version=$(sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' charts/llm-gateway/Chart.yaml)
#   docker build -f deployments/docker/gateway.Dockerfile -t "ghcr.io/llm-gateway/llm-gateway:$version" .
#   docker build -f deployments/docker/operator.Dockerfile -t "ghcr.io/llm-gateway/llm-gateway-operator:$version" .
#   kind load docker-image "ghcr.io/llm-gateway/llm-gateway:$version" \
#     "ghcr.io/llm-gateway/llm-gateway-operator:$version" --name lgw
#   tests/cluster/run.sh
# or name other images: GATEWAY_IMAGE=llm-gateway:dev OPERATOR_IMAGE=llm-gateway-operator:dev
# (the gateway's repository is then added to imagePolicy.allowedRepositories).
#
# Settings (environment):
#   NAMESPACE=lgw-e2e RELEASE=lgw TIMEOUT=300s   where, under which release name, how long to wait
#   CRDS_RELEASE=<RELEASE>-crds   the release of the CRD chart (stored in NAMESPACE too)
#   OPERATOR_REPLICAS=2      operator replicas (two elect a leader, as the chart's default)
#   REDIS=1                  run a throwaway Redis (REDIS_IMAGE, default redis:7-alpine) for
#                            shared limits and the usage step; REDIS=0 skips both
#   UPGRADE=1                the operator upgrade step; UPGRADE=0 skips it
#   PREVIOUS_CHART=ref       install this chart first (a path, or oci://… with PREVIOUS_VERSION),
#                            so the upgrade step upgrades from it to this repository's charts
#   PREVIOUS_CRDS_CHART=ref  the CRD chart of that release, installed before it; unset for a
#                            release whose chart had the CRDs in its crds/ folder, whose CRDs
#                            the upgrade step then hands to the CRD release (docs/upgrading.md)
#   KEEP=1                   keep the release and namespace at the end
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

namespace="${NAMESPACE:-lgw-e2e}"
release="${RELEASE:-lgw}"
timeout="${TIMEOUT:-300s}"
operator_replicas="${OPERATOR_REPLICAS:-2}"
chart=charts/llm-gateway
crds_release="${CRDS_RELEASE:-$release-crds}"
crds_chart=charts/llm-gateway-crds
fullname="$release-llm-gateway"
if [[ "$release" == *llm-gateway* ]]; then fullname="$release"; fi
step() { printf '\n==> %s\n' "$*"; }
fail() {
  echo "FAILED: $*" >&2
  kubectl -n "$namespace" get all,llmgateways,llmproviders,routepolicies,apikeys,llmquotas,leases >&2 || true
  kubectl -n "$namespace" get events --sort-by=.lastTimestamp >&2 2>/dev/null | tail -n 30 >&2 || true
  exit 1
}

# Helm 4 renamed --atomic to --rollback-on-failure.
case "$(helm version --template '{{.Version}}' 2>/dev/null)" in
  v3.*) rollback_flag=--atomic ;;
  *) rollback_flag=--rollback-on-failure ;;
esac

# `repository[:tag]` of an image reference, without its tag or digest.
repository_of() {
  local reference="${1%@*}" last
  last="${reference##*/}"
  if [[ "$last" == *:* ]]; then reference="${reference%:*}"; fi
  printf '%s' "$reference"
}

values=(--set "operator.replicas=$operator_replicas" --set gateway.autoscaling.enabled=false
  --set gateway.replicas=1)
if [ -n "${OPERATOR_IMAGE:-}" ]; then
  operator_repository="$(repository_of "$OPERATOR_IMAGE")"
  operator_tag="${OPERATOR_IMAGE#"$operator_repository"}"
  operator_tag="${operator_tag#:}"
  [ -n "$operator_tag" ] || fail "OPERATOR_IMAGE needs a tag: $OPERATOR_IMAGE"
  values+=(--set "operator.image.repository=$operator_repository" --set-string "operator.image.tag=$operator_tag")
fi
if [ -n "${GATEWAY_IMAGE:-}" ]; then
  values+=(--set "gateway.image=$GATEWAY_IMAGE"
    --set "imagePolicy.allowedRepositories={$(repository_of "$GATEWAY_IMAGE")}")
fi
if [ "${REDIS:-1}" = 1 ]; then
  values+=(--set gateway.redis.urlSecretName=redis --set operator.usageSyncInterval=5s)
fi

step "cluster: $(kubectl config current-context)"
kubectl version >/dev/null || fail "no cluster reachable through KUBECONFIG"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null

if [ "${REDIS:-1}" = 1 ]; then
  step "a throwaway Redis for shared limits and usage (${REDIS_IMAGE:-redis:7-alpine})"
  kubectl -n "$namespace" create deployment redis --image="${REDIS_IMAGE:-redis:7-alpine}" --port=6379 \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$namespace" create service clusterip redis --tcp=6379:6379 --dry-run=client -o yaml \
    | kubectl apply -f - >/dev/null
  kubectl -n "$namespace" create secret generic redis --from-literal=url=redis://redis:6379 \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$namespace" rollout status deployment/redis --timeout="$timeout" || fail "redis"
fi

crds=(llmgateways.llmgateway.io llmproviders.llmgateway.io routepolicies.llmgateway.io apikeys.llmgateway.io llmquotas.llmgateway.io)
# The CRDs belong to the CRD release (upgraded with it) and are kept by `helm uninstall`.
check_crds() {
  local crd owner policy
  for crd in "${crds[@]}"; do
    owner=$(kubectl get crd "$crd" -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}') \
      || fail "CRD $crd missing"
    policy=$(kubectl get crd "$crd" -o jsonpath='{.metadata.annotations.helm\.sh/resource-policy}')
    if [ "$owner" != "$crds_release" ] || [ "$policy" != keep ]; then
      fail "CRD $crd: release '$owner', resource-policy '$policy'"
    fi
  done
}
# docs/upgrading.md: CRDs that a chart's crds/ folder installed (charts before llm-gateway-crds)
# carry no release, and CRDs an uninstalled release kept carry its name; label and annotate
# them so the CRD release adopts them.
adopt_crds() {
  local crd
  for crd in "${crds[@]}"; do
    kubectl label crd "$crd" app.kubernetes.io/managed-by=Helm --overwrite >/dev/null
    kubectl annotate crd "$crd" "meta.helm.sh/release-name=$crds_release" \
      "meta.helm.sh/release-namespace=$namespace" --overwrite >/dev/null
  done
}
if [ -n "${PREVIOUS_CHART:-}" ]; then
  if [ -n "${PREVIOUS_CRDS_CHART:-}" ]; then
    step "helm install of the previous CRD chart ($PREVIOUS_CRDS_CHART ${PREVIOUS_VERSION:-})"
    if kubectl get crd "${crds[0]}" >/dev/null 2>&1; then adopt_crds; fi
    previous_crds=(helm upgrade --install "$crds_release" "$PREVIOUS_CRDS_CHART" --namespace "$namespace" --wait
      --timeout "$timeout")
    if [ -n "${PREVIOUS_VERSION:-}" ]; then previous_crds+=(--version "$PREVIOUS_VERSION"); fi
    "${previous_crds[@]}" || fail "helm install of $PREVIOUS_CRDS_CHART"
  fi
  step "helm install of the previous chart ($PREVIOUS_CHART ${PREVIOUS_VERSION:-})"
  previous=(helm upgrade --install "$release" "$PREVIOUS_CHART" --namespace "$namespace" --wait --timeout "$timeout")
  if [ -n "${PREVIOUS_VERSION:-}" ]; then previous+=(--version "$PREVIOUS_VERSION"); fi
  "${previous[@]}" --set "operator.replicas=$operator_replicas" --set gateway.autoscaling.enabled=false \
    --set gateway.replicas=1 || fail "helm install of $PREVIOUS_CHART"
else
  step "helm install of the CRD chart ($crds_chart, release $crds_release)"
  # Kept by an earlier release (helm uninstall keeps them): this release takes them over.
  if kubectl get crd "${crds[0]}" >/dev/null 2>&1; then adopt_crds; fi
  helm upgrade --install "$crds_release" "$crds_chart" --namespace "$namespace" --wait --timeout "$timeout" \
    || fail "helm install of the CRD chart"
  step "helm install ($chart; operator ${OPERATOR_IMAGE:-image of the chart}, gateway ${GATEWAY_IMAGE:-image of the operator}; $operator_replicas operator replicas)"
  helm upgrade --install "$release" "$chart" --namespace "$namespace" --wait --timeout "$timeout" \
    "${values[@]}" || fail "helm install"

  step "CRDs: installed by the CRD release, kept by uninstall"
  check_crds
fi

step "samples: providers, routes, a caller"
kubectl -n "$namespace" apply -f deployments/kubernetes/providers.yaml \
  -f deployments/kubernetes/routes.yaml -f deployments/kubernetes/api-keys.yaml

step "everything Ready"
kubectl -n "$namespace" wait --for=condition=Ready --timeout="$timeout" \
  llmprovider/fake routepolicy/default apikey/search-team llmgateway/main || fail "not Ready"
kubectl -n "$namespace" rollout status deployment/main-gateway --timeout="$timeout" || fail "gateway pods"

key=$(kubectl -n "$namespace" get secret search-team-llm-key -o jsonpath='{.data.apiKey}' | base64 -d)
forward=
stop_forward() { if [ -n "$forward" ]; then kill "$forward" 2>/dev/null || true; wait "$forward" 2>/dev/null || true; forward=; fi; }
trap stop_forward EXIT
# A fresh port-forward each time: one to a pod that has since been replaced stops answering.
complete() {
  stop_forward
  kubectl -n "$namespace" port-forward service/main-gateway 18080:80 >/dev/null 2>&1 &
  forward=$!
  for _ in $(seq 50); do curl -fsS -o /dev/null http://127.0.0.1:18080/ready 2>/dev/null && break; sleep 0.2; done
  answer=$(curl -fsS http://127.0.0.1:18080/v1/chat/completions -H "Authorization: Bearer $key" \
    -H 'Content-Type: application/json' -d '{"model": "fake-gpt", "messages": [{"role": "user", "content": "hi"}]}') \
    || fail "the completion request failed"
  echo "$answer" | grep -q 'Hello from llm-gateway in Kubernetes' || fail "unexpected answer: $answer"
  echo "$answer"
}
completions=0

step "a first completion through the Service"
complete
completions=$((completions + 1))

if [ "${UPGRADE:-1}" = 1 ]; then
  step "upgrade: the CRD chart, then the operator (helm upgrade $rollback_flag --wait to this repository's charts, a new operator pod template)"
  # The previous chart's crds/ folder left its CRDs to no release (docs/upgrading.md).
  if [ -n "${PREVIOUS_CHART:-}" ] && [ -z "${PREVIOUS_CRDS_CHART:-}" ]; then adopt_crds; fi
  helm upgrade --install "$crds_release" "$crds_chart" --namespace "$namespace" --wait "$rollback_flag" \
    --timeout "$timeout" || fail "helm upgrade of the CRD chart"
  # Every value is given again, so none is reused from the previous revision.
  helm upgrade "$release" "$chart" --namespace "$namespace" --wait "$rollback_flag" --timeout "$timeout" \
    "${values[@]}" --set-string "operator.podAnnotations.lgw-e2e/upgraded=$(date +%s)" || fail "helm upgrade"
  for deployed in "$crds_release" "$release"; do
    helm list --namespace "$namespace" --deployed -q | grep -qx "$deployed" \
      || fail "the release $deployed is not deployed after the upgrade"
  done
  check_crds
  kubectl -n "$namespace" rollout status "deployment/$fullname-operator" --timeout="$timeout" || fail "operator rollout"
  ready=$(kubectl -n "$namespace" get "deployment/$fullname-operator" -o jsonpath='{.status.readyReplicas}')
  [ "$ready" = "$operator_replicas" ] || fail "operator: $ready of $operator_replicas replicas ready"
  kubectl -n "$namespace" wait --for=condition=Ready --timeout="$timeout" llmgateway/main apikey/search-team \
    || fail "not Ready after the upgrade"
  complete
  completions=$((completions + 1))
fi

step "usage reaches the ApiKey status (needs gateway.redis: REDIS=1)"
if kubectl -n "$namespace" get llmgateway main -o jsonpath='{.spec.redis}' | grep -q url; then
  kubectl -n "$namespace" wait --for=jsonpath='{.status.usage.requests}'="$completions" --timeout=120s \
    apikey/search-team || fail "usage not synced: $(kubectl -n "$namespace" get apikey search-team -o jsonpath='{.status.usage}')"
  kubectl -n "$namespace" get apikey search-team -o jsonpath='{.status.usage}'; echo
else
  echo "skipped: the gateway has no Redis"
fi
stop_forward

step "cleanup (KEEP=1 keeps the releases and the namespace; the CRDs stay either way)"
if [ -z "${KEEP:-}" ]; then
  helm uninstall "$release" --namespace "$namespace" --wait --timeout "$timeout"
  if helm status "$crds_release" --namespace "$namespace" >/dev/null 2>&1; then
    helm uninstall "$crds_release" --namespace "$namespace" --wait --timeout "$timeout"
  fi
  for crd in "${crds[@]}"; do
    kubectl get crd "$crd" >/dev/null || fail "helm uninstall deleted the CRD $crd"
  done
  kubectl -n "$namespace" get llmprovider/fake routepolicy/default apikey/search-team >/dev/null \
    || fail "helm uninstall deleted resources of the CRDs"
  kubectl delete namespace "$namespace" --wait=false
fi
echo "cluster suite passed"
