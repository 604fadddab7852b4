//! The reader ↔ hilogd protocol on `/dev/unix/socket/hilogControl`
//! (`SOCK_SEQPACKET`): one JSON [`Request`] per packet from the reader, one
//! JSON [`Response`] per packet back. A query answers with batches of
//! records (each packet at most [`MAX_RESPONSE`] bytes), `Lost` when the
//! reader fell behind what the rings hold, and `End` when it was not asked
//! to follow. Who may do what is decided by the daemon from the peer's
//! kernel credentials ([`crate::daemon`]).

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};
use serde::{Deserialize, Serialize};

use crate::ring::Record;
use crate::{Level, LogType};

/// Largest request packet, in bytes.
pub const MAX_REQUEST: usize = 4096;
/// Largest response packet, in bytes.
pub const MAX_RESPONSE: usize = 128 * 1024;
/// Longest `-e` expression, in bytes.
pub const MAX_REGEX: usize = 512;
/// Largest compiled `-e` expression, in bytes: bounds the cost of matching
/// one message (a repetition of repetitions is refused, not run).
pub const MAX_REGEX_PROGRAM: usize = 64 * 1024;
/// The types shown when a query names none (OpenHarmony's: kmsg only on
/// request).
pub const DEFAULT_TYPES: [LogType; 3] = [LogType::App, LogType::Init, LogType::Core];

/// Which records a reader wants; an empty list means "any".
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    /// Types (empty: [`DEFAULT_TYPES`]).
    #[serde(default)]
    pub types: Vec<LogType>,
    #[serde(default)]
    pub levels: Vec<Level>,
    /// Domains: a value above 0xFFFFF must match exactly, a smaller one
    /// matches the low 20 bits (what `hilog` prints).
    #[serde(default)]
    pub domains: Vec<u32>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub pids: Vec<u32>,
    /// A regular expression the message must match (`regex-lite` syntax).
    #[serde(default)]
    pub regex: Option<String>,
}

impl Filter {
    /// The types this filter reads.
    pub fn types(&self) -> Vec<LogType> {
        if self.types.is_empty() {
            DEFAULT_TYPES.to_vec()
        } else {
            let mut t = self.types.clone();
            t.sort();
            t.dedup();
            t
        }
    }

    /// The filter ready to match.
    ///
    /// # Errors
    /// A message naming what is wrong with the expression.
    pub fn compile(&self) -> Result<Matcher, String> {
        let regex = match &self.regex {
            Some(r) if r.len() > MAX_REGEX => return Err(format!("the expression is longer than {MAX_REGEX} bytes")),
            Some(r) => Some(
                regex_lite::RegexBuilder::new(r)
                    .size_limit(MAX_REGEX_PROGRAM)
                    .build()
                    .map_err(|e| format!("bad expression {r:?}: {e} (at most {MAX_REGEX} bytes, compiling to at most {MAX_REGEX_PROGRAM} bytes)"))?,
            ),
            None => None,
        };
        Ok(Matcher { f: self.clone(), types: self.types(), regex })
    }
}

/// A compiled [`Filter`].
#[derive(Debug, Clone)]
pub struct Matcher {
    f: Filter,
    /// The types to read.
    pub types: Vec<LogType>,
    regex: Option<regex_lite::Regex>,
}

impl Matcher {
    /// Whether `r` passes (its type is assumed to be one of `types`).
    pub fn matches(&self, r: &Record) -> bool {
        (self.f.levels.is_empty() || self.f.levels.contains(&r.level))
            && (self.f.domains.is_empty() || self.f.domains.iter().any(|&d| if d > 0xFFFFF { d == r.domain } else { d == r.domain & 0xFFFFF }))
            && (self.f.tags.is_empty() || self.f.tags.contains(&r.tag))
            && (self.f.pids.is_empty() || self.f.pids.contains(&r.pid))
            && self.regex.as_ref().is_none_or(|re| re.is_match(&r.msg))
    }
}

/// What a reader asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Records passing `filter`: the first `head`, the last `tail`, or all;
    /// then, with `follow`, every new one as it comes.
    Query {
        filter: Filter,
        #[serde(default)]
        follow: bool,
        #[serde(default)]
        head: Option<u64>,
        #[serde(default)]
        tail: Option<u64>,
    },
    /// Empties the rings of `types` (`hilog -r`).
    Clear { types: Vec<LogType> },
    /// Reads, or with `set` changes, the size of the rings of `types` in
    /// bytes (`hilog -g` / `-G`).
    BufferSize {
        types: Vec<LogType>,
        #[serde(default)]
        set: Option<u64>,
    },
    /// Counters (`hilog -s`).
    Stats,
    /// Turns the per-process rate limit on or off (`hilog -Q pidon|pidoff`).
    FlowControl { pid: bool },
    /// The persisting job (`hilog -w start|stop|query`).
    Persist { action: PersistAction },
}

