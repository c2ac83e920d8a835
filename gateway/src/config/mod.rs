//! The served configuration: an immutable [`Snapshot`] behind an atomically swapped handle.
//!
//! A request loads the current snapshot once (`SnapshotHandle::load`) and uses that `Arc` to
//! the end, so a reload never changes a request midway; the old snapshot is freed when its
//! last request finishes. Sources (`source_dir`, `source_kube`) only ever produce whole
//! snapshots through [`loader::Loader`].

pub mod key_policy;
pub mod loader;
pub mod route;
pub mod snapshot;
pub mod source_dir;
pub mod source_kube;

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;

pub use snapshot::{ProviderRuntime, RouteRuntime, Snapshot};

/// The snapshot being served, swapped atomically on reload.
#[derive(Debug, Default)]
pub struct SnapshotHandle {
    current: ArcSwapOption<Snapshot>,
    status: Mutex<ReloadStatus>,
}

/// What `/health/detailed` reports about the configuration source.
#[derive(Clone, Debug, Default)]
pub struct ReloadStatus {
    /// Where configuration comes from, e.g. `directory:/etc/llm-gateway`.
    pub source: String,
    /// When the last reload was attempted.
    pub last_attempt: Option<SystemTime>,
    /// Errors of the last attempt, without configuration content; empty once the served
    /// configuration is current again (a reload applied it, or found the source unchanged
    /// since it was applied, e.g. a rejected edit reverted).
    pub last_errors: Vec<String>,
    /// Successful reloads and rejected ones since start.
    pub successes: u64,
    /// Rejected reloads since start.
    pub failures: u64,
}

impl SnapshotHandle {
    /// The snapshot to serve a request from, if one is loaded.
    pub fn load(&self) -> Option<Arc<Snapshot>> {
        self.current.load_full()
    }

    /// Makes `snapshot` the one new requests see.
    pub fn store(&self, snapshot: Snapshot) {
        self.current.store(Some(Arc::new(snapshot)));
    }

    /// A copy of the reload bookkeeping.
    pub fn status(&self) -> ReloadStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Updates the reload bookkeeping.
    pub fn update_status(&self, update: impl FnOnce(&mut ReloadStatus)) {
        if let Ok(mut status) = self.status.lock() {
            update(&mut status);
        }
    }
}
