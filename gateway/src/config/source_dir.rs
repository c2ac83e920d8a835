//! Standalone configuration: a directory of YAML manifests, watched for changes.
//!
//! What is read, and why:
//! - `*.yaml`/`*.yml` directly in the directory, in name order. Hidden names (`.x`: a
//!   Kubernetes ConfigMap mount's `..data` machinery, `.#x` editor locks, `.x.tmp` files about
//!   to be renamed into place) and editor leftovers (`x.yaml~`, `x.yaml.swp`, `x.yaml.tmp`,
//!   `#x.yaml#`) are not manifests, so a file written elsewhere and renamed in is read only
//!   once complete.
//! - A symlink is followed only when its target resolves inside the directory (a ConfigMap
//!   mount's `x.yaml -> ..data/x.yaml`). One leading outside is refused with an error:
//!   otherwise anyone who can write the directory makes the gateway read any file it can open.
//! - Each file is read once and that exact text is parsed. A file changed during the read
//!   (identity, size or modification time differ before and after) or within the last
//!   [`SETTLE`] is still being written: [`read_settled`] reads again shortly after rather than
//!   apply a torn file.
//! - [`DirLimits`] caps bytes per file, bytes in total and documents in total, checked before
//!   parsing (a 50 MB value or a million tiny documents would otherwise be parsed and held).
//!
//! A fingerprint of names and contents lets the loader skip events that changed nothing.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use llm_gateway_crds::manifest::{DocumentCache, Manifests};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::loader::Loader;

/// Default cap on one file (16 MiB): the benchmark's 10,000 keys are one 3.6 MB file.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Default cap on all files together (64 MiB).
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;
/// Default cap on documents in all files (100,000): 10,000 keys with their Secrets and 1,000
/// routes are about 20,000, and parse time and memory grow with the count, not just the bytes.
pub const DEFAULT_MAX_DOCUMENTS: usize = 100_000;

/// A file modified more recently than this is taken to be still being written.
const SETTLE: Duration = Duration::from_millis(100);
/// Pause before reading again a directory found changing.
const RETRY_DELAY: Duration = Duration::from_millis(100);
/// Reads of a changing directory before giving up (about two seconds).
const MAX_ATTEMPTS: u32 = 20;
/// Quiet time after the last change before a reload (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(100);
/// Longest a reload waits for changes to stop, so a directory that never rests still reloads.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// Caps on what one reload reads; each error names its setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DirLimits {
    /// Largest file, in bytes (`MAX_CONFIG_FILE_BYTES`).
    pub file_bytes: u64,
    /// Largest sum of all files, in bytes (`MAX_CONFIG_TOTAL_BYTES`).
    pub total_bytes: u64,
    /// Most YAML documents in all files together (`MAX_CONFIG_DOCUMENTS`).
    pub documents: usize,
}

impl Default for DirLimits {
    fn default() -> Self {
        Self {
            file_bytes: DEFAULT_MAX_FILE_BYTES,
            total_bytes: DEFAULT_MAX_TOTAL_BYTES,
            documents: DEFAULT_MAX_DOCUMENTS,
        }
    }
}

/// The parsed directory and a fingerprint of what was read.
#[derive(Debug)]
pub struct DirContents {
    /// Every object in the directory.
    pub manifests: Manifests,
    /// Hash of file names and contents.
    pub fingerprint: u64,
}

/// Why one read of the directory produced nothing.
#[derive(Debug)]
pub enum ReadError {
    /// The directory cannot be served: every reason, naming file and cap, never content.
    Invalid(Vec<String>),
    /// This file was being written while read; reading again later may succeed.
    Changing(String),
}

/// Reads and parses every manifest file in `dir` with the default caps.
pub fn read(dir: &Path) -> Result<DirContents, Vec<String>> {
    read_settled(dir, &DirLimits::default(), &mut DocumentCache::default())
}

/// Reads `dir`, again after [`RETRY_DELAY`] while a file is being written (blocking; call
/// from a blocking context), giving up with an error after [`MAX_ATTEMPTS`].
#[allow(
    clippy::disallowed_methods,
    reason = "runs on a blocking thread (spawn_blocking or the check command)"
)]
pub fn read_settled(
    dir: &Path,
    limits: &DirLimits,
    cache: &mut DocumentCache,
) -> Result<DirContents, Vec<String>> {
    let mut attempts = 1;
    loop {
        match read_once_reusing(dir, limits, cache) {
            Ok(contents) => return Ok(contents),
            Err(ReadError::Invalid(errors)) => return Err(errors),
            Err(ReadError::Changing(name)) if attempts >= MAX_ATTEMPTS => {
                return Err(vec![format!(
                    "{name}: still being written after {attempts} reads; not applied until it \
                     stays unchanged for {} ms",
                    SETTLE.as_millis()
                )]);
            }
            Err(ReadError::Changing(_)) => {
                attempts += 1;
                std::thread::sleep(RETRY_DELAY);
            }
        }
    }
}

