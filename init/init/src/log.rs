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
//! The sink is hilogd once its input socket accepts a connection (init
//! makes that socket when it starts hilogd): services' output lines become
//! `core` records tagged with the service's name and pid, init's own
//! messages `init` records, and warnings and errors are also copied to the
//! kernel log for the console (with facility `daemon`, which hilogd skips
//! when it reads the kernel log). Until then, when hilogd is behind (its
//! socket full) or gone, lines go to `/dev/kmsg` (visible with `dmesg`),
//! where hilogd finds them when it (re)starts: nothing is lost at boot or
//! across a hilogd restart. Setting
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
    let level = accord_hilog::layer::level_from_env();
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

/// hilogd's input socket, tried at most once a second until it answers.
fn hilog() -> Option<&'static accord_hilog::Writer> {
    static W: OnceLock<accord_hilog::Writer> = OnceLock::new();
    match sink() {
        Sink::Kmsg(_) => Some(W.get_or_init(|| accord_hilog::Writer::new(accord_hilog::INPUT_SOCKET).keeping_refused())),
        Sink::Stderr => None,
    }
}

/// Hands a record to hilogd; false when it did not take it.
fn to_hilog(ty: accord_hilog::LogType, level: accord_hilog::Level, tag: &str, msg: &[u8], pid: i32) -> bool {
    let Some(w) = hilog() else { return false };
    let r = accord_hilog::writer::Record { ty, level, domain: 0, tag, msg, for_pid: pid.max(0) as u32 };
    w.send(&r).is_ok()
}

/// Most service processes with a connection of their own at once; past it
/// they are all closed (they reconnect on their next line).
const MAX_SERVICE_LINKS: usize = 256;

/// One connection to hilogd per service process, so each has its own queue
/// there: a service that floods fills only its own (its excess is dropped
/// and counted, and hilogd says so in its stream) and every other
/// service's lines still get through.
fn service_links() -> &'static std::sync::Mutex<std::collections::HashMap<i32, accord_hilog::Writer>> {
    static L: OnceLock<std::sync::Mutex<std::collections::HashMap<i32, accord_hilog::Writer>>> = OnceLock::new();
    L.get_or_init(Default::default)
}

/// Writes one line of a service's output, attributed to it.
pub fn service_line(service: &str, pid: i32, line: &[u8]) {
    if hilog().is_some() {
        if let Ok(mut links) = service_links().lock() {
            if links.len() >= MAX_SERVICE_LINKS && !links.contains_key(&pid) {
                links.clear();
            }
            let w = links.entry(pid).or_insert_with(|| accord_hilog::Writer::new(accord_hilog::INPUT_SOCKET));
            let r = accord_hilog::writer::Record {
                ty: accord_hilog::LogType::Core,
                level: accord_hilog::Level::Info,
                domain: 0,
                tag: service,
                msg: line,
                for_pid: pid.max(0) as u32,
            };
            match w.send(&r) {
                // Full: dropped, counted, and announced with its next line.
                Ok(()) | Err(accord_hilog::writer::SendError::Full) => return,
                Err(accord_hilog::writer::SendError::Unreachable) => {}
            }
        }
    }
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

/// Closes the connection of a service process that exited, after its last
/// lines; lines it could not send that no later line reported are said.
pub fn service_gone(service: &str, pid: i32) {
    let Some(w) = service_links().lock().ok().and_then(|mut l| l.remove(&pid)) else { return };
    let n = w.dropped();
    if n > 0 {
        let msg = format!("init: {n} more lines of this process were not sent: hilogd was behind");
        let r = accord_hilog::writer::Record {
            ty: accord_hilog::LogType::Core,
            level: accord_hilog::Level::Warn,
            domain: 0,
            tag: service,
            msg: msg.as_bytes(),
            for_pid: pid.max(0) as u32,
        };
        if w.send(&r).is_err() {
            let mut buf = Vec::new();
            let _ = writeln!(buf, "<4>{service}[{pid}]: {msg}");
            emit(&buf);
        }
    }
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
        let level = match self.prio {
            0..=3 => accord_hilog::Level::Error,
            4 => accord_hilog::Level::Warn,
            5 | 6 => accord_hilog::Level::Info,
            _ => accord_hilog::Level::Debug,
        };
        let text = self.buf.strip_suffix(b"\n").unwrap_or(&self.buf);
        let mut facility = 0;
        if to_hilog(accord_hilog::LogType::Init, level, "init", text, 1) {
            if self.prio > 4 {
                return;
            }
            // Warnings and errors also reach the console, as a copy
            // hilogd knows to skip (facility daemon).
            facility = 3 << 3;
        }
        if matches!(sink(), Sink::Kmsg(_)) {
            let _ = write!(out, "<{}>", facility | self.prio);
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
