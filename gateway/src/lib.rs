//! llm-gateway: an OpenAI-compatible LLM gateway.
//!
//! Request path, each stage once: authenticate the caller → read the body up to the limit →
//! parse only what routing needs (`request`: model, stream) → resolve the route in the current
//! immutable snapshot → check the key may use it → admit it (`limits`) → pick targets
//! (`proxy`) → for each attempt, `pipeline`: encode for the target (pass-through with at most
//! the model rewritten, or through the hub, OpenAI chat) → exchange with the upstream → decode
//! the reply and encode it for the client, streamed through one relay while accounting
//! tokens → metrics, one access-log line and one usage event when the body ends.
//!
//! Config path: a directory of manifests → `crds::compile` → `Snapshot` → atomic swap. See
//! `ARCHITECTURE.md` for the map.

pub(crate) mod access_log;
pub(crate) mod accounting;
pub(crate) mod affinity;
pub mod args;
pub(crate) mod auth_throttle;
pub(crate) mod breaker;
pub(crate) mod chargeback;
pub mod config;
pub(crate) mod egress;
pub(crate) mod embeddings;
pub(crate) mod error;
pub mod fuzzing;
pub(crate) mod genai_metrics;
pub mod http;
pub mod jwt;
pub(crate) mod kube_events;
pub mod limits;
pub(crate) mod listener;
pub(crate) mod metric_handle;
pub mod metrics;
pub(crate) mod notices;
pub(crate) mod pipeline;
pub(crate) mod providers;
pub(crate) mod proxy;
pub(crate) mod redis_conn;
pub mod request;
pub(crate) mod response_store;
pub(crate) mod sanitize;
pub(crate) mod serve;
pub mod server;
pub(crate) mod service_accounts;
pub(crate) mod sse;
pub mod state;
pub(crate) mod system;
pub(crate) mod target_metrics;
pub mod targets;
pub mod telemetry;
pub mod token_usage;
pub(crate) mod traces;
pub mod translate;
pub mod upstream_http;
pub mod usage_events;

pub use http::router;
