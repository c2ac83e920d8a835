//! Writes every CRD of the llmgateway.io API as YAML: `crdgen [OUT_DIR]` writes one file per
//! kind (default: `crds/yaml` and the CRD Helm chart's `charts/llm-gateway-crds/files/crds`,
//! which must stay equal); `crdgen -` prints all of them to stdout.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let target = std::env::args().nth(1);
    for (file, yaml) in llm_gateway_crds::crd_yaml_files() {
        match target.as_deref() {
            Some("-") => print!("---\n{yaml}"),
            dir => {
                let dirs: Vec<PathBuf> = match dir {
                    Some(dir) => vec![PathBuf::from(dir)],
                    None => vec![
                        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/yaml")),
                        PathBuf::from(concat!(
                            env!("CARGO_MANIFEST_DIR"),
                            "/../charts/llm-gateway-crds/files/crds"
                        )),
                    ],
                };
                for dir in dirs {
                    let path = dir.join(&file);
                    if let Err(e) = std::fs::write(&path, &yaml) {
                        eprintln!("crdgen: cannot write {}: {e}", path.display());
                        return ExitCode::FAILURE;
                    }
                    eprintln!("crdgen: wrote {}", path.display());
                }
            }
        }
    }
    ExitCode::SUCCESS
}
