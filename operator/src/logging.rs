//! Logging setup: `LOG_LEVEL` directives, text or JSON lines (`LOG_FORMAT`), colours only on a
//! terminal (a log collector stores escape codes verbatim).

use std::io::IsTerminal;

use tracing_subscriber::Layer;

/// How log lines are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, fields flattened, for log pipelines.
    Json,
}

/// Installs the global subscriber writing to stderr and, when an OTLP endpoint is set, the
/// trace exporter (returned, to flush at exit). Call inside the runtime.
pub fn init(format: LogFormat) -> Option<crate::traces::Traces> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("LOG_LEVEL")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    let lines = match format {
        LogFormat::Json => lines.json().flatten_event(true).boxed(),
        LogFormat::Text => lines.boxed(),
    };
    let (traces, exporter, failed) = match crate::traces::layer_from_env() {
        Ok(Some((layer, exporter))) => (Some(layer), Some(exporter), None),
        Ok(None) => (None, None, None),
        Err(error) => (None, None, Some(error)),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(traces)
        .init();
    if let Some(error) = failed {
        // A tracing setup that cannot work leaves traces off rather than the operator down.
        tracing::warn!(%error, "traces are off");
    }
    exporter
}
