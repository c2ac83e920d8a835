//! Unit tests of the loader's bookkeeping: errors reported only while they are true.

#![allow(clippy::unwrap_used, reason = "tests panic on setup failures")]

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

const ROUTE: &str = "apiVersion: llmgateway.io/v1alpha1\nkind: LlmProvider\nmetadata: {name: fake}\nspec: {type: fake}\n---\napiVersion: llmgateway.io/v1alpha1\nkind: RoutePolicy\nmetadata: {name: r}\nspec:\n  routes:\n  - model: m\n    targets: [{provider: fake}]\n";

/// Writes `text` dated in the past, so the directory source takes it as complete at once.
fn write_settled(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(10))
        .unwrap();
}

fn loader(dir: &Path) -> (Loader, Arc<SnapshotHandle>) {
    let metrics = Arc::new(Metrics::new());
    let handle = Arc::new(SnapshotHandle::default());
    let targets = Arc::new(TargetRegistry::new(metrics.clone()));
    let loader = Loader::new(
        dir.to_path_buf(),
        b"pepper".to_vec(),
        handle.clone(),
        metrics,
        targets,
    );
    (loader, handle)
}

#[test]
fn a_reverted_edit_clears_the_errors_it_caused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    write_settled(&file, ROUTE);
    let (loader, handle) = loader(dir.path());
    assert_eq!(loader.reload(), ReloadOutcome::Applied(1));

    write_settled(
        &file,
        &ROUTE.replace("provider: fake}", "provider: missing}"),
    );
    assert!(matches!(loader.reload(), ReloadOutcome::Rejected(_)));
    assert_eq!(handle.status().last_errors.len(), 1);

    write_settled(&file, ROUTE);
    assert_eq!(loader.reload(), ReloadOutcome::Unchanged);
    let status = handle.status();
    assert!(status.last_errors.is_empty(), "{:?}", status.last_errors);
    assert_eq!((status.successes, status.failures), (1, 1));
    assert_eq!(handle.load().map(|s| s.generation), Some(1));
}

#[test]
fn a_directory_over_a_cap_is_rejected_and_the_previous_snapshot_kept() {
    let dir = tempfile::tempdir().unwrap();
    write_settled(&dir.path().join("config.yaml"), ROUTE);
    let (loader, handle) = loader(dir.path());
    let loader = loader.with_dir_limits(source_dir::DirLimits {
        file_bytes: 4096,
        ..source_dir::DirLimits::default()
    });
    assert_eq!(loader.reload(), ReloadOutcome::Applied(1));
    write_settled(&dir.path().join("big.yaml"), &"#".repeat(5000));
    let ReloadOutcome::Rejected(errors) = loader.reload() else {
        panic!("a file over the cap was read");
    };
    assert!(
        errors[0].starts_with("big.yaml: ") && errors[0].contains("MAX_CONFIG_FILE_BYTES"),
        "{errors:?}"
    );
    assert_eq!(handle.load().map(|s| s.generation), Some(1));
}

#[test]
fn service_account_keys_need_no_pepper_but_hashed_keys_do() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yaml");
    let keyless = format!(
        "{ROUTE}---\napiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: pod}}\nspec: {{owner: o, serviceAccountRef: {{name: chat}}}}\n"
    );
    write_settled(&file, &keyless);
    let metrics = Arc::new(Metrics::new());
    let handle = Arc::new(SnapshotHandle::default());
    let targets = Arc::new(TargetRegistry::new(metrics.clone()));
    let loader = Loader::new(
        dir.path().to_path_buf(),
        Vec::new(),
        handle,
        metrics,
        targets,
    );
    assert_eq!(loader.reload(), ReloadOutcome::Applied(1));

    let key = llm_gateway_crds::keys::generate().unwrap();
    write_settled(
        &file,
        &format!(
            "{keyless}---\napiVersion: llmgateway.io/v1alpha1\nkind: ApiKey\nmetadata: {{name: k}}\nspec: {{owner: o, secretName: s}}\n---\napiVersion: v1\nkind: Secret\nmetadata: {{name: s}}\nstringData: {{apiKey: {key}}}\n"
        ),
    );
    let ReloadOutcome::Rejected(errors) = loader.reload() else {
        panic!("a hashed key was served without a pepper");
    };
    assert!(errors[0].contains("API_KEY_PEPPER is empty"), "{errors:?}");
}
