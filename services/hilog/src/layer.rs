//! The `tracing` layer that sends a process's events to hilogd: the way
//! every Accord process logs (OpenHarmony's `HiLog::Info(label, …)`).
//!
//! Each event becomes one record: the process's tag and domain, the
//! event's level (TRACE and DEBUG → DEBUG), its message followed by its
//! other fields as `key=value`, the thread id and the time. When hilogd
//! cannot be reached the line goes to stderr instead (init relays it), so
//! nothing is lost at boot or while hilogd restarts; when hilogd is behind
//! the record is dropped and counted ([`crate::writer`]).
//!
//! Privacy, as OpenHarmony's `%{private}`: a field whose name starts with
//! `private.` (`info!(private.ssid = %ssid, "joined")`) is written as
//! `ssid=<private>` while the privacy switch is on, and with its value
//! when it is off (`hilog -p off`, root only). The switch is the
//! parameter [`PRIVACY_PARAM`], read from init's shared table when an
//! event has such a field; unset or unreadable, it is on. The value never
//! leaves the process while it is on.

use std::fmt::Write as _;
use std::io::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

use crate::writer::{Record, SendError, Writer};
use crate::{Level, LogType};

/// Sends events to hilogd under one tag and domain.
#[derive(Debug)]
pub struct HilogLayer {
    writer: &'static Writer,
    tag: String,
    domain: u32,
    ty: LogType,
    /// The privacy switch as set by [`HilogLayer::with_privacy`] (tests),
    /// instead of [`privacy_on`].
    privacy: Option<bool>,
}

impl HilogLayer {
    /// A layer for this process, writing through [`Writer::global`]; the
    /// type is `app` for uids ≥ 10000 and `core` otherwise.
    pub fn new(tag: &str, domain: u32) -> HilogLayer {
        HilogLayer::with_writer(Writer::global(), tag, domain)
    }

    /// A layer writing through `writer`.
    pub fn with_writer(writer: &'static Writer, tag: &str, domain: u32) -> HilogLayer {
        // SAFETY: getuid cannot fail.
        let uid = unsafe { libc::getuid() };
        let ty = if uid >= 10000 { LogType::App } else { LogType::Core };
        HilogLayer { writer, tag: crate::truncate_utf8(tag, crate::MAX_TAG).to_owned(), domain, ty, privacy: None }
    }

    /// The same layer with the privacy switch fixed to `on` instead of
    /// read from [`PRIVACY_PARAM`].
    pub fn with_privacy(self, on: bool) -> HilogLayer {
        HilogLayer { privacy: Some(on), ..self }
    }
}

/// The hilog level of a tracing level.
pub fn level_of(l: &tracing::Level) -> Level {
    match *l {
        tracing::Level::ERROR => Level::Error,
        tracing::Level::WARN => Level::Warn,
        tracing::Level::INFO => Level::Info,
        _ => Level::Debug,
    }
}

/// The parameter holding the privacy switch (OpenHarmony's name):
/// `false` shows private fields' values, anything else (or unset) hides
/// them.
pub const PRIVACY_PARAM: &str = "hilog.private.on";
/// The prefix of a private field's name.
pub const PRIVATE_PREFIX: &str = "private.";
/// What a private field's value is written as while privacy is on.
pub const PRIVATE_VALUE: &str = "<private>";

/// Whether privacy is on now: [`PRIVACY_PARAM`] from init's shared table
/// (no system call); on when it is not there.
pub fn privacy_on() -> bool {
    accord_param::client::published(PRIVACY_PARAM).is_none_or(|v| !matches!(v.as_str(), "false" | "0" | "off"))
}

/// An event's text: its message, then `name=value` for its other fields;
/// private ones per [`privacy_on`], asked once per event and only when
/// one is there.
#[derive(Default)]
struct Message {
    text: String,
    privacy: Option<bool>,
    /// Tests set the switch instead of reading it.
    forced: Option<bool>,
}

impl Message {
    fn field(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name().strip_prefix(PRIVATE_PREFIX) {
            Some(name) => {
                let forced = self.forced;
                if *self.privacy.get_or_insert_with(|| forced.unwrap_or_else(privacy_on)) {
                    let _ = write!(self.text, " {name}={PRIVATE_VALUE}");
                } else {
                    let _ = write!(self.text, " {name}={value:?}");
                }
            }
            None => {
                let _ = write!(self.text, " {}={value:?}", field.name());
            }
        }
    }
}

impl Visit for Message {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.insert_str(0, value);
        } else {
            self.field(field, &value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let m = format!("{value:?}");
            self.text.insert_str(0, &m);
        } else {
            self.field(field, value);
        }
    }
}

impl<S: Subscriber> Layer<S> for HilogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut m = Message { forced: self.privacy, ..Message::default() };
        event.record(&mut m);
        let level = level_of(event.metadata().level());
        let r = Record { ty: self.ty, level, domain: self.domain, tag: &self.tag, msg: m.text.as_bytes(), for_pid: 0 };
        if let Err(SendError::Unreachable) = self.writer.send(&r) {
            let line = format!("{} {}\n", level.letter(), m.text);
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

/// The level `ACCORD_LOG_LEVEL` asks for (trace, debug, info, warn,
/// error; INFO when unset or unknown): every Accord process's log level.
pub fn level_from_env() -> tracing::Level {
    match std::env::var("ACCORD_LOG_LEVEL").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    }
}

/// Installs the process's `tracing` subscriber: events at or above
/// `ACCORD_LOG_LEVEL` (trace, debug, info (default), warn, error) go to
/// hilogd under `tag` and `domain`. A second call does nothing.
pub fn init_tracing(tag: &str, domain: u32) {
    use tracing_subscriber::layer::SubscriberExt;
    let level = level_from_env();
    let sub = tracing_subscriber::registry().with(tracing_subscriber::filter::LevelFilter::from_level(level)).with(HilogLayer::new(tag, domain));
    let _ = tracing::subscriber::set_global_default(sub);
}
