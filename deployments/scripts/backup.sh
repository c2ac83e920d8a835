#!/usr/bin/env bash
# Backs up and restores what llm-gateway keeps: the llmgateway.io resources (as YAML, without
# status or server-set metadata) and the gateway's Redis keys (limits, usage, spend: every key
# under `lgw:`, with its TTL). Key Secrets are not copied: back them up with your Secret backups.
#
#   backup.sh backup  DIR     writes DIR/resources.json and DIR/redis.keys
#   backup.sh restore DIR     applies the resources and restores the Redis keys
#
# Settings: REDIS_URL (default redis://127.0.0.1:6379), KUBECTL (default kubectl; the
# resources part is skipped with a note when no cluster is configured), NAMESPACE (default: all).
set -euo pipefail

command="${1:?usage: backup.sh backup|restore DIR}"
dir="${2:?usage: backup.sh backup|restore DIR}"
redis_url="${REDIS_URL:-redis://127.0.0.1:6379}"
kubectl="${KUBECTL:-kubectl}"
kinds="llmgateways.llmgateway.io,llmproviders.llmgateway.io,routepolicies.llmgateway.io,apikeys.llmgateway.io,llmquotas.llmgateway.io"
scope=(--all-namespaces)
[ -n "${NAMESPACE:-}" ] && scope=(--namespace "$NAMESPACE")
redis() { redis-cli -u "$redis_url" --no-auth-warning "$@"; }

have_cluster() { "$kubectl" version --request-timeout=5s >/dev/null 2>&1; }

backup() {
  mkdir -p "$dir"
  if have_cluster; then
    "$kubectl" get "$kinds" "${scope[@]}" -o json \
      | python3 -c '
import json, sys
items = json.load(sys.stdin)["items"]
for item in items:
    item.pop("status", None)
    meta = item["metadata"]
    item["metadata"] = {k: meta[k] for k in ("name", "namespace", "labels", "annotations") if k in meta}
json.dump({"apiVersion": "v1", "kind": "List", "items": items}, sys.stdout, indent=1)
print(len(items), file=sys.stderr)' > "$dir/resources.json" 2> "$dir/.count"
    echo "resources: $(cat "$dir/.count") written to $dir/resources.json"
    rm -f "$dir/.count"
  else
    echo "resources: no cluster configured; skipped"
  fi
  : > "$dir/redis.keys"
  local count=0
  while IFS= read -r key; do
    [ -z "$key" ] && continue
    local ttl payload
    ttl=$(redis PTTL "$key")
    [ "$ttl" -lt 0 ] && ttl=0
    payload=$(redis --raw DUMP "$key" | head -c -1 | python3 -c 'import sys; print(sys.stdin.buffer.read().hex())')
    printf '%s\t%s\t%s\n' "$key" "$ttl" "$payload" >> "$dir/redis.keys"
    count=$((count + 1))
  done < <(redis --scan --pattern 'lgw:*')
  echo "redis: $count keys written to $dir/redis.keys"
}

restore() {
  if [ -s "$dir/resources.json" ]; then
    # The API server validates against the CRD schemas; client-side validation needs the
    # OpenAPI document, which not every server (or test server) publishes.
    "$kubectl" apply --validate=false -f "$dir/resources.json"
  fi
  local count=0
  while IFS=$'\t' read -r key ttl payload; do
    [ -z "$key" ] && continue
    python3 -c 'import sys; sys.stdout.buffer.write(bytes.fromhex(sys.argv[1]))' "$payload" > "$dir/.payload"
    # `-x` passes the payload as the last argument, so REPLACE is done by deleting first.
    redis DEL "$key" > /dev/null
    redis -x RESTORE "$key" "$ttl" < "$dir/.payload" > /dev/null
    count=$((count + 1))
  done < "$dir/redis.keys"
  rm -f "$dir/.payload"
  echo "redis: $count keys restored"
}

case "$command" in
  backup) backup ;;
  restore) restore ;;
  *) echo "usage: backup.sh backup|restore DIR" >&2; exit 2 ;;
esac
