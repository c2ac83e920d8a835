//! Reconcile failures, each with a bounded label for metrics.

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or could not be reached (retried with backoff).
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// The object cannot be reconciled as written (reported in status, not retried hot).
    #[error("invalid spec: {0}")]
    InvalidSpec(String),
    /// The system's randomness source failed.
    #[error("cannot generate a key: {0}")]
    Randomness(String),
    /// Redis (usage counters) refused or could not be reached.
    #[error("Redis: {0}")]
    Redis(String),
}

impl Error {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(e)) if e.code == 409 => "conflict",
            Self::Kube(_) => "kube",
            Self::InvalidSpec(_) => "invalid_spec",
            Self::Randomness(_) => "randomness",
            Self::Redis(_) => "redis",
        }
    }
}
