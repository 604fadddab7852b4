//! Where init's own messages and its services' output go.
//!
//! Level policy (written, as the project's style asks):
//! - `error!`: a broken promise (a service could not be started, a shutdown
//!   step failed); init recovers and keeps serving.
//! - `warn!`: something outside is wrong (bad cfg field, a client sent
//!   garbage, a module is missing) and we coped.
//! - `info!`: lifecycle a person wants in the boot log: jobs, service
//!   start/exit, mounts, shutdown.
//! - `debug!`/`trace!`: for developers; off unless `ACCORD_LOG_LEVEL` says so.
//!
//! The sink is `/dev/kmsg` (the kernel log, visible with `dmesg` and on the
//! console for warnings and above) until a log daemon exists. Setting
//! `ACCORD_LOG=stderr` in init's environment (the kernel command line can)
//! sends everything to init's stderr instead; the host integration tests use
//! that.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::sync::OnceLock;

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// The process-wide log sink.
#[derive(Debug)]
pub enum Sink {
    Kmsg(File),
    Stderr,
}

static SINK: OnceLock<Sink> = OnceLock::new();

fn sink() -> &'static Sink {
    SINK.get_or_init(|| Sink::Stderr)
}

/// Chooses the sink from the environment and installs the tracing
/// subscriber. Call once, after /dev is mounted.
pub fn init() {
    let want_stderr = std::env::var("ACCORD_LOG").map(|v| v == "stderr").unwrap_or(false);
    let chosen = if want_stderr {
        Sink::Stderr
    } else {
        match OpenOptions::new().write(true).open("/dev/kmsg") {
            Ok(f) => {
                // The kernel rate-limits userspace writes to /dev/kmsg (10
                // per 5 s); init and its services log there: lift it.
                let _ = std::fs::write("/proc/sys/kernel/printk_devkmsg", "on\n");
                Sink::Kmsg(f)
            }
            Err(_) => Sink::Stderr,
        }
    };
    let _ = SINK.set(chosen);
    let level = match std::env::var("ACCORD_LOG_LEVEL").as_deref() {
        Ok("trace") => Level::TRACE,
        Ok("debug") => Level::DEBUG,
        Ok("warn") => Level::WARN,
        Ok("error") => Level::ERROR,
        _ => Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .without_time()
        .with_target(false)
        .with_level(false)
        .with_ansi(false)
        .with_writer(LineWriterMaker)
        .try_init();
}

/// Longest partial line held back for a service (bytes): a longer one is
/// logged as it stands.
pub const MAX_PENDING_LINE: usize = 4096;

/// Adds `data`, read from a service's or command's output, to `pending` and
/// logs every complete line of it, attributed to `service`; a partial line
/// longer than [`MAX_PENDING_LINE`] is logged as it stands. The one place
/// output is split into lines.
pub fn service_output(service: &str, pid: i32, pending: &mut Vec<u8>, data: &[u8]) {
    pending.extend_from_slice(data);
    let mut start = 0;
    while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
        service_line(service, pid, &pending[start..start + pos]);
        start += pos + 1;
    }
    pending.drain(..start);
    if pending.len() > MAX_PENDING_LINE {
        service_line(service, pid, pending);
        pending.clear();
    }
}

/// Writes one line of a service's output, attributed to it.
pub fn service_line(service: &str, pid: i32, line: &[u8]) {
    let mut buf = Vec::with_capacity(line.len() + service.len() + 16);
    match sink() {
        Sink::Kmsg(_) => buf.extend_from_slice(b"<6>"),
        Sink::Stderr => {}
    }
    let _ = write!(buf, "{service}[{pid}]: ");
    // kmsg takes at most ~1 KiB per record; keep well inside it.
    let room = 900usize.saturating_sub(buf.len());
    buf.extend_from_slice(&line[..line.len().min(room)]);
    buf.push(b'\n');
    emit(&buf);
}

fn emit(buf: &[u8]) {
    match sink() {
        Sink::Kmsg(f) => {
            // One write() is one kmsg record. Errors cannot be reported
            // anywhere better than here, so they are dropped.
            let _ = nix::unistd::write(f, buf);
        }
        Sink::Stderr => {
            let _ = nix::unistd::write(io::stderr(), buf);
        }
    }
}

struct LineWriterMaker;

/// Collects one formatted event and emits it as one record on drop.
pub struct LineWriter {
    prio: u8,
    buf: Vec<u8>,
}

impl Write for LineWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let mut out = Vec::with_capacity(self.buf.len() + 12);
        if matches!(sink(), Sink::Kmsg(_)) {
            let _ = write!(out, "<{}>", self.prio);
        }
        out.extend_from_slice(b"init: ");
        out.extend_from_slice(&self.buf);
        if out.last() != Some(&b'\n') {
            out.push(b'\n');
        }
        emit(&out);
    }
}

impl<'a> MakeWriter<'a> for LineWriterMaker {
    type Writer = LineWriter;
    fn make_writer(&'a self) -> LineWriter {
        LineWriter { prio: 6, buf: Vec::new() }
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter {
        let prio = match *meta.level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        LineWriter { prio, buf: Vec::new() }
    }
}
