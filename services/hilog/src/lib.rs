//! hilog: Accord's log service, after OpenHarmony's `hiviewdfx_hilog`.
//! This crate owns:
//!
//! - the wire between writers and the daemon ([`wire`]): one
//!   `SOCK_SEQPACKET` packet per record on `/dev/unix/socket/hilogInput`
//!   (a socket init makes), identity from the kernel (`SO_PEERCRED`);
//! - the writer every Accord process logs through ([`writer`]), never
//!   blocking: a full socket drops the line and counts it, and the count
//!   rides on the next record; and the `tracing` layer over it ([`layer`],
//!   [`init_tracing`]);
//! - `hilogd` ([`daemon`]): per-type ring buffers ([`ring`]), per-process
//!   rate limits whose drops are announced in the stream, the kernel's
//!   `/dev/kmsg`, the control socket `hilogControl` that readers query and
//!   follow ([`control`]);
//! - the `hilog` command ([`cli`]) with OpenHarmony's options.
//!
//! Names follow OpenHarmony: log types app/init/core/kmsg, levels
//! DEBUG 3 … FATAL 7, a 32-bit domain and a tag per record, messages of at
//! most [`MAX_MSG`] bytes and tags of at most [`MAX_TAG`].

pub mod cli;
pub mod control;
pub mod daemon;
pub mod layer;
pub mod persist;
pub mod ring;
pub mod wire;
pub mod writer;

pub use layer::{init_tracing, HilogLayer};
pub use writer::Writer;

use serde::{Deserialize, Serialize};

/// Where writers connect (made by init from hilogd's cfg, mode 0666).
pub const INPUT_SOCKET: &str = "/dev/unix/socket/hilogInput";
/// Where readers (the `hilog` command) connect.
pub const CONTROL_SOCKET: &str = "/dev/unix/socket/hilogControl";
/// Longest message kept, in bytes (OpenHarmony's limit); a longer one is
/// cut by the writer, a longer packet is dropped and counted by the daemon.
pub const MAX_MSG: usize = 4096;
/// Longest tag, in bytes.
pub const MAX_TAG: usize = 32;
/// The `log` group (1007): its members may read the logs.
pub const LOG_GID: u32 = 1007;
/// The shell's uid (2000): it may read and manage the logs.
pub const SHELL_UID: u32 = 2000;

/// A record's log type (OpenHarmony's `LogType`; the numbers are its own).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum LogType {
    /// Applications (uids ≥ 10000 are always this type).
    App = 0,
    /// init's own messages.
    Init = 1,
    /// System services (the default).
    Core = 3,
    /// The kernel's log, read from `/dev/kmsg` by hilogd.
    Kmsg = 4,
}

impl LogType {
    /// Every type, in ring order.
    pub const ALL: [LogType; 4] = [LogType::App, LogType::Init, LogType::Core, LogType::Kmsg];

    /// From the wire number.
    pub fn from_u8(v: u8) -> Option<LogType> {
        Some(match v {
            0 => LogType::App,
            1 => LogType::Init,
            3 => LogType::Core,
            4 => LogType::Kmsg,
            _ => return None,
        })
    }

    /// The type's name as `hilog -t` takes it.
    pub fn name(self) -> &'static str {
        match self {
            LogType::App => "app",
            LogType::Init => "init",
            LogType::Core => "core",
            LogType::Kmsg => "kmsg",
        }
    }

    /// From a `hilog -t` name.
    pub fn parse(s: &str) -> Option<LogType> {
        LogType::ALL.into_iter().find(|t| t.name() == s)
    }

    /// The letter before the domain in a printed line (`A03200/tag`).
    pub fn letter(self) -> char {
        match self {
            LogType::App => 'A',
            LogType::Init => 'I',
            LogType::Core => 'C',
            LogType::Kmsg => 'K',
        }
    }

    /// Index of the type's ring.
    pub fn index(self) -> usize {
        match self {
            LogType::App => 0,
            LogType::Init => 1,
            LogType::Core => 2,
            LogType::Kmsg => 3,
        }
    }
}

/// A record's level (OpenHarmony's `LogLevel`: DEBUG 3 … FATAL 7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    Debug = 3,
    Info = 4,
    Warn = 5,
    Error = 6,
    Fatal = 7,
}

impl Level {
    /// Every level, lowest first.
    pub const ALL: [Level; 5] = [Level::Debug, Level::Info, Level::Warn, Level::Error, Level::Fatal];

    /// From the wire number.
    pub fn from_u8(v: u8) -> Option<Level> {
        Level::ALL.into_iter().find(|l| *l as u8 == v)
    }

    /// The letter `hilog` prints and `-L` takes (D, I, W, E, F).
    pub fn letter(self) -> char {
        match self {
            Level::Debug => 'D',
            Level::Info => 'I',
            Level::Warn => 'W',
            Level::Error => 'E',
            Level::Fatal => 'F',
        }
    }

    /// From a letter or a name (`W`, `warn`, `WARN`).
    pub fn parse(s: &str) -> Option<Level> {
        let s = s.to_ascii_uppercase();
        Level::ALL.into_iter().find(|l| s.len() == 1 && s.starts_with(l.letter()) || format!("{l:?}").to_ascii_uppercase() == s)
    }

    /// The kernel log priority of a kmsg record → level.
    pub fn from_syslog(prio: u8) -> Level {
        match prio & 7 {
            0..=2 => Level::Fatal,
            3 => Level::Error,
            4 => Level::Warn,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        }
    }
}

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in LogType::ALL {
            assert_eq!(LogType::parse(t.name()), Some(t));
            assert_eq!(LogType::from_u8(t as u8), Some(t));
        }
        for l in Level::ALL {
            assert_eq!(Level::from_u8(l as u8), Some(l));
            assert_eq!(Level::parse(&l.letter().to_string()), Some(l));
        }
        assert_eq!(Level::parse("warn"), Some(Level::Warn));
        assert_eq!(Level::parse("X"), None);
        assert_eq!(LogType::from_u8(2), None);
    }

    #[test]
    fn truncation_keeps_characters_whole() {
        assert_eq!(truncate_utf8("héllo", 2), "h");
        assert_eq!(truncate_utf8("héllo", 3), "hé");
        assert_eq!(truncate_utf8("abc", 10), "abc");
    }
}
