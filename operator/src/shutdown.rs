//! One shutdown signal every loop listens to (controllers, usage sync, Lease renewal, admin
//! server), so SIGTERM stops all of them together and the leader can release its Lease
//! instead of renewing it until the kubelet kills the pod.
//!
//! A cancellation token: every clone is told, and `cancelled_owned` is the `Send + Sync`,
//! borrow-free future kube-runtime's `Controller::graceful_shutdown_on` needs.

use tokio_util::sync::CancellationToken;

/// Resolves (in every clone) once shutdown is requested.
#[derive(Clone)]
pub struct Shutdown(CancellationToken);

impl std::fmt::Debug for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shutdown")
            .field("requested", &self.is_requested())
            .finish()
    }
}

/// Requests the shutdown of its [`Shutdown`]s.
#[derive(Debug)]
pub struct Trigger(CancellationToken);

impl Trigger {
    /// Requests shutdown.
    pub fn fire(self) {
        self.0.cancel();
    }
}

impl Shutdown {
    /// A shutdown and the trigger that requests it.
    pub fn new() -> (Trigger, Self) {
        let token = CancellationToken::new();
        (Trigger(token.clone()), Self(token))
    }

    /// A shutdown requested by SIGTERM (what the kubelet sends) or SIGINT (Ctrl+C).
    pub fn on_signal() -> Self {
        let (trigger, shutdown) = Self::new();
        tokio::spawn(async move {
            signal().await;
            tracing::info!("shutdown requested; stopping every loop");
            trigger.fire();
        });
        shutdown
    }

    /// Resolves once shutdown is requested; `Send + Sync` and borrowing nothing (`use<>`), so
    /// kube-runtime's controllers accept it as their graceful-shutdown trigger.
    pub fn wait(&self) -> impl Future<Output = ()> + Send + Sync + use<> {
        self.0.clone().cancelled_owned()
    }

    /// Whether shutdown was requested already.
    pub fn is_requested(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// Waits for SIGTERM or SIGINT. A handler that cannot be installed never fires (rather than
/// shutting down at once); the other still does, and the kubelet's SIGKILL always does.
async fn signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = terminate => {}
        () = interrupt => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_clone_resolves_once_fired() {
        let (trigger, shutdown) = Shutdown::new();
        let other = shutdown.clone();
        assert!(!other.is_requested());
        let waiting = tokio::spawn(other.wait());
        trigger.fire();
        shutdown.wait().await;
        assert!(shutdown.is_requested());
        assert!(waiting.await.is_ok());
    }
}
