//! The `llm-gateway` binary: parse settings, set up logging, run.

use std::process::ExitCode;

use clap::Parser;
use llm_gateway::args::{Cli, Command};
use llm_gateway_crds::compile::{CompileInputs, compile};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Keygen { count }) => keygen(count),
        Some(Command::Healthcheck { url }) => healthcheck(&url).await,
        Some(Command::Check {
            config,
            api_key_pepper,
        }) => check(&config, api_key_pepper.as_bytes()),
        Some(Command::Serve(args)) => run(*args).await,
        None => run(cli.serve).await,
    }
}

async fn run(args: llm_gateway::args::ServeArgs) -> ExitCode {
    {
        {
            let _flush_logs_at_exit =
                llm_gateway::telemetry::init(&args.log_level, args.log_format);
            match llm_gateway::server::serve(args).await {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("llm-gateway: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

async fn healthcheck(url: &str) -> ExitCode {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(3))
        .build();
    let answer = match client {
        Ok(client) => client.get(url).send().await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(response) if response.status().is_success() => ExitCode::SUCCESS,
        Ok(response) => {
            eprintln!(
                "llm-gateway healthcheck: {url} answered {}",
                response.status()
            );
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("llm-gateway healthcheck: {url}: {e}");
            ExitCode::FAILURE
        }
    }
}

fn keygen(count: usize) -> ExitCode {
    for _ in 0..count {
        match llm_gateway_crds::keys::generate() {
            Ok(key) => {
                println!("{key}");
                if count == 1 {
                    eprintln!("key id: {}", llm_gateway_crds::keys::key_id(&key));
                }
            }
            Err(e) => {
                eprintln!("llm-gateway keygen: no randomness available: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn check(dir: &std::path::Path, pepper: &[u8]) -> ExitCode {
    let contents = match llm_gateway::config::source_dir::read(dir) {
        Ok(contents) => contents,
        Err(errors) => return report(dir, &errors),
    };
    let env = |name: &str| std::env::var(name).ok();
    match compile(
        &contents.manifests,
        &CompileInputs {
            env: &env,
            key_pepper: pepper,
            admitted: false,
        },
    ) {
        Ok(config) => {
            println!(
                "{}: OK ({} providers, {} routes, {} API keys)",
                dir.display(),
                config.providers.len(),
                config.routes.len(),
                config.keys.len()
            );
            for warning in llm_gateway_crds::catalogue::unpriced_under_budget(&config) {
                println!("  warning: {warning}");
            }
            for p in config.providers.iter().filter(|p| p.unavailable.is_some()) {
                println!(
                    "  note: provider {} is unavailable: {}",
                    p.id,
                    p.unavailable.as_deref().unwrap_or("")
                );
            }
            ExitCode::SUCCESS
        }
        Err(errors) => report(
            dir,
            &errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ),
    }
}

fn report(dir: &std::path::Path, errors: &[String]) -> ExitCode {
    eprintln!("{}: {} error(s):", dir.display(), errors.len());
    for e in errors {
        eprintln!("  {e}");
    }
    ExitCode::FAILURE
}
