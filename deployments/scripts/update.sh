#!/usr/bin/env bash
# Updates the gateways of docker-compose.prod.yml one replica at a time, and rolls back
# automatically when an updated replica does not become healthy: nginx keeps routing to the
# other replica meanwhile, so callers see no outage.
#
#   update.sh [COMPOSE_FILE]     default deployments/compose/docker-compose.prod.yml
#
# Settings: SERVICES (default "gateway-1 gateway-2"), IMAGE (default llm-gateway:0.1.0, the
# image the file builds), HEALTH_TRIES (default 30, one a second), DOCKER (default docker).
set -euo pipefail

file="${1:-$(dirname "${BASH_SOURCE[0]}")/../compose/docker-compose.prod.yml}"
services=(${SERVICES:-gateway-1 gateway-2})
image="${IMAGE:-llm-gateway:0.1.0}"
tries="${HEALTH_TRIES:-30}"
docker="${DOCKER:-docker}"
rollback_image="${image%:*}:rollback"
compose() { "$docker" compose -f "$file" "$@"; }

healthy() {
  local service="$1"
  for _ in $(seq "$tries"); do
    if compose exec -T "$service" /usr/local/bin/llm-gateway healthcheck >/dev/null 2>&1; then
      return 0
    fi
    sleep "${HEALTH_INTERVAL:-1}"
  done
  return 1
}

echo "keeping the running image as $rollback_image"
"$docker" tag "$image" "$rollback_image"
echo "building the new image"
compose build "${services[0]}"

updated=()
for service in "${services[@]}"; do
  echo "updating $service"
  compose up -d --no-deps "$service"
  updated+=("$service")
  if ! healthy "$service"; then
    echo "$service is not healthy after the update: rolling back ${updated[*]}" >&2
    "$docker" tag "$rollback_image" "$image"
    for back in "${updated[@]}"; do
      compose up -d --no-deps "$back"
    done
    exit 1
  fi
  echo "$service healthy"
done
echo "update complete"
