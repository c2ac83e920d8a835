//! Standalone configuration: a directory of YAML manifests, watched for changes.
//!
//! Reads every `*.yaml`/`*.yml` file directly in the directory (hidden names skipped, so a
//! Kubernetes ConfigMap mount's `..data` machinery is followed through its symlinks but not
//! read twice), in name order. A fingerprint of names and contents lets the loader skip
//! events that changed nothing.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use llm_gateway_crds::manifest::Manifests;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::loader::Loader;

/// The parsed directory and a fingerprint of what was read.
#[derive(Debug)]
pub struct DirContents {
    /// Every object in the directory.
    pub manifests: Manifests,
    /// Hash of file names and contents.
    pub fingerprint: u64,
}

/// Reads and parses every manifest file in `dir`.
pub fn read(dir: &Path) -> Result<DirContents, Vec<String>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            vec![format!(
                "cannot read config directory {}: {e}",
                dir.display()
            )]
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| is_manifest(path))
        .collect();
    files.sort();
    let mut manifests = Manifests::default();
    let mut hasher = DefaultHasher::new();
    let mut errors = Vec::new();
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match std::fs::read_to_string(path) {
            Ok(text) => {
                (&name, &text).hash(&mut hasher);
                if let Err(e) = manifests.add_yaml(&name, &text) {
                    errors.push(e.to_string());
                }
            }
            Err(e) => errors.push(format!("{name}: cannot read: {e}")),
        }
    }
    if errors.is_empty() {
        Ok(DirContents {
            manifests,
            fingerprint: hasher.finish(),
        })
    } else {
        Err(errors)
    }
}

fn is_manifest(path: &Path) -> bool {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    !name.starts_with('.') && (name.ends_with(".yaml") || name.ends_with(".yml")) && path.is_file()
}

/// Watches the loader's directory and reloads after each burst of changes (debounced), until
/// the returned watcher is dropped.
pub fn watch(loader: Arc<Loader>, dir: &Path) -> notify::Result<RecommendedWatcher> {
    let (tx, mut rx) = mpsc::channel::<()>(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            // A full channel already holds a pending reload; dropping this signal is fine.
            let _ = tx.try_send(());
        }
    })?;
    watcher.watch(dir, RecursiveMode::NonRecursive)?;
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Editors write files in several steps; wait for the burst to settle.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let loader = loader.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || loader.reload()).await {
                tracing::error!(error = %e, "config reload task failed");
            }
        }
    });
    Ok(watcher)
}
