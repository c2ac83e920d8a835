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
pub mod auth_throttle;
pub mod breaker;
pub mod config;
pub mod egress;
pub mod embeddings;
pub mod error;
pub mod fuzzing;
pub mod http;
pub mod jwt;
pub mod kube_events;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod notices;
pub mod providers;
pub mod proxy;
pub mod request;
pub mod sanitize;
pub mod serve;
pub mod server;
pub mod sse;
pub mod state;
pub mod system;
pub mod targets;
pub mod telemetry;
pub mod translate;
pub mod usage;

pub use http::router;
