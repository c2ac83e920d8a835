//! Usage events: one JSON record per finished model request (who, what, how it ended, tokens
//! by kind, spend, latency), for audit and chargeback without a database on the request path.
//!
//! The record is completed when the request's [`Meter`](crate::limits::Meter) is dropped:
//! after the response body is gone and after the limiter settled the same usage, so an event
//! holds exactly what Redis counted. Records go through a bounded queue to a writer thread;
//! a full queue drops the record and counts it (`llm_usage_events_total{outcome="dropped"}`)
//! rather than slowing a request. The schema is documented in `docs/usage-events.md`.

mod writer;

use std::path::PathBuf;

use serde::Serialize;

use crate::limits::meter::{Summary, UsageSource};
pub use writer::Sink;

/// The schema's version: bumped when a field changes meaning or is removed.
pub const SCHEMA_VERSION: u32 = 1;

/// `USAGE_EVENTS_*`: where usage events go (off unless a path is set).
#[derive(Clone, Debug, clap::Args)]
pub struct Settings {
    /// `USAGE_EVENTS_PATH`: append one JSON line per finished request to this file, rotated by
    /// `USAGE_EVENTS_ROTATION` (the period is put before the extension: `usage.2026-11-30-21.jsonl`);
    /// `-` writes them to standard output (the container log stream). Off when unset.
    #[arg(long, env = "USAGE_EVENTS_PATH")]
    pub usage_events_path: Option<PathBuf>,
    /// `USAGE_EVENTS_ROTATION`: a new file every `minutely`, `hourly`, `daily` period, or `never`.
    #[arg(
        long,
        env = "USAGE_EVENTS_ROTATION",
        value_enum,
        default_value = "hourly"
    )]
    pub usage_events_rotation: Rotation,
    /// `USAGE_EVENTS_MAX_FILES`: rotated files kept (the oldest are deleted).
    #[arg(long, env = "USAGE_EVENTS_MAX_FILES", default_value_t = 48)]
    pub usage_events_max_files: usize,
    /// `USAGE_EVENTS_QUEUE`: records waiting to be written before new ones are dropped.
    #[arg(long, env = "USAGE_EVENTS_QUEUE", default_value_t = 65_536)]
    pub usage_events_queue: usize,
}

/// How often the events file rotates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Rotation {
    /// Every minute.
    Minutely,
    /// Every hour.
    Hourly,
    /// Every day (UTC).
    Daily,
    /// One file, never rotated.
    Never,
}

/// What the HTTP layer knows of a finished request; the meter adds the usage.
#[derive(Debug, Default)]
pub struct Draft {
    /// When the request arrived.
    pub start: Option<jiff::Timestamp>,
    /// When its response (or stream) ended.
    pub end: Option<jiff::Timestamp>,
    /// The client's `x-request-id` (or the one the gateway set).
    pub request_id: Option<String>,
    /// The W3C trace id (32 hex digits), from the server span or the client's `traceparent`.
    pub trace_id: Option<String>,
    /// The caller's public key id (`jwt:<subject>` for token callers).
    pub key_id: Option<String>,
    /// The key's owner or the token's team.
    pub owner: Option<String>,
    /// The ApiKey's namespace.
    pub namespace: Option<String>,
    /// `chat`, `messages`, `responses`, `completions` or `embeddings`.
    pub protocol: &'static str,
    /// The route model, once routed.
    pub route: Option<String>,
    /// The provider last tried.
    pub provider: Option<String>,
    /// The HTTP status answered.
    pub status: u16,
    /// The error type answered, if any.
    pub error: Option<&'static str>,
    /// Milliseconds from arrival to the end of the response.
    pub duration_ms: f64,
}

impl Draft {
    /// The finished record, with the usage the meter settled.
    pub fn complete(self, summary: Summary) -> UsageEvent {
        let billed = summary.billed;
        let (served_provider, upstream_model) = match summary.served_by {
            Some((labels, upstream_model)) => {
                (Some(labels.provider.to_string()), Some(upstream_model))
            }
            None => (None, None),
        };
        UsageEvent {
            schema_version: SCHEMA_VERSION,
            time: self.end,
            start_time: self.start,
            request_id: self.request_id,
            trace_id: self.trace_id,
            key_id: self.key_id,
            owner: self.owner,
            namespace: self.namespace,
            protocol: self.protocol,
            route: self.route,
            provider: served_provider.or(self.provider),
            upstream_model,
            status: self.status,
            error: self.error,
            settled: summary.settled,
            usage_source: summary.source,
            input_tokens: billed.input_tokens,
            output_tokens: billed.output_tokens,
            cache_read_tokens: billed.cache_read_tokens,
            cache_write_tokens: billed.cache_write_tokens,
            reasoning_tokens: billed.reasoning_tokens,
            spend_nanos: billed.spend_nanos,
            spend_usd: billed.spend_nanos as f64 / 1e9,
            duration_ms: self.duration_ms,
            time_to_first_token_ms: summary.first_token.map(|seconds| seconds * 1000.0),
        }
    }
}

/// One finished request, as written (field meanings: `docs/usage-events.md`).
#[derive(Debug, Serialize)]
pub struct UsageEvent {
    schema_version: u32,
    #[serde(serialize_with = "rfc3339")]
    time: Option<jiff::Timestamp>,
    #[serde(serialize_with = "rfc3339")]
    start_time: Option<jiff::Timestamp>,
    request_id: Option<String>,
    trace_id: Option<String>,
    key_id: Option<String>,
    owner: Option<String>,
    namespace: Option<String>,
    protocol: &'static str,
    route: Option<String>,
    provider: Option<String>,
    upstream_model: Option<String>,
    status: u16,
    error: Option<&'static str>,
    settled: bool,
    usage_source: UsageSource,
    input_tokens: u64,
    output_tokens: u64,
    cache_read_tokens: u64,
    cache_write_tokens: u64,
    reasoning_tokens: u64,
    spend_nanos: i64,
    spend_usd: f64,
    duration_ms: f64,
    time_to_first_token_ms: Option<f64>,
}

fn rfc3339<S: serde::Serializer>(
    time: &Option<jiff::Timestamp>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => serializer.collect_str(time),
        None => serializer.serialize_none(),
    }
}

/// The trace id of a W3C `traceparent` header (`00-<32 hex>-<16 hex>-<2 hex>`), unless it is
/// malformed or all zeros.
pub fn trace_id_of(traceparent: &str) -> Option<String> {
    let mut parts = traceparent.split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    let valid = id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        && id.bytes().any(|b| b != b'0');
    valid.then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_only_from_well_formed_traceparents() {
        let id = "4bf92f3577b34da6a3ce929d0e0e4736";
        assert_eq!(
            trace_id_of(&format!("00-{id}-00f067aa0ba902b7-01")).as_deref(),
            Some(id)
        );
        assert_eq!(
            trace_id_of("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(
            trace_id_of("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"),
            None
        );
        assert_eq!(trace_id_of("garbage"), None);
    }

    #[test]
    fn a_record_carries_no_secret_field_and_the_schema_version() {
        let event = Draft {
            status: 200,
            protocol: "chat",
            ..Draft::default()
        }
        .complete(Summary::default());
        let text = serde_json::to_string(&event).unwrap_or_default();
        assert!(text.starts_with(r#"{"schema_version":1,"#), "{text}");
        for absent in ["key\":", "prompt", "messages", "authorization"] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
    }
}
