//! The llm-gateway operator: kube-runtime controllers that turn `ApiKey` and `LlmProvider`
//! resources into what the gateways need (generated key Secrets, key hashes and readiness in
//! status), with its own `/health`, `/ready` and `/metrics`.
//!
//! Each reconcile follows one pipeline: read what the object references → decide (pure
//! functions in each controller's `build` part) → write children (only when they differ) →
//! write status (only when it differs, so an unchanged object costs reads, never writes).

pub mod admin;
pub mod apply;
pub mod backoff;
pub mod build;
pub mod caches;
pub mod conditions;
pub mod context;
pub mod controllers;
pub mod error;
pub mod leader;
pub mod logging;
pub mod metrics;
pub mod pepper;
pub mod pod_policy;
pub mod shutdown;
pub mod startup;
pub mod status;
pub mod usage_sync;

pub use context::{Context, Settings};
pub use error::Error;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "llm-gateway-operator";

/// Label on every child the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "llm-gateway-operator");
