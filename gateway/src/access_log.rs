//! The per-request access line. tracing's JSON formatter collects each event's fields through
//! a visitor into a map and formats the time with allocations of its own; this is the one line
//! logged per request (about a tenth of a small request's CPU), so with JSON logs it is
//! written here instead: by hand, into a buffer kept per thread, in the shape of tracing's
//! JSON lines, and handed to the same non-blocking writer (lossy under a backlog, like every
//! other line). `LOG_LEVEL=...,access=off` still turns it off. Hand-written because no crate
//! writes a fixed set of fields as a JSON line without a map or a `Serialize` pass per field.

use std::cell::RefCell;
use std::io::Write;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

use tracing_appender::non_blocking::NonBlocking;

/// The JSON log writer, once [`install`]ed; without it (text logs, tests) the line goes
/// through tracing.
static WRITER: OnceLock<NonBlocking> = OnceLock::new();

thread_local! {
    /// This thread's line buffer and its handle on [`WRITER`], reused for every line.
    static LINE: RefCell<(Vec<u8>, Option<NonBlocking>)> = const { RefCell::new((Vec::new(), None)) };
}

/// Sends access lines to `writer`, formatted as tracing's JSON lines (`LOG_FORMAT=json`).
pub fn install(writer: NonBlocking) {
    // A second install (tests start several servers in one process) keeps the first.
    let _ = WRITER.set(writer);
}

/// What one finished request logs. Every field is metadata: never a key, body or credential.
pub struct AccessLine<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub elapsed: Duration,
    pub request_id: &'a str,
    pub route: &'a str,
    pub provider: &'a str,
    pub key_id: &'a str,
    pub owner: &'a str,
    pub error: &'a str,
}

impl AccessLine<'_> {
    /// Logs the line unless the `access` target is off.
    pub fn log(&self) {
        if !tracing::enabled!(target: "access", tracing::Level::INFO) {
            return;
        }
        let Some(writer) = WRITER.get() else {
            return self.log_through_tracing();
        };
        let written = LINE.try_with(|line| {
            let (buffer, local) = &mut *line.borrow_mut();
            buffer.clear();
            self.write_json(buffer, SystemTime::now());
            // Lossy: a full channel drops the line, as it drops any other.
            let _ = local
                .get_or_insert_with(|| writer.clone())
                .write_all(buffer);
        });
        // A request finishing while its thread exits (its buffer already gone).
        if written.is_err() {
            self.log_through_tracing();
        }
    }

    fn log_through_tracing(&self) {
        tracing::info!(
            target: "access",
            method = self.method,
            path = self.path,
            status = self.status,
            duration_ms = self.duration_ms(),
            request_id = self.request_id,
            route = self.route,
            provider = self.provider,
            key_id = self.key_id,
            owner = self.owner,
            error = self.error,
            "request finished"
        );
    }

    fn duration_ms(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1000.0
    }

    /// The line as tracing's JSON formatter (flattened events) writes it, newline included.
    fn write_json(&self, out: &mut Vec<u8>, now: SystemTime) {
        // Writes into a Vec cannot fail.
        let _ = write!(
            out,
            r#"{{"timestamp":"{}","level":"INFO","message":"request finished","method":"#,
            humantime::format_rfc3339_micros(now)
        );
        string(out, self.method);
        out.extend_from_slice(br#","path":"#);
        string(out, self.path);
        let _ = write!(out, r#","status":{},"duration_ms":"#, self.status);
        let _ = serde_json::to_writer(&mut *out, &self.duration_ms());
        for (name, value) in [
            (&br#","request_id":"#[..], self.request_id),
            (br#","route":"#, self.route),
            (br#","provider":"#, self.provider),
            (br#","key_id":"#, self.key_id),
            (br#","owner":"#, self.owner),
            (br#","error":"#, self.error),
        ] {
            out.extend_from_slice(name);
            string(out, value);
        }
        out.extend_from_slice(b",\"target\":\"access\"}\n");
    }
}

/// `value` as a JSON string, escaped.
fn string(out: &mut Vec<u8>, value: &str) {
    let _ = serde_json::to_writer(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_is_json_with_every_field_escaped() {
        let line = AccessLine {
            method: "POST",
            path: "/v1/chat/completions\"\n\u{1}",
            status: 429,
            elapsed: Duration::from_micros(1_500),
            request_id: "req-1",
            route: "gpt-4o",
            provider: "openai",
            key_id: "lgw_abc",
            owner: "team-a",
            error: "rate_limited",
        };
        let mut out = Vec::new();
        line.write_json(
            &mut out,
            SystemTime::UNIX_EPOCH + Duration::from_micros(1_000_001),
        );
        assert_eq!(out.last(), Some(&b'\n'));
        let parsed: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({
                "timestamp": "1970-01-01T00:00:01.000001Z",
                "level": "INFO",
                "message": "request finished",
                "method": "POST",
                "path": "/v1/chat/completions\"\n\u{1}",
                "status": 429,
                "duration_ms": 1.5,
                "request_id": "req-1",
                "route": "gpt-4o",
                "provider": "openai",
                "key_id": "lgw_abc",
                "owner": "team-a",
                "error": "rate_limited",
                "target": "access",
            })
        );
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1, "one line");
    }
}
