#!/usr/bin/env bash
# The benchmark's one command: installs nginx and redis-server from Debian's packages when
# missing, builds the release binaries, and runs bench.py (arguments are passed on; see
# README.md). Not part of the README's test command: it takes about 15 minutes and wants an
# otherwise idle 2-core machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v redis-server >/dev/null || missing+=(redis-server)
command -v taskset >/dev/null || missing+=(util-linux)
if ((${#missing[@]})); then
    echo "bench: installing ${missing[*]}" >&2
    # Debian's packages start their services on install; the benchmark starts its own.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    rm -f /usr/sbin/policy-rc.d
fi

cargo build --release --locked -p llm-gateway -p llm-gateway-bench
exec python3 tests/bench/bench.py "$@"