/// What `hilog -w` asks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersistAction {
    /// Starts (or restarts with new settings) the job.
    Start(crate::persist::Spec),
    /// Stops it for good (it will not resume after a reboot).
    Stop,
    Query,
}

/// Per-type counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeStats {
    pub ty: LogType,
    /// Records received since start.
    pub lines: u64,
    /// Message bytes received since start.
    pub bytes: u64,
    /// Records overwritten because the ring was full.
    pub evicted: u64,
    /// Ring size and bytes in use.
    pub size: u64,
    pub used: u64,
}

/// Per-process counters (the processes hilogd heard from lately).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcStats {
    pub pid: u32,
    pub uid: u32,
    pub tag: String,
    pub lines: u64,
    pub bytes: u64,
    /// Records refused by the rate limit.
    pub dropped_rate: u64,
    /// Records the process could not send (its socket was full).
    pub dropped_writer: u64,
}

/// What `hilog -s` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub types: Vec<TypeStats>,
    pub procs: Vec<ProcStats>,
    /// Packets refused as malformed or oversized.
    pub malformed: u64,
    /// Kernel records lost before hilogd read them.
    pub kmsg_lost: u64,
    /// Connections turned away (over a bound, or not allowed), and records
    /// read from turned-away writers (not kept).
    pub refused_connections: u64,
    pub refused_records: u64,
    /// All records refused by the rate limit, and all that writers reported
    /// they could not send, since start (the per-process table shows only
    /// the busiest processes).
    pub dropped_rate: u64,
    pub dropped_writer: u64,
    /// Whether the per-process rate limit is on, and its rate (records/s).
    pub flow_control: bool,
    pub rate: u32,
    /// Writers and readers connected now.
    pub writers: u32,
    pub readers: u32,
}

/// hilogd's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Response {
    Records {
        records: Vec<Record>,
    },
    /// Records this reader will not get (overwritten or cleared before it
    /// read them); an upper bound.
    Lost {
        count: u64,
    },
    /// The query is answered (not following).
    End,
    /// A change was made.
    Done {
        message: String,
    },
    /// Ring sizes: (type, size, used) in bytes.
    Sizes {
        sizes: Vec<(LogType, u64, u64)>,
    },
    Stats {
        stats: Box<Stats>,
    },
    /// The persisting job's state.
    Persist {
        status: crate::persist::Status,
    },
    Error {
        message: String,
    },
}

/// A blocking connection to hilogd's control socket.
#[derive(Debug)]
pub struct Client {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Client {
    /// Connects to `path`.
    ///
    /// # Errors
    /// The socket's error (ENOENT, ECONNREFUSED, EACCES…).
    pub fn connect(path: &Path) -> std::io::Result<Client> {
        let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
        socket::connect(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
        Ok(Client { fd, buf: vec![0; MAX_RESPONSE + 1] })
    }

    /// Bounds how long [`Client::recv`] waits (`None`: for ever); a wait
    /// that runs out is an `WouldBlock`/`TimedOut` error.
    ///
    /// # Errors
    /// The socket's error.
    pub fn set_timeout(&self, t: Option<std::time::Duration>) -> std::io::Result<()> {
        let tv = match t {
            Some(d) => nix::sys::time::TimeVal::new(d.as_secs() as _, d.subsec_micros() as _),
            None => nix::sys::time::TimeVal::new(0, 0),
        };
        socket::setsockopt(&self.fd, socket::sockopt::ReceiveTimeout, &tv)?;
        Ok(())
    }

    /// Sends one request.
    ///
    /// # Errors
    /// The socket's error.
    pub fn send(&self, req: &Request) -> std::io::Result<()> {
        let b = serde_json::to_vec(req).map_err(std::io::Error::other)?;
        socket::send(self.fd.as_raw_fd(), &b, MsgFlags::MSG_NOSIGNAL)?;
        Ok(())
    }

    /// Waits for the next response; `None` when hilogd closed the
    /// connection.
    ///
    /// # Errors
    /// The socket's error, or an answer that does not parse.
    pub fn recv(&mut self) -> std::io::Result<Option<Response>> {
        let n = socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::empty())?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&self.buf[..n]).map(Some).map_err(|e| std::io::Error::other(format!("hilogd answered something unreadable: {e}")))
    }

    /// Sends `req` and waits for one answer.
    ///
    /// # Errors
    /// As [`Client::send`] and [`Client::recv`]; a closed connection is
    /// `UnexpectedEof`.
    pub fn call(&mut self, req: &Request) -> std::io::Result<Response> {
        self.send(req)?;
        self.recv()?.ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "hilogd closed the connection"))
    }
}
