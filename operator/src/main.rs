//! The `llm-gateway-operator` binary.
//!
//! This is the skeleton the operator issue builds on: it prints its version, checks that a
//! Kubernetes API server is reachable with the usual client configuration (in-cluster service
//! account, or `KUBECONFIG` / `~/.kube/config`) and that the llmgateway.io CRDs are installed,
//! and exits non-zero with a message saying what is missing. Reconciliation is not built yet.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use kube::api::{Api, ListParams};
use llm_gateway_crds::llm_provider::LlmProvider;

/// Reconciles LlmGateway, LlmProvider, RoutePolicy and ApiKey resources.
#[derive(Debug, Parser)]
#[command(name = "llm-gateway-operator", version, about)]
struct Args {
    /// Seconds to wait for the API server before giving up.
    #[arg(long, env = "CONNECT_TIMEOUT_SECONDS", default_value_t = 10)]
    connect_timeout_seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    eprintln!("llm-gateway-operator {}", env!("CARGO_PKG_VERSION"));
    let limit = Duration::from_secs(args.connect_timeout_seconds);
    match tokio::time::timeout(limit, check_cluster()).await {
        Ok(Ok(version)) => {
            eprintln!("connected to Kubernetes {version}; llmgateway.io CRDs are installed");
            eprintln!("reconciliation is not implemented in this version; exiting");
            ExitCode::from(2)
        }
        Ok(Err(e)) => {
            eprintln!("llm-gateway-operator: {e:#}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("llm-gateway-operator: no Kubernetes API server answered within {limit:?}");
            ExitCode::FAILURE
        }
    }
}

async fn check_cluster() -> anyhow::Result<String> {
    let client = kube::Client::try_default().await.map_err(|e| {
        anyhow::anyhow!(
            "no Kubernetes cluster configured ({e}); run in a pod with a service account, or set \
             KUBECONFIG"
        )
    })?;
    let version = client
        .apiserver_version()
        .await
        .map_err(|e| anyhow::anyhow!("the Kubernetes API server is not reachable: {e}"))?;
    let providers: Api<LlmProvider> = Api::all(client);
    providers
        .list(&ListParams::default().limit(1))
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "the llmgateway.io CRDs are not installed ({e}); apply crds/yaml/*.yaml first"
            )
        })?;
    Ok(version.git_version)
}
