//! Logging setup. Logs carry key ids and owners, never keys, credentials or prompt bodies.
//!
//! Events are formatted on the thread that logs them and written to stderr by a background
//! thread through a buffer that is flushed whenever that thread catches up (one write per
//! burst). Writing on a runtime thread would stall every request on that thread while stderr
//! is slow or blocked (a log collector that stopped reading a full pipe); under a backlog of
//! more lines than the channel holds, lines are dropped rather than stalling requests.
//! `LOG_LEVEL=info,access=off` keeps every log but the per-request access line, which JSON
//! logs write by hand (`access_log`).

use std::io::{BufWriter, Write};
use std::os::fd::AsFd;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::args::LogFormat;

/// Installs the global subscriber; `level` is a level or a tracing directive list. Keep the
/// returned guard until exit: dropping it flushes what is still buffered.
pub fn init(level: &str, format: LogFormat) -> Option<WorkerGuard> {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .thread_name("llm-gateway-log")
        .finish(stderr_buffer());
    // Colours only on a terminal: a log collector stores escape codes verbatim.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(writer.clone());
    // A second init (tests) keeps the first subscriber.
    let installed = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
    installed.ok()?;
    // Only beside the subscriber it shapes its lines like (a failed init drops the guard,
    // and with it the writer's thread).
    if format == LogFormat::Json {
        crate::access_log::install(writer);
    }
    Some(guard)
}

/// A buffered writer on stderr's file descriptor (std's `Stderr` is unbuffered by design).
fn stderr_buffer() -> Box<dyn Write + Send> {
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Box::new(BufWriter::with_capacity(64 * 1024, std::fs::File::from(fd))),
        Err(_) => Box::new(std::io::stderr()),
    }
}
