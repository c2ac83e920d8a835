# The operator: same build, its own small runtime image. Build from the repository root:
#   docker build -f deployments/docker/operator.Dockerfile -t llm-gateway-operator .
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
RUN cargo build --release --locked -p llm-gateway-operator --bin llm-gateway-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/llm-gateway-operator /usr/local/bin/llm-gateway-operator
USER 65532:65532
EXPOSE 8081
# Kubernetes probes /health and /ready on :8081; outside Kubernetes there is nothing to check.
ENTRYPOINT ["/usr/local/bin/llm-gateway-operator"]
