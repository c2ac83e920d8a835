//! llm-gateway: an OpenAI-compatible LLM gateway.
//!
//! Request path: authenticate the API key → read the body up to the limit → parse only what
//! routing needs (model, stream) → resolve the route in the current immutable snapshot → check
//! the key may use it → pick a target → forward (OpenAI-compatible: pass-through with at most
//! the model rewritten; fake: generated) → relay JSON or SSE back unchanged while accounting
//! tokens → metrics and one access-log line when the body ends.
//!
//! Config path: a directory of manifests → `crds::compile` → `Snapshot` → atomic swap. See
//! `ARCHITECTURE.md` for the map.

pub mod args;
pub(crate) mod auth_throttle;
pub(crate) mod breaker;
pub mod config;
pub(crate) mod egress;
pub(crate) mod embeddings;
pub(crate) mod error;
pub mod fuzzing;
pub mod http;
pub mod jwt;
pub(crate) mod kube_events;
pub mod limits;
pub(crate) mod listener;
pub mod metrics;
pub(crate) mod notices;
pub(crate) mod providers;
pub(crate) mod proxy;
pub mod request;
pub(crate) mod sanitize;
pub(crate) mod serve;
pub mod server;
pub(crate) mod sse;
pub mod state;
pub(crate) mod system;
pub mod targets;
pub mod telemetry;
pub mod translate;
pub(crate) mod usage;

pub use http::router;
