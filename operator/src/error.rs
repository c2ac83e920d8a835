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
    /// The API server refused a child as invalid or forbidden: retrying cannot help until the
    /// resource (or the cluster's policy) changes, so it is reported in status and an Event
    /// and retried with a growing backoff.
    #[error("the API server rejected {}", .0)]
    ChildRejected(Rejection),
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
            Self::ChildRejected(_) => "child_rejected",
            Self::Randomness(_) => "randomness",
            Self::Redis(_) => "redis",
        }
    }
}

impl Error {
    /// Whether only a change to the resource or the cluster can clear the failure.
    pub fn is_permanent(&self) -> bool {
        match self {
            Self::InvalidSpec(_) => true,
            // A 403 may clear on its own (a quota freed, RBAC still propagating after an
            // install, a namespace finishing its deletion): retried on the transient schedule.
            Self::ChildRejected(rejection) => rejection.code != 403,
            _ => false,
        }
    }
}

/// A child the API server refused.
#[derive(Clone, Debug, PartialEq)]
pub struct Rejection {
    /// The child's kind.
    pub kind: String,
    /// The child's name.
    pub name: String,
    /// The API server's status code.
    pub code: u16,
    /// The API server's reason (its `Status` message, shortened).
    pub message: String,
}

impl Rejection {
    /// How the owner reports it: `Ready=False` with reason `ChildRejected`.
    pub fn refusal(&self) -> crate::pod_policy::Refusal {
        crate::pod_policy::Refusal {
            reason: "ChildRejected",
            message: format!("the API server rejected {self}"),
        }
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.kind, self.name, self.message)
    }
}
