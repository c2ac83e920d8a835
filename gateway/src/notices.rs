//! Things worth telling the cluster about (circuit-breaker transitions, rejected
//! configuration), sent from the request and config paths without blocking them. In
//! Kubernetes mode `kube_events` drains them into Events; otherwise nobody listens and
//! sending is a no-op.

use std::sync::OnceLock;

use tokio::sync::mpsc;

/// A notable change, about one of our resources.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    /// A target's circuit breaker changed state.
    Breaker {
        /// `namespace/name` of the LlmProvider.
        provider: String,
        /// Upstream model.
        model: String,
        /// State entered: `open`, `half_open` or `closed`.
        to: &'static str,
    },
    /// A configuration was rejected because of this object.
    Rejected {
        /// Kind of the object, e.g. `RoutePolicy`.
        kind: String,
        /// `namespace/name` of the object.
        object: String,
        /// Field and reason.
        message: String,
    },
}

/// Where notices go; empty until a listener is attached.
#[derive(Debug, Default)]
pub struct NoticeSink {
    sender: OnceLock<mpsc::Sender<Notice>>,
}

impl NoticeSink {
    /// Attaches the listener (once); returns its receiving end.
    pub fn attach(&self, capacity: usize) -> Option<mpsc::Receiver<Notice>> {
        let (tx, rx) = mpsc::channel(capacity);
        self.sender.set(tx).ok().map(|()| rx)
    }

    /// Sends without waiting; a full queue drops the notice (the publisher rate-limits anyway).
    pub fn send(&self, notice: Notice) {
        if let Some(sender) = self.sender.get() {
            let _ = sender.try_send(notice);
        }
    }
}
