//! Process and host figures for `/health/system`, read from Linux `/proc` (no extra crate:
//! a handful of text fields is all we need). On other systems the fields are `null`.

use serde::Serialize;

/// A point-in-time view of the process and host.
#[derive(Debug, Serialize)]
pub struct SystemInfo {
    /// Seconds since the process started.
    pub uptime_seconds: f64,
    /// CPU seconds used by the process (user + system).
    pub process_cpu_seconds: Option<f64>,
    /// Resident memory of the process in bytes.
    pub process_resident_memory_bytes: Option<u64>,
    /// Open file descriptors of the process.
    pub process_open_fds: Option<usize>,
    /// Threads of the process.
    pub process_threads: Option<u64>,
    /// CPUs available to the process.
    pub cpus: usize,
    /// 1-minute load average of the host.
    pub load_average_1m: Option<f64>,
    /// Host memory in bytes.
    pub memory_total_bytes: Option<u64>,
    /// Host memory available for new work in bytes.
    pub memory_available_bytes: Option<u64>,
}

/// Clock ticks per second of `/proc/self/stat` times (USER_HZ, 100 on every Linux target we
/// ship for).
const CLOCK_TICKS: f64 = 100.0;

/// Reads the current figures.
pub fn read(uptime_seconds: f64) -> SystemInfo {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    SystemInfo {
        uptime_seconds,
        process_cpu_seconds: process_cpu_seconds(),
        process_resident_memory_bytes: kib_field(&status, "VmRSS:"),
        process_open_fds: std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count),
        process_threads: field(&status, "Threads:"),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average_1m: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok()),
        memory_total_bytes: kib_field(&meminfo, "MemTotal:"),
        memory_available_bytes: kib_field(&meminfo, "MemAvailable:"),
    }
}

fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / CLOCK_TICKS)
}

fn field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    field(text, name).map(|kib| kib * 1024)
}
