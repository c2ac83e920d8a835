//! Logging setup. Logs carry key ids and owners, never keys, credentials or prompt bodies.

use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Installs the global subscriber; `level` is a level or a tracing directive list.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
