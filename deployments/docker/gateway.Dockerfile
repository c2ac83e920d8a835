# The gateway: built with the locked dependencies, run as an unprivileged user from a
# distroless image (no shell, no package manager). Build from the repository root:
#   docker build -f deployments/docker/gateway.Dockerfile -t llm-gateway .
FROM rust:1.90-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crds crds
COPY gateway gateway
COPY operator operator
# Every workspace member must be present for cargo to load the workspace.
COPY tests/bench tests/bench
COPY tests/mock-upstream tests/mock-upstream
COPY tests/test-apiserver tests/test-apiserver
RUN cargo build --release --locked -p llm-gateway --bin llm-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/llm-gateway /usr/local/bin/llm-gateway
# The example config, for `docker run -e CONFIG_DIR=/etc/llm-gateway/config`. No default
# source: pods the operator runs set WATCH_NAMESPACE, and both at once are refused.
# No configuration is baked in: mount your own directory at /etc/llm-gateway/config (the
# repository's example holds a published key the gateway refuses outside --dev).
ENV HOST=0.0.0.0 PORT=8000
USER 65532:65532
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/llm-gateway", "healthcheck", "--url", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["/usr/local/bin/llm-gateway"]
