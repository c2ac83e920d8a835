#!/usr/bin/env bash
# Watches a gateway's admin listener (ADMIN_ADDRESS): /health (alive), /ready (serving) and
# /health/circuit-breakers (open breakers), one line per check to stdout (or LOG_FILE). After FAILURES consecutive failed
# checks it runs ALERT_COMMAND once (e.g. a webhook call) and, with --once, exits non-zero.
#
#   health-monitor.sh [--once] [URL]        URL default http://127.0.0.1:9090
#   INTERVAL=30 FAILURES=3 ALERT_COMMAND='curl -fsS -d @- https://hooks.example/x' health-monitor.sh
set -uo pipefail

once=0
if [ "${1:-}" = "--once" ]; then once=1; shift; fi
base="${1:-${HEALTH_URL:-http://127.0.0.1:9090}}"
interval="${INTERVAL:-30}"
threshold="${FAILURES:-3}"
log="${LOG_FILE:-/dev/stdout}"
failed=0

say() { printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*" >> "$log"; }

check() {
  local problems=()
  curl -fsS --max-time 5 -o /dev/null "$base/health" || problems+=("not alive")
  curl -fsS --max-time 5 -o /dev/null "$base/ready" || problems+=("not ready")
  local breakers
  breakers=$(curl -fsS --max-time 5 "$base/health/circuit-breakers" 2>/dev/null | grep -o '"state": *"open"' | wc -l)
  [ "${breakers:-0}" -gt 0 ] && problems+=("$breakers open circuit breaker(s)")
  if [ "${#problems[@]}" -eq 0 ]; then
    say "ok $base"
    return 0
  fi
  say "FAIL $base: ${problems[*]}"
  return 1
}

while true; do
  if check; then
    failed=0
  else
    failed=$((failed + 1))
    if [ "$failed" -eq "$threshold" ] && [ -n "${ALERT_COMMAND:-}" ]; then
      say "alerting after $failed failed checks"
      echo "llm-gateway at $base failed $failed checks" | bash -c "$ALERT_COMMAND" || say "alert command failed"
    fi
  fi
  if [ "$once" = 1 ]; then
    [ "$failed" -eq 0 ]
    exit
  fi
  sleep "$interval"
done
