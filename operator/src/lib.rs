//! The llm-gateway operator: one kube-runtime controller per kind ([`controllers`]) turning the
//! llmgateway.io resources into what the gateways need, plus the usage sync
//! ([`usage_sync`]), with its own `/health`, `/ready` and `/metrics` ([`admin`]):
//!
//! - `ApiKey` → a generated key Secret (created once, never overwritten), `keyId`/`keyHash` in
//!   status, and rotation by annotation;
//! - `LlmProvider` → `Ready` saying whether its credential Secret holds the key and, with
//!   `spec.selfHosted`, the model server's Deployment, Service and HPA;
//! - `RoutePolicy` → `Ready` from compiling it with the namespace exactly as a gateway would;
//! - `LlmGateway` → the gateway's ServiceAccount, Role, RoleBinding, settings ConfigMap,
//!   credentials Secret, last-known-good ConfigMap, Deployment, Service,
//!   PodDisruptionBudget, and when asked an HPA, an Ingress and an HTTPRoute.
//!
//! Each reconcile follows one pipeline: read what the object references (from the watched
//! [`caches`]) → decide (pure functions in [`build`] and each controller) → write children
//! (only when they differ, [`apply`]) → write status (only when it differs, [`status`], so an
//! unchanged object costs reads, never writes). Only the replica holding the Lease
//! ([`leader`]) writes.

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
pub mod traces;
pub mod usage_redis;
pub mod usage_sync;

pub use context::{Context, Settings};
pub use error::Error;

/// Field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "llm-gateway-operator";

/// Label on every child the operator creates.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "llm-gateway-operator");
