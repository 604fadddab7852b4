//! The boot trace: one span per job and per service start, written as
//! Chrome trace JSON (`/data/log/startup/bootup.trace`) that opens in
//! Perfetto or chrome://tracing.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

/// Microseconds since the machine booted (CLOCK_BOOTTIME), the time base of
/// `ohos.boot.time.*` and of the trace.
pub fn boottime_us() -> u64 {
    match nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME) {
        Ok(ts) => (ts.tv_sec() as u64) * 1_000_000 + (ts.tv_nsec() as u64) / 1_000,
        Err(_) => 0,
    }
}

#[derive(Debug, Serialize, Clone)]
struct Event {
    name: String,
    cat: &'static str,
    ph: &'static str,
    ts: u64,
    dur: u64,
    pid: u32,
    tid: u32,
}

#[derive(Debug, Default)]
pub struct BootTrace {
    events: Vec<Event>,
    pub enabled: bool,
}

impl BootTrace {
    pub fn new() -> BootTrace {
        BootTrace { events: Vec::new(), enabled: true }
    }

    /// Records a finished span; `cat` is "job" or "service".
    pub fn span(&mut self, cat: &'static str, name: &str, start_us: u64, end_us: u64) {
        if !self.enabled || self.events.len() >= 4096 {
            return;
        }
        let tid = if cat == "job" { 1 } else { 2 };
        self.events.push(Event { name: name.to_owned(), cat, ph: "X", ts: start_us, dur: end_us.saturating_sub(start_us), pid: 1, tid });
    }

    /// Writes the trace atomically (temp file + rename).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        let doc = serde_json::json!({
            "traceEvents": self.events,
            "displayTimeUnit": "ms",
            "metadata": {"producer": "accord init"},
        });
        serde_json::to_writer(&mut f, &doc)?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}
