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

# The peers (--peers), pinned, installed once into target/bench/peers.
if [[ " $* " == *" --peers "* ]]; then
    peers=target/bench/peers
    if [[ ! -x $peers/venv/bin/litellm ]]; then
        echo "bench: installing LiteLLM's proxy into $peers/venv" >&2
        python3 -m venv "$peers/venv"
        "$peers/venv/bin/pip" install -q 'litellm[proxy]==1.108.7'
    fi
    if [[ ! -f $peers/node_modules/@portkey-ai/gateway/build/start-server.js ]]; then
        echo "bench: installing the Portkey gateway into $peers" >&2
        npm install --silent --no-audit --no-fund --prefix "$peers" @portkey-ai/gateway@1.15.2
    fi
fi

cargo build --release --locked -p llm-gateway -p llm-gateway-bench
exec python3 tests/bench/bench.py "$@"