/// One read of `dir`: every file checked, read and capped, then parsed.
pub fn read_once(dir: &Path, limits: &DirLimits) -> Result<DirContents, ReadError> {
    read_once_reusing(dir, limits, &mut DocumentCache::default())
}

/// [`read_once`], taking documents whose text `cache` saw in the previous read from it
/// rather than parsing them again.
pub fn read_once_reusing(
    dir: &Path,
    limits: &DirLimits,
    cache: &mut DocumentCache,
) -> Result<DirContents, ReadError> {
    let files = read_files(dir, limits)?;
    let mut manifests = Manifests::default();
    let mut hasher = DefaultHasher::new();
    let mut errors = Vec::new();
    cache.begin();
    for (name, text) in &files {
        (name, text).hash(&mut hasher);
        if let Err(e) = manifests.add_yaml_cached(name, text, cache) {
            errors.push(e.to_string());
        }
    }
    cache.end();
    if errors.is_empty() {
        Ok(DirContents {
            manifests,
            fingerprint: hasher.finish(),
        })
    } else {
        Err(ReadError::Invalid(errors))
    }
}

/// The text of every manifest file, by name, within the caps.
fn read_files(dir: &Path, limits: &DirLimits) -> Result<Vec<(String, String)>, ReadError> {
    let unreadable =
        |e: std::io::Error| format!("cannot read config directory {}: {e}", dir.display());
    let root = std::fs::canonicalize(dir).map_err(|e| ReadError::Invalid(vec![unreadable(e)]))?;
    let mut names: Vec<String> = std::fs::read_dir(&root)
        .map_err(|e| ReadError::Invalid(vec![unreadable(e)]))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| is_manifest_name(name))
        .collect();
    names.sort();
    let mut files = Vec::with_capacity(names.len());
    let mut errors = Vec::new();
    let (mut total_bytes, mut documents) = (0_u64, 0_usize);
    for name in names {
        let room = limits.total_bytes.saturating_sub(total_bytes);
        let text = match read_file(&root, &name, limits, room) {
            Ok(Some(text)) => text,
            Ok(None) => continue,
            Err(FileError::Changing) => return Err(ReadError::Changing(name)),
            Err(FileError::Invalid(message)) => {
                errors.push(format!("{name}: {message}"));
                continue;
            }
        };
        total_bytes += text.len() as u64;
        documents += count_documents(&text);
        if documents > limits.documents {
            errors.push(format!(
                "{name}: the config directory holds more than {} YAML documents, the cap \
                 MAX_CONFIG_DOCUMENTS; not read",
                limits.documents
            ));
            break;
        }
        files.push((name, text));
    }
    if errors.is_empty() {
        Ok(files)
    } else {
        Err(ReadError::Invalid(errors))
    }
}

/// Why one file was not read.
enum FileError {
    /// Being written: read the directory again later.
    Changing,
    /// Refused, with the reason (no content).
    Invalid(String),
}

