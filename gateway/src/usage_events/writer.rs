//! The bounded queue and the thread that writes usage events. A thread rather than a task:
//! file writes block, and a slow disk must never hold a runtime worker.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use tracing_appender::rolling::{self, RollingFileAppender};

use super::{Rotation, Settings, UsageEvent};
use crate::metrics::ExportOutcomeLabels;

/// Batches are written once they reach this size, or whenever the queue is empty.
const BATCH_BYTES: usize = 64 * 1024;

enum Message {
    Event(Box<UsageEvent>),
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Where finished requests' records are sent.
#[derive(Debug)]
pub struct Sink {
    queue: SyncSender<Message>,
    counts: Family<ExportOutcomeLabels, Counter>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("usage event message")
    }
}

impl Sink {
    /// Starts the writer configured by `settings`; `None` when usage events are off.
    pub fn start(
        settings: &Settings,
        counts: Family<ExportOutcomeLabels, Counter>,
    ) -> anyhow::Result<Option<Self>> {
        let Some(path) = &settings.usage_events_path else {
            return Ok(None);
        };
        let output: Box<dyn Write + Send> = if path.as_os_str() == "-" {
            Box::new(std::io::stdout())
        } else {
            Box::new(appender(path, settings)?)
        };
        let (queue, received) = std::sync::mpsc::sync_channel(settings.usage_events_queue.max(1));
        let thread_counts = counts.clone();
        std::thread::Builder::new()
            .name("llm-gateway-usage".into())
            .spawn(move || write_all(&received, output, &thread_counts))?;
        Ok(Some(Self { queue, counts }))
    }

    /// Queues `event`; drops and counts it when the queue is full.
    pub fn send(&self, event: UsageEvent) {
        match self.queue.try_send(Message::Event(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.count("dropped", 1),
            Err(TrySendError::Disconnected(_)) => self.count("failed", 1),
        }
    }

    /// Waits until every record queued so far is written.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        let queue = self.queue.clone();
        // The queue may be full: wait for room off the runtime.
        let queued = tokio::task::spawn_blocking(move || queue.send(Message::Flush(done))).await;
        if matches!(queued, Ok(Ok(()))) {
            let _ = written.await;
        }
    }

    fn count(&self, outcome: &'static str, n: u64) {
        count(&self.counts, outcome, n);
    }
}

fn count(counts: &Family<ExportOutcomeLabels, Counter>, outcome: &'static str, n: u64) {
    counts
        .get_or_create(&ExportOutcomeLabels { outcome })
        .inc_by(n);
}

/// A file appender at `path`, rotated as `settings` say.
fn appender(path: &std::path::Path, settings: &Settings) -> anyhow::Result<RollingFileAppender> {
    let directory = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let prefix = path
        .file_stem()
        .and_then(|s| s.to_str())
        .ok_or_else(|| anyhow::anyhow!("USAGE_EVENTS_PATH names no file"))?;
    let mut builder = RollingFileAppender::builder()
        .rotation(match settings.usage_events_rotation {
            Rotation::Minutely => rolling::Rotation::MINUTELY,
            Rotation::Hourly => rolling::Rotation::HOURLY,
            Rotation::Daily => rolling::Rotation::DAILY,
            Rotation::Never => rolling::Rotation::NEVER,
        })
        .filename_prefix(prefix)
        .max_log_files(settings.usage_events_max_files.max(1));
    if let Some(extension) = path.extension().and_then(|s| s.to_str()) {
        builder = builder.filename_suffix(extension);
    }
    Ok(builder.build(directory)?)
}

/// The writer thread: serializes records and writes them in batches until every sender is
/// gone. A batch is written whole, so a rotation never splits a line.
fn write_all(
    received: &Receiver<Message>,
    mut output: Box<dyn Write + Send>,
    counts: &Family<ExportOutcomeLabels, Counter>,
) {
    let mut batch = Vec::with_capacity(BATCH_BYTES);
    let mut lines = 0;
    loop {
        let message = match received.try_recv() {
            Ok(message) => message,
            Err(TryRecvError::Empty) => {
                write_batch(&mut output, &mut batch, &mut lines, counts);
                match received.recv() {
                    Ok(message) => message,
                    Err(_) => return,
                }
            }
            Err(TryRecvError::Disconnected) => break,
        };
        match message {
            Message::Event(event) => {
                if serde_json::to_writer(&mut batch, &event).is_ok() {
                    batch.push(b'\n');
                    lines += 1;
                }
                if batch.len() >= BATCH_BYTES {
                    write_batch(&mut output, &mut batch, &mut lines, counts);
                }
            }
            Message::Flush(done) => {
                write_batch(&mut output, &mut batch, &mut lines, counts);
                let _ = done.send(());
            }
        }
    }
    write_batch(&mut output, &mut batch, &mut lines, counts);
}

fn write_batch(
    output: &mut Box<dyn Write + Send>,
    batch: &mut Vec<u8>,
    lines: &mut u64,
    counts: &Family<ExportOutcomeLabels, Counter>,
) {
    if *lines == 0 {
        return;
    }
    let written = output.write_all(batch).and_then(|()| output.flush());
    match written {
        Ok(()) => count(counts, "written", *lines),
        Err(error) => {
            tracing::warn!(%error, lines = *lines, "usage events could not be written");
            count(counts, "failed", *lines);
        }
    }
    batch.clear();
    *lines = 0;
}
