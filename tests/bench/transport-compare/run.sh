#!/usr/bin/env bash
# Compares HTTP/1.1 client libraries for the upstream path: hyper driven in the request's
# task (the gateway's transport), hyper-util's pooled client (reqwest's) and pingora-core's
# connector, each on one pinned core against bench-upstream on the other, 3 rounds.
# Usage: tests/bench/transport-compare/run.sh [REQUESTS]   (on an idle machine)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../../.."
requests="${1:-100000}"
# pingora-core builds zlib-ng with cmake.
command -v cmake >/dev/null || { apt-get update -qq && apt-get install -y -qq cmake >/dev/null; }
cargo build --release --locked -p llm-gateway-bench
(cd tests/bench/transport-compare && cargo build --release --locked)
port=18731
taskset -c 0 target/release/bench-upstream --port "$port" >/dev/null &
upstream=$!
trap 'kill "$upstream"' EXIT
for _ in $(seq 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.05
done
for _ in 1 2 3; do
    for client in in-task hyper-util pingora; do
        taskset -c 1 tests/bench/transport-compare/target/release/transport-compare \
            --upstream "127.0.0.1:$port" --client "$client" --requests "$requests"
    done
done