/// Reads `root/name` once: `None` for what is not a manifest file (a directory, a socket, a
/// dangling link). `room` is what the total cap has left.
fn read_file(
    root: &Path,
    name: &str,
    limits: &DirLimits,
    room: u64,
) -> Result<Option<String>, FileError> {
    let path = root.join(name);
    let entry = match std::fs::symlink_metadata(&path) {
        Ok(entry) => entry,
        // Listed a moment ago: removed or being replaced.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(FileError::Changing),
        Err(e) => return Err(FileError::Invalid(format!("cannot read: {e}"))),
    };
    let resolved = match std::fs::canonicalize(&path) {
        Ok(resolved) => resolved,
        Err(_) if entry.file_type().is_symlink() => return Ok(None),
        Err(e) => return Err(FileError::Invalid(format!("cannot read: {e}"))),
    };
    if !resolved.starts_with(root) {
        return Err(FileError::Invalid(
            "a symlink to a file outside the config directory; refused (only links inside it, \
             such as a ConfigMap mount's ..data, are followed)"
                .to_owned(),
        ));
    }
    // The resolved path holds no symlink; a regular file there is what gets opened (a FIFO
    // would block the reload forever).
    let target = match std::fs::symlink_metadata(&resolved) {
        Ok(target) if target.is_file() => target,
        Ok(_) => return Ok(None),
        Err(_) => return Err(FileError::Changing),
    };
    let mut file = std::fs::File::open(&resolved).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => FileError::Changing,
        _ => FileError::Invalid(format!("cannot read: {e}")),
    })?;
    let opened = file
        .metadata()
        .map_err(|e| FileError::Invalid(format!("cannot read: {e}")))?;
    if (opened.dev(), opened.ino()) != (target.dev(), target.ino()) {
        return Err(FileError::Changing);
    }
    let size = opened.len();
    if size > limits.file_bytes {
        return Err(FileError::Invalid(format!(
            "{size} bytes, over the cap of {} bytes per file (MAX_CONFIG_FILE_BYTES); not read",
            limits.file_bytes
        )));
    }
    if size > room {
        return Err(FileError::Invalid(format!(
            "the config directory holds more than {} bytes, the cap on all files together \
             (MAX_CONFIG_TOTAL_BYTES); not read",
            limits.total_bytes
        )));
    }
    // Checked after the caps: a file over one is refused at once, not waited for.
    if recently_modified(&opened) {
        return Err(FileError::Changing);
    }
    // One byte more than announced tells a file that grew during the read.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.by_ref()
        .take(size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| FileError::Invalid(format!("cannot read: {e}")))?;
    // Through the name again, as the next read would see it: a link retargeted or a file
    // replaced or appended to meanwhile shows here.
    let after = std::fs::metadata(&path).map_err(|_| FileError::Changing)?;
    let still = std::fs::canonicalize(&path).map_err(|_| FileError::Changing)?;
    if bytes.len() as u64 != size || !same_version(&opened, &after) || still != resolved {
        return Err(FileError::Changing);
    }
    String::from_utf8(bytes)
        .map(Some)
        .map_err(|_| FileError::Invalid("not UTF-8 text".to_owned()))
}

/// Same file, same size, same modification time.
fn same_version(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    (a.dev(), a.ino(), a.len()) == (b.dev(), b.ino(), b.len())
        && a.modified().ok() == b.modified().ok()
}

/// Modified less than [`SETTLE`] ago (a time in the future, from clock skew, is not recent:
/// it would otherwise hold the file back until the clock catches up).
fn recently_modified(metadata: &std::fs::Metadata) -> bool {
    metadata
        .modified()
        .ok()
        .and_then(|modified| SystemTime::now().duration_since(modified).ok())
        .is_some_and(|age| age < SETTLE)
}

/// Whether a directory entry is a manifest: `*.yaml` or `*.yml`, not hidden, not an editor's
/// lock or autosave (`.#x.yaml`, `#x.yaml#`). Backups and swap files (`x.yaml~`, `x.yaml.swp`,
/// `x.yaml.tmp`) end otherwise and are never manifests.
pub fn is_manifest_name(name: &str) -> bool {
    !name.starts_with(['.', '#']) && (name.ends_with(".yaml") || name.ends_with(".yml"))
}

/// An upper bound on the YAML documents in `text` (document start and end markers, plus one
/// for content before the first), counted without parsing so the cap holds before any work.
/// Lines end at every break a YAML parser honours (LF, CR, NEL, LS, PS), not only at LF.
pub fn count_documents(text: &str) -> usize {
    let markers = text
        .split(['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'])
        .filter(|line| {
            ["---", "..."].iter().any(|marker| {
                line.strip_prefix(marker)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
            })
        })
        .count();
    markers + 1
}

/// Watches the loader's directory and reloads once each burst of changes has settled (no
/// event for [`DEBOUNCE`], or [`MAX_DELAY`] after the first), until the returned watcher is
/// dropped.
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
            if !settled(&mut rx).await {
                return;
            }
            let loader = loader.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || loader.reload()).await {
                tracing::error!(error = %e, "config reload task failed");
            }
        }
    });
    Ok(watcher)
}

/// Waits until no event came for [`DEBOUNCE`] or [`MAX_DELAY`] passed; false once the watcher
/// is gone. A file written in several steps (a slow copy, an editor) is read after its last
/// step, not after its first.
async fn settled(rx: &mut mpsc::Receiver<()>) -> bool {
    let deadline = tokio::time::Instant::now() + MAX_DELAY;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return true;
        }
        match tokio::time::timeout(DEBOUNCE.min(left), rx.recv()).await {
            Ok(Some(())) => {}
            Ok(None) => return false,
            Err(_) => return true,
        }
    }
}

#[cfg(test)]
#[path = "source_dir_tests.rs"]
mod tests;
