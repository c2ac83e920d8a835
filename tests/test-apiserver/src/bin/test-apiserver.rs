//! `test-apiserver`: the in-memory Kubernetes API server as a process, for tests that run
//! clients out of process (the gateway binary, kubectl, the Python client).

use std::path::PathBuf;

use clap::Parser;
use test_apiserver::TestApiServer;

/// Serves the Kubernetes API from memory on a loopback port.
#[derive(Debug, Parser)]
#[command(name = "test-apiserver", version, about)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Write a kubeconfig pointing at the server here.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = TestApiServer::start_on(args.port).await?;
    if let Some(path) = &args.kubeconfig {
        std::fs::write(path, server.kubeconfig())?;
    }
    println!("{}", server.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
