//! hilogd: one thread, one epoll loop, no runtime.
//!
//! - Writers connect to the input socket; each connection's pid and uid are
//!   the kernel's (`SO_PEERCRED`). Every ready connection gets at most
//!   [`PER_WAKE`] packets per turn, so a writer that floods cannot starve
//!   another; each process is held to [`Config::rate`] records a second
//!   (OpenHarmony's per-process flow control, `hilog -Q pidoff` lifts it),
//!   and what is refused is counted and announced in that process's
//!   stream at most once a second. Uids ≥ 10000 always log as `app`; only
//!   init logs as `init` and only it may name the pid a record is for.
//! - Readers connect to the control socket. Root, the shell (2000) and the
//!   `log` group (1007, as the primary gid) may read; root and the shell
//!   may also clear, resize and switch the flow control. Everyone else is
//!   told no. A reader is a cursor into the rings: what it has not taken
//!   yet stays in the rings, never in a per-reader queue, so a reader that
//!   stops reading costs one packet of memory, and if the rings overwrite
//!   what it had not read it is told how much it lost.
//! - The kernel's `/dev/kmsg` is read as it fills: kernel records become
//!   type `kmsg`; lines init wrote there before hilogd was up (service
//!   output, its own messages) become `core`/`init` records of the service
//!   they name; the copies init writes for the console once it talks to
//!   hilogd (facility `daemon`) are skipped.
//!
//! Bounds per client: writers [`Config::writers_per_uid`] connections per
//! uid (root excepted) and [`Config::writers`] in all, readers
//! [`Config::readers_per_uid`] and [`Config::readers`]; packets at most
//! [`wire::MAX_PACKET`] bytes (longer or malformed ones are dropped and
//! counted); requests at most [`MAX_REQUEST`] bytes.

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockType, UnixAddr};

use crate::control::{Filter, Matcher, PersistAction, ProcStats, Request, Response, Stats, TypeStats, MAX_REQUEST, MAX_RESPONSE};
use crate::persist::{Job, Status};
use crate::ring::{Record, Store};
use crate::wire;
use crate::{Level, LogType, LOG_GID, SHELL_UID};

/// Packets read from one writer per turn of the loop.
pub const PER_WAKE: usize = 64;
/// Default per-process rate (records/s; the burst is the same number).
pub const DEFAULT_RATE: u32 = 1000;

/// What the daemon is given.
#[derive(Debug, Clone)]
pub struct Config {
    /// Ring size per type, bytes.
    pub ring_size: usize,
    /// Records a second each process may log (burst: as many).
    pub rate: u32,
    /// Whether the rate is enforced at start.
    pub flow_control: bool,
    pub writers_per_uid: usize,
    pub writers: usize,
    pub readers_per_uid: usize,
    pub readers: usize,
    /// `/dev/kmsg`, or none.
    pub kmsg: Option<PathBuf>,
    /// The pid whose connection may name the pid a record is for (init: 1).
    pub relay_pid: u32,
    /// Where `hilog -w` writes (none: persisting refused).
    pub persist_dir: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            ring_size: crate::ring::DEFAULT_SIZE,
            rate: DEFAULT_RATE,
            flow_control: true,
            writers_per_uid: 32,
            writers: 900,
            readers_per_uid: 8,
            readers: 32,
            kmsg: Some("/dev/kmsg".into()),
            relay_pid: 1,
            persist_dir: Some(crate::persist::DIR.into()),
        }
    }
}

const TOK_INPUT: u64 = 0;
const TOK_CONTROL: u64 = 1;
const TOK_KMSG: u64 = 2;
const TOK_SIGNAL: u64 = 3;
const FIRST_CONN: u64 = 16;

#[derive(Debug)]
struct Proc {
    uid: u32,
    tag: String,
    conns: u32,
    tokens: f64,
    refill: Instant,
    lines: u64,
    bytes: u64,
    dropped_rate: u64,
    dropped_writer: u64,
    pending_rate: u64,
    pending_writer: u64,
    last_notice: Option<Instant>,
    last_seen: Instant,
}

#[derive(Debug)]
enum Kind {
    Writer,
    Reader(Box<Reader>),
    /// Turned away (over a bound, or a reader without the right): kept for
    /// [`REFUSED_LINGER`] so what it sent is read (a writer's packets are
    /// counted as refused) and it hears why, then closed.
    Refused {
        writer: bool,
        message: String,
        since: Instant,
    },
}

/// Refused connections kept at once; past it they are closed at once.
pub const MAX_REFUSED: usize = 16;
/// How long a refused connection is kept.
pub const REFUSED_LINGER: Duration = Duration::from_secs(2);

/// Whether a peer may read the logs: root, the shell, or a member of group
/// log (as its primary group or a supplementary one, as the kernel gave
/// them at connect time).
pub fn may_read(uid: u32, gid: u32, groups: &[u32]) -> bool {
    uid == 0 || uid == SHELL_UID || gid == LOG_GID || groups.contains(&LOG_GID)
}

/// `SO_PEERGROUPS` (asm-generic, so on x86_64 and aarch64 alike): the
/// supplementary groups the peer had when it connected.
const SO_PEERGROUPS: libc::c_int = 59;

/// The peer's supplementary groups (empty if the kernel does not say).
fn peer_groups(fd: &OwnedFd) -> Vec<u32> {
    let mut buf = vec![0u32; 64];
    loop {
        let mut len = (buf.len() * 4) as libc::socklen_t;
        // SAFETY: buf is valid for len bytes; the kernel writes at most len.
        let r = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, SO_PEERGROUPS, buf.as_mut_ptr().cast(), &mut len) };
        if r == 0 {
            buf.truncate(len as usize / 4);
            return buf;
        }
        if Errno::last() == Errno::ERANGE && buf.len() < 65_536 {
            let want = (len as usize / 4).max(buf.len() * 2);
            buf.resize(want, 0);
            continue;
        }
        return Vec::new();
    }
}

/// Whether a peer may change hilog's settings: root and the shell.
pub fn may_manage(uid: u32) -> bool {
    uid == 0 || uid == SHELL_UID
}

#[derive(Debug)]
struct Reader {
    state: Option<Query>,
    /// A packet the socket had no room for yet.
    out: Option<Vec<u8>>,
    /// Answers to requests made while `out` waited (at most
    /// [`MAX_QUEUED`]; a reader that asks more without reading is dropped).
    queued: std::collections::VecDeque<Vec<u8>>,
    want_out: bool,
}

/// Answers kept for a reader that is not reading.
pub const MAX_QUEUED: usize = 4;

#[derive(Debug)]
struct Query {
    m: Matcher,
    cursor: u64,
    follow: bool,
    remaining: Option<u64>,
    /// Last record of a non-following query.
    end: u64,
    /// Per type, the highest overwritten record already reported lost.
    reported: [u64; 4],
    /// A tail query's first pass, until done.
    tail: Option<Tail>,
}

#[derive(Debug)]
struct Tail {
    n: u64,
    /// How far the first pass got.
    scan: u64,
    /// Positions of the last `n` matches so far.
    seqs: std::collections::VecDeque<u64>,
}

#[derive(Debug)]
struct Conn {
    fd: OwnedFd,
    pid: u32,
    uid: u32,
    /// A reader allowed to read (decided at connect time).
    may_read: bool,
    kind: Kind,
}

/// Counters kept since start.
#[derive(Debug, Default)]
struct Counters {
    lines: [u64; 4],
    bytes: [u64; 4],
    malformed: u64,
    kmsg_lost: u64,
    /// Connections turned away, and records read from refused writers.
    refused: u64,
    refused_records: u64,
    /// Records refused by the rate limit / reported unsent by writers.
    dropped_rate: u64,
    dropped_writer: u64,
}

/// The daemon's state.
pub struct Daemon {
    cfg: Config,
    epoll: Epoll,
    input: OwnedFd,
    control: OwnedFd,
    kmsg: Option<OwnedFd>,
    kmsg_seq: Option<u64>,
    conns: HashMap<u64, Conn>,
    next_tok: u64,
    procs: HashMap<u32, Proc>,
    store: Store,
    counters: Counters,
    flow_control: bool,
    buf: Vec<u8>,
    fresh: bool,
    own_pid: u32,
    persist: Option<Job>,
    persist_error: Option<String>,
    /// Whether the saved job was looked for (and found) or the user chose.
    persist_settled: bool,
    signals: Option<nix::sys::signalfd::SignalFd>,
    /// Readers with matching work left over from the last turn.
    busy: Vec<u64>,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("conns", &self.conns.len()).finish_non_exhaustive()
    }
}

/// Binds a listening `SOCK_SEQPACKET` socket at `path` (mode 0666), for
/// running hilogd without init (tests, a developer's machine).
///
/// # Errors
/// The socket's error.
pub fn listen_at(path: &Path) -> nix::Result<OwnedFd> {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC, None)?;
    let _ = std::fs::remove_file(path);
    socket::bind(fd.as_raw_fd(), &UnixAddr::new(path)?)?;
    socket::listen(&fd, socket::Backlog::new(128).unwrap_or(socket::Backlog::MAXCONN))?;
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666));
    Ok(fd)
}

/// The listening socket init made for `name` (`OHOS_SOCKET_<name>`).
pub fn socket_from_init(name: &str) -> Option<OwnedFd> {
    let fd: RawFd = std::env::var(format!("OHOS_SOCKET_{name}")).ok()?.parse().ok()?;
    // The fd must be an open socket we were given; check before owning it.
    socket::getsockopt(&unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }, sockopt::SockType).ok()?;
    // SAFETY: init passed this descriptor to us and nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

fn set_nonblock(fd: &impl AsRawFd) {
    let _ = nix::fcntl::fcntl(fd.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
}

/// Receives one packet into `buf`; `Ok(None)` when nothing is waiting,
/// `Ok(Some(n))` with `n > buf.len()` when the packet was longer (cut).
fn recv_packet(fd: RawFd, buf: &mut [u8]) -> nix::Result<Option<usize>> {
    // SAFETY: buf is valid for buf.len() bytes; MSG_TRUNC makes the return
    // the packet's real length.
    let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT | libc::MSG_TRUNC) };
    if n < 0 {
        let e = Errno::last();
        return if e == Errno::EAGAIN { Ok(None) } else { Err(e) };
    }
    Ok(Some(n as usize))
}

/// Whether the peer of `fd` has shut its end (asked now, not when epoll
/// last looked).
fn hung_up(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLRDHUP, revents: 0 };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

fn send_packet(fd: RawFd, b: &[u8]) -> nix::Result<bool> {
    // SAFETY: b is valid for b.len() bytes.
    let n = unsafe { libc::send(fd, b.as_ptr().cast(), b.len(), libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if n < 0 {
        let e = Errno::last();
        return if e == Errno::EAGAIN || e == Errno::ENOBUFS { Ok(false) } else { Err(e) };
    }
    Ok(true)
}

fn response(r: &Response) -> Vec<u8> {
    serde_json::to_vec(r).unwrap_or_else(|_| br#"{"kind":"error","message":"unencodable answer"}"#.to_vec())
}

impl Daemon {
    /// A daemon on the listening sockets `input` and `control`.
    ///
    /// # Errors
    /// epoll's.
    pub fn new(cfg: Config, input: OwnedFd, control: OwnedFd) -> nix::Result<Daemon> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        set_nonblock(&input);
        set_nonblock(&control);
        epoll.add(input.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_INPUT))?;
        epoll.add(control.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_CONTROL))?;
        let mut d = Daemon {
            store: Store::new(cfg.ring_size),
            flow_control: cfg.flow_control,
            cfg,
            epoll,
            input,
            control,
            kmsg: None,
            kmsg_seq: None,
            conns: HashMap::new(),
            next_tok: FIRST_CONN,
            procs: HashMap::new(),
            counters: Counters::default(),
            buf: vec![0; wire::MAX_PACKET + 1],
            fresh: false,
            own_pid: std::process::id(),
            persist: None,
            persist_error: None,
            persist_settled: false,
            signals: None,
            busy: Vec::new(),
        };
        if let Some(path) = d.cfg.kmsg.clone() {
            match nix::fcntl::open(
                &path,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            ) {
                Ok(fd) => {
                    // SAFETY: open returned a new descriptor we own.
                    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
                    d.epoll.add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_KMSG))?;
                    d.kmsg = Some(fd);
                }
                Err(e) => d.note(Level::Warn, &format!("cannot read the kernel log {}: {e}; type kmsg stays empty", path.display())),
            }
        }
        d.note(Level::Info, &format!("hilogd {} up: rings of {} KiB, {} records/s per process", env!("CARGO_PKG_VERSION"), d.cfg.ring_size / 1024, d.cfg.rate));
        Ok(d)
    }

    /// A record of hilogd's own.
    fn note(&mut self, level: Level, msg: &str) {
        let pid = self.own_pid;
        self.push(Record { seq: 0, time_ns: now_ns(), ty: LogType::Core, level, domain: 0, pid, tid: pid, uid: 0, tag: "hilogd".into(), msg: msg.into() });
    }

    fn push(&mut self, r: Record) {
        let i = r.ty.index();
        self.counters.lines[i] += 1;
        self.counters.bytes[i] += r.msg.len() as u64;
        self.store.push(r);
        self.fresh = true;
    }

    /// Serves until SIGTERM (then the persisting job's last lines are
    /// written) or an unrecoverable error (epoll failing). SIGTERM and
    /// SIGINT are taken through a signalfd: call this on the process's only
    /// thread.
    ///
    /// # Errors
    /// epoll's.
    pub fn serve(&mut self) -> nix::Result<()> {
        use nix::sys::signal::{SigSet, Signal};
        let mut set = SigSet::empty();
        set.add(Signal::SIGTERM);
        set.add(Signal::SIGINT);
        set.thread_block()?;
        let sfd = nix::sys::signalfd::SignalFd::with_flags(&set, nix::sys::signalfd::SfdFlags::SFD_NONBLOCK | nix::sys::signalfd::SfdFlags::SFD_CLOEXEC)?;
        self.epoll.add(sfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_SIGNAL))?;
        self.signals = Some(sfd);
        self.run()
    }

    /// Serves until an unrecoverable error (epoll failing), or a signal
    /// [`Daemon::serve`] takes.
    ///
    /// # Errors
    /// epoll's.
    pub fn run(&mut self) -> nix::Result<()> {
        let mut events = vec![EpollEvent::empty(); 64];
        let mut last_tick = Instant::now();
        loop {
            let timeout = if self.busy.is_empty() { EpollTimeout::from(1000u16) } else { EpollTimeout::ZERO };
            let n = match self.epoll.wait(&mut events, timeout) {
                Ok(n) => n,
                Err(Errno::EINTR) => 0,
                Err(e) => return Err(e),
            };
            for ev in &events[..n] {
                let tok = ev.data();
                match tok {
                    TOK_INPUT => self.accept(true),
                    TOK_CONTROL => self.accept(false),
                    TOK_KMSG => self.read_kmsg(),
                    TOK_SIGNAL => {
                        self.note(Level::Info, "hilogd stopping (signal)");
                        if let Some(mut j) = self.persist.take() {
                            let _ = j.pump(&self.store, true);
                            j.finish();
                        }
                        return Ok(());
                    }
                    _ => self.conn_event(tok, ev.events()),
                }
            }
            if last_tick.elapsed() >= Duration::from_secs(1) {
                last_tick = Instant::now();
                self.tick();
            }
            if self.fresh {
                self.fresh = false;
                self.pump_all();
                self.pump_persist(false);
            }
            for tok in std::mem::take(&mut self.busy) {
                self.pump(tok);
            }
        }
    }

    fn accept(&mut self, writer: bool) {
        loop {
            let listener = if writer { &self.input } else { &self.control };
            let fd = match socket::accept4(listener.as_raw_fd(), SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK) {
                // SAFETY: accept4 returned a new descriptor we own.
                Ok(fd) => unsafe { OwnedFd::from_raw_fd(fd) },
                Err(Errno::EAGAIN) => return,
                Err(Errno::EMFILE | Errno::ENFILE) => {
                    // Out of descriptors: leave the rest in the backlog.
                    return;
                }
                Err(_) => return,
            };
            let Ok(cred) = socket::getsockopt(&fd, sockopt::PeerCredentials) else { continue };
            let (pid, uid, gid) = (cred.pid() as u32, cred.uid(), cred.gid());
            let is = |c: &Conn| matches!(c.kind, Kind::Writer) == writer && !matches!(c.kind, Kind::Refused { .. });
            let (per_uid, total) = if writer { (self.cfg.writers_per_uid, self.cfg.writers) } else { (self.cfg.readers_per_uid, self.cfg.readers) };
            let mine = self.conns.values().filter(|c| c.uid == uid && is(c)).count();
            let all = self.conns.values().filter(|c| is(c)).count();
            let log_member = !writer && may_read(uid, gid, &peer_groups(&fd));
            let refusal = if !writer && !log_member {
                Some(format!("uid {uid} may not read the logs (root, the shell, or group log only)"))
            } else if all >= total || (uid != 0 && mine >= per_uid) {
                let what = if writer { "writers" } else { "readers" };
                Some(format!("too many {what} (uid {uid}: {mine} of {per_uid}; all: {all} of {total})"))
            } else {
                None
            };
            let tok = self.next_tok;
            self.next_tok += 1;
            let flags = if writer { EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP } else { EpollFlags::EPOLLIN };
            if let Some(message) = refusal {
                self.counters.refused += 1;
                let lingering = self.conns.values().filter(|c| matches!(c.kind, Kind::Refused { .. })).count();
                if !writer {
                    let _ = send_packet(fd.as_raw_fd(), &response(&Response::Error { message: message.clone() }));
                }
                // Kept a moment so what the client already sent is read
                // (and, from a writer, counted) instead of resetting it.
                if lingering < MAX_REFUSED && self.epoll.add(fd.as_fd(), EpollEvent::new(flags, tok)).is_ok() {
                    self.conns.insert(tok, Conn { fd, pid, uid, may_read: false, kind: Kind::Refused { writer, message, since: Instant::now() } });
                } else if writer {
                    self.drain_refused(&fd);
                }
                continue;
            }
            if self.epoll.add(fd.as_fd(), EpollEvent::new(flags, tok)).is_err() {
                continue;
            }
            let kind = if writer {
                let p = self.procs.entry(pid).or_insert_with(|| Proc::new(uid, self.cfg.rate));
                p.conns += 1;
                p.uid = uid;
                Kind::Writer
            } else {
                Kind::Reader(Box::new(Reader { state: None, out: None, queued: Default::default(), want_out: false }))
            };
            self.conns.insert(tok, Conn { fd, pid, uid, may_read: log_member, kind });
        }
    }

    /// Reads and counts what a refused writer sent.
    fn drain_refused(&mut self, fd: &OwnedFd) {
        let mut buf = std::mem::take(&mut self.buf);
        for _ in 0..PER_WAKE * 4 {
            match recv_packet(fd.as_raw_fd(), &mut buf) {
                Ok(Some(n)) if n > 0 => self.counters.refused_records += 1,
                _ => break,
            }
        }
        self.buf = buf;
    }

    fn close(&mut self, tok: u64) {
        if let Some(c) = self.conns.remove(&tok) {
            let _ = self.epoll.delete(c.fd.as_fd());
            if matches!(c.kind, Kind::Writer) {
                if let Some(p) = self.procs.get_mut(&c.pid) {
                    p.conns = p.conns.saturating_sub(1);
                }
                self.announce(c.pid);
            }
        }
    }

    fn conn_event(&mut self, tok: u64, ev: EpollFlags) {
        let Some(c) = self.conns.get(&tok) else { return };
        match &c.kind {
            Kind::Writer => self.read_writer(tok, ev),
            Kind::Refused { writer, message, .. } => {
                let (writer, message) = (*writer, message.clone());
                let Some(c) = self.conns.remove(&tok) else { return };
                if writer {
                    self.drain_refused(&c.fd);
                } else {
                    let mut buf = [0u8; 64];
                    while let Ok(Some(n)) = recv_packet(c.fd.as_raw_fd(), &mut buf) {
                        if n == 0 {
                            break;
                        }
                        let _ = send_packet(c.fd.as_raw_fd(), &response(&Response::Error { message: message.clone() }));
                    }
                }
                if ev.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP | EpollFlags::EPOLLERR) {
                    let _ = self.epoll.delete(c.fd.as_fd());
                } else {
                    self.conns.insert(tok, c);
                }
            }
            Kind::Reader(_) => {
                if ev.contains(EpollFlags::EPOLLOUT) {
                    self.pump(tok);
                }
                if ev.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
                    self.read_request(tok);
                }
            }
        }
    }

    fn read_writer(&mut self, tok: u64, ev: EpollFlags) {
        let mut buf = std::mem::take(&mut self.buf);
        let mut gone = false;
        for _ in 0..PER_WAKE {
            let Some(c) = self.conns.get(&tok) else { break };
            match recv_packet(c.fd.as_raw_fd(), &mut buf) {
                Ok(None) => break,
                // Zero bytes: the writer hung up (maybe after epoll looked),
                // or sent an empty packet (malformed) while still connected.
                Ok(Some(0)) if hung_up(c.fd.as_raw_fd()) => {
                    gone = true;
                    break;
                }
                Ok(Some(0)) => self.counters.malformed += 1,
                Ok(Some(n)) if n > buf.len() => self.counters.malformed += 1,
                Ok(Some(n)) => {
                    let (pid, uid) = (c.pid, c.uid);
                    self.take_packet(pid, uid, &buf[..n]);
                }
                Err(_) => {
                    gone = true;
                    break;
                }
            }
        }
        self.buf = buf;
        if gone || (ev.intersects(EpollFlags::EPOLLHUP | EpollFlags::EPOLLRDHUP) && !ev.contains(EpollFlags::EPOLLIN)) {
            self.close(tok);
        }
    }

    /// Takes one writer packet from the connection of `conn_pid`/`uid`.
    fn take_packet(&mut self, conn_pid: u32, uid: u32, b: &[u8]) {
        let input = match wire::decode(b) {
            Ok(i) => i,
            Err(_) => {
                self.counters.malformed += 1;
                return;
            }
        };
        let relay = conn_pid == self.cfg.relay_pid && uid == 0;
        let relayed = relay && input.for_pid != 0 && input.for_pid != conn_pid;
        let pid = if relayed { input.for_pid } else { conn_pid };
        // A relayed line's thread is not known: the process's main one.
        let tid = if relayed { pid } else { input.tid };
        let ty = match input.ty {
            _ if uid >= 10000 => LogType::App,
            LogType::Init if relay => LogType::Init,
            LogType::Init | LogType::Kmsg => LogType::Core,
            t => t,
        };
        let rate = self.cfg.rate;
        let flow = self.flow_control && !(relay && pid == conn_pid);
        let p = self.procs.entry(pid).or_insert_with(|| Proc::new(uid, rate));
        p.last_seen = Instant::now();
        if p.tag.as_str() != input.tag {
            p.tag = input.tag.to_string();
        }
        if input.dropped > 0 {
            p.dropped_writer += u64::from(input.dropped);
            p.pending_writer += u64::from(input.dropped);
            self.counters.dropped_writer += u64::from(input.dropped);
        }
        if flow && !p.take_token(rate) {
            p.dropped_rate += 1;
            p.pending_rate += 1;
            self.counters.dropped_rate += 1;
            return;
        }
        p.lines += 1;
        p.bytes += input.msg.len() as u64;
        let due = (p.pending_rate > 0 || p.pending_writer > 0) && p.last_notice.is_none_or(|t| t.elapsed() >= Duration::from_secs(1));
        if due {
            self.announce(pid);
        }
        self.push(Record {
            seq: 0,
            time_ns: input.time_ns,
            ty,
            level: input.level,
            domain: input.domain,
            pid,
            tid,
            uid,
            tag: crate::truncate_utf8(&input.tag, crate::MAX_TAG).to_owned(),
            msg: crate::truncate_utf8(&input.msg, crate::MAX_MSG).to_owned(),
        });
    }

    /// Puts the drops of `pid` not yet announced into its stream.
    fn announce(&mut self, pid: u32) {
        let rate = self.cfg.rate;
        let Some(p) = self.procs.get_mut(&pid) else { return };
        let mut msgs = Vec::new();
        if p.pending_rate > 0 {
            msgs.push(format!("hilogd: dropped {} lines of pid {pid} over its limit of {rate} lines/s", p.pending_rate));
        }
        if p.pending_writer > 0 {
            msgs.push(format!("hilogd: pid {pid} could not send {} lines: its socket was full", p.pending_writer));
        }
        p.pending_rate = 0;
        p.pending_writer = 0;
        p.last_notice = Some(Instant::now());
        let (uid, tag) = (p.uid, p.tag.clone());
        for msg in msgs {
            let ty = if uid >= 10000 { LogType::App } else { LogType::Core };
            self.push(Record { seq: 0, time_ns: now_ns(), ty, level: Level::Warn, domain: 0, pid, tid: pid, uid, tag: tag.clone(), msg });
        }
    }

    /// Once a second: announce drops of quiet processes, forget old ones.
    fn tick(&mut self) {
        let due: Vec<u32> = self
            .procs
            .iter()
            .filter(|(_, p)| (p.pending_rate > 0 || p.pending_writer > 0) && p.last_notice.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)))
            .map(|(pid, _)| *pid)
            .collect();
        for pid in due {
            self.announce(pid);
        }
        let old: Vec<u64> =
            self.conns.iter().filter(|(_, c)| matches!(c.kind, Kind::Refused { since, .. } if since.elapsed() >= REFUSED_LINGER)).map(|(t, _)| *t).collect();
        for t in old {
            if let Some(c) = self.conns.remove(&t) {
                if matches!(c.kind, Kind::Refused { writer: true, .. }) {
                    self.drain_refused(&c.fd);
                }
                let _ = self.epoll.delete(c.fd.as_fd());
            }
        }
        if !self.persist_settled && self.persist.is_none() {
            self.resume_persist();
        }
        self.pump_persist(true);
        if self.procs.len() > 512 {
            self.procs.retain(|_, p| p.conns > 0 || p.last_seen.elapsed() < Duration::from_secs(60));
        }
    }

    /// Resumes the job saved before a restart, once its directory is there
    /// (`/data` is mounted after hilogd starts).
    fn resume_persist(&mut self) {
        let Some(dir) = self.cfg.persist_dir.clone() else {
            self.persist_settled = true;
            return;
        };
        if !dir.is_dir() {
            return;
        }
        self.persist_settled = true;
        if let Some(spec) = Job::saved(&dir) {
            match Job::start(&dir, spec, false) {
                Ok(j) => {
                    self.note(Level::Info, &format!("persisting resumed: {}/{}.*", dir.display(), j.spec().name));
                    self.persist = Some(j);
                }
                Err(e) => self.note(Level::Warn, &format!("the saved persisting job in {} is not valid: {e}", dir.display())),
            }
        }
    }

    fn pump_persist(&mut self, flush: bool) {
        let Some(j) = self.persist.as_mut() else { return };
        if let Err(e) = j.pump(&self.store, flush) {
            self.persist = None;
            self.note(Level::Error, &format!("persisting stopped: {e}"));
            self.persist_error = Some(e);
        }
    }

    fn persist_status(&self) -> Status {
        Status {
            running: self.persist.is_some(),
            spec: self.persist.as_ref().map(|j| j.spec().clone()),
            current: self.persist.as_ref().and_then(|j| j.current()),
            lines: self.persist.as_ref().map(|j| j.lines()).unwrap_or(0),
            error: self.persist_error.clone(),
        }
    }

    fn read_kmsg(&mut self) {
        let Some(fd) = self.kmsg.as_ref().map(|f| f.as_raw_fd()) else { return };
        let mut buf = [0u8; 8192];
        for _ in 0..256 {
            // SAFETY: buf is valid for its length.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                match Errno::last() {
                    Errno::EAGAIN => return,
                    // Records were overwritten before we read them: the
                    // sequence gap of the next one counts them.
                    Errno::EPIPE | Errno::EINVAL | Errno::EINTR => continue,
                    _ => {
                        if let Some(f) = self.kmsg.take() {
                            let _ = self.epoll.delete(f.as_fd());
                        }
                        return;
                    }
                }
            }
            if n == 0 {
                return;
            }
            if let Some(k) = parse_kmsg(&buf[..n as usize]) {
                if let Some(last) = self.kmsg_seq {
                    self.counters.kmsg_lost += k.seq.saturating_sub(last + 1);
                }
                self.kmsg_seq = Some(k.seq);
                if let Some(r) = k.into_record(kmsg_offset_ns()) {
                    self.push(r);
                }
            }
        }
        // More may be waiting: epoll is level-triggered and will say so.
    }

    fn read_request(&mut self, tok: u64) {
        // The writers' packet buffer serves (it is larger than a request).
        let mut buf = std::mem::take(&mut self.buf);
        self.read_requests(tok, &mut buf[..MAX_REQUEST + 1]);
        self.buf = buf;
    }

    fn read_requests(&mut self, tok: u64, buf: &mut [u8]) {
        loop {
            let Some(c) = self.conns.get(&tok) else { return };
            let n = match recv_packet(c.fd.as_raw_fd(), buf) {
                Ok(None) => return,
                Ok(Some(0)) | Err(_) => return self.close(tok),
                Ok(Some(n)) => n,
            };
            if n > MAX_REQUEST {
                self.reply(tok, &Response::Error { message: format!("request longer than {MAX_REQUEST} bytes") });
                return self.close(tok);
            }
            let req: Request = match serde_json::from_slice(&buf[..n]) {
                Ok(r) => r,
                Err(e) => {
                    self.reply(tok, &Response::Error { message: format!("unreadable request: {e}") });
                    return self.close(tok);
                }
            };
            self.handle(tok, req);
        }
    }

    fn reply(&mut self, tok: u64, r: &Response) {
        let Some(c) = self.conns.get_mut(&tok) else { return };
        let b = response(r);
        let Kind::Reader(rd) = &mut c.kind else { return };
        if rd.out.is_some() {
            // An answer still waits to be read: this one goes after it.
            if rd.queued.len() >= MAX_QUEUED {
                return self.close(tok);
            }
            rd.queued.push_back(b);
            return;
        }
        match send_packet(c.fd.as_raw_fd(), &b) {
            Ok(true) => {}
            Ok(false) => park(&self.epoll, &c.fd, rd, tok, b),
            Err(_) => self.close(tok),
        }
    }

    fn handle(&mut self, tok: u64, req: Request) {
        let Some(c) = self.conns.get(&tok) else { return };
        let (uid, may_read) = (c.uid, c.may_read);
        let may_manage = may_manage(uid);
        let manage = matches!(
            req,
            Request::Clear { .. }
                | Request::BufferSize { set: Some(_), .. }
                | Request::FlowControl { .. }
                | Request::Persist { action: PersistAction::Start(_) | PersistAction::Stop }
        );
        if !may_read || (manage && !may_manage) {
            let message = if manage {
                format!("uid {uid} may not change hilog's settings (root or the shell only)")
            } else {
                format!("uid {uid} may not read the logs (root, the shell, or group log only)")
            };
            return self.reply(tok, &Response::Error { message });
        }
        match req {
            Request::Query { filter, follow, head, tail } => self.query(tok, filter, follow, head, tail),
            Request::Clear { types } => {
                let types = if types.is_empty() { vec![LogType::App, LogType::Core] } else { types };
                for t in &types {
                    self.store.ring_mut(*t).clear();
                }
                let names: Vec<_> = types.iter().map(|t| t.name()).collect();
                self.note(Level::Info, &format!("buffers of {} cleared by uid {uid}", names.join(",")));
                self.reply(tok, &Response::Done { message: format!("cleared {}", names.join(", ")) });
            }
            Request::BufferSize { types, set } => {
                let types = if types.is_empty() { vec![LogType::App, LogType::Core] } else { types };
                if let Some(size) = set {
                    let lo = crate::ring::MIN_SIZE as u64;
                    let hi = crate::ring::MAX_SIZE as u64;
                    if !(lo..=hi).contains(&size) {
                        return self.reply(tok, &Response::Error { message: format!("buffer size {size} is outside {}K..{}M", lo / 1024, hi >> 20) });
                    }
                    for t in &types {
                        self.store.ring_mut(*t).set_cap(size as usize);
                    }
                    self.note(
                        Level::Info,
                        &format!("buffer size of {} set to {size} by uid {uid}", types.iter().map(|t| t.name()).collect::<Vec<_>>().join(",")),
                    );
                }
                let sizes = types.iter().map(|t| (*t, self.store.ring(*t).cap() as u64, self.store.ring(*t).used() as u64)).collect();
                self.reply(tok, &Response::Sizes { sizes });
            }
            Request::Stats => {
                let s = self.stats();
                self.reply(tok, &Response::Stats { stats: Box::new(s) });
            }
            Request::Persist { action } => {
                let Some(dir) = self.cfg.persist_dir.clone() else {
                    return self.reply(tok, &Response::Error { message: "this hilogd persists nothing (no directory)".into() });
                };
                match action {
                    PersistAction::Query => {}
                    PersistAction::Stop => {
                        self.persist_settled = true;
                        Job::forget(&dir);
                        if let Some(mut j) = self.persist.take() {
                            let _ = j.pump(&self.store, true);
                            j.finish();
                            self.note(Level::Info, &format!("persisting stopped by uid {uid}"));
                        }
                    }
                    PersistAction::Start(spec) => {
                        if !dir.is_dir() {
                            return self.reply(tok, &Response::Error { message: format!("{} does not exist (is /data mounted?)", dir.display()) });
                        }
                        // A bad request changes nothing: the running job
                        // goes on.
                        if let Err(e) = spec.check() {
                            return self.reply(tok, &Response::Error { message: e });
                        }
                        if let Some(mut j) = self.persist.take() {
                            let _ = j.pump(&self.store, true);
                            j.finish();
                        }
                        match Job::start(&dir, spec, true) {
                            Ok(j) => {
                                self.persist_settled = true;
                                self.persist_error = None;
                                self.note(Level::Info, &format!("persisting started by uid {uid}: {}/{}.*", dir.display(), j.spec().name));
                                self.persist = Some(j);
                                self.pump_persist(true);
                            }
                            Err(e) => return self.reply(tok, &Response::Error { message: e }),
                        }
                    }
                }
                let status = self.persist_status();
                self.reply(tok, &Response::Persist { status });
            }
            Request::FlowControl { pid } => {
                self.flow_control = pid;
                let msg = format!("per-process flow control {} by uid {uid}", if pid { "on" } else { "off" });
                self.note(Level::Info, &msg);
                self.reply(tok, &Response::Done { message: msg });
            }
        }
    }

    fn stats(&self) -> Stats {
        let types = LogType::ALL
            .iter()
            .map(|t| {
                let r = self.store.ring(*t);
                TypeStats {
                    ty: *t,
                    lines: self.counters.lines[t.index()],
                    bytes: self.counters.bytes[t.index()],
                    evicted: r.evicted,
                    size: r.cap() as u64,
                    used: r.used() as u64,
                }
            })
            .collect();
        let mut procs: Vec<ProcStats> = self
            .procs
            .iter()
            .map(|(pid, p)| ProcStats {
                pid: *pid,
                uid: p.uid,
                tag: p.tag.clone(),
                lines: p.lines,
                bytes: p.bytes,
                dropped_rate: p.dropped_rate,
                dropped_writer: p.dropped_writer,
            })
            .collect();
        procs.sort_by_key(|p| std::cmp::Reverse(p.lines));
        procs.truncate(64);
        Stats {
            types,
            procs,
            malformed: self.counters.malformed,
            kmsg_lost: self.counters.kmsg_lost,
            refused_connections: self.counters.refused,
            refused_records: self.counters.refused_records,
            dropped_rate: self.counters.dropped_rate,
            dropped_writer: self.counters.dropped_writer,
            flow_control: self.flow_control,
            rate: self.cfg.rate,
            writers: self.conns.values().filter(|c| matches!(c.kind, Kind::Writer)).count() as u32,
            readers: self.conns.values().filter(|c| matches!(c.kind, Kind::Reader(_))).count() as u32,
        }
    }

    fn query(&mut self, tok: u64, filter: Filter, follow: bool, head: Option<u64>, tail: Option<u64>) {
        let m = match filter.compile() {
            Ok(m) => m,
            Err(e) => return self.reply(tok, &Response::Error { message: e }),
        };
        let mut reported = [0u64; 4];
        for t in &m.types {
            // What was gone before the query is not news to this reader.
            reported[t.index()] = self.store.ring(*t).gone_upto;
        }
        // The last N are found by a first pass that keeps the positions of
        // the last N matches (sliced like any other work).
        let tail = tail.map(|n| Tail { n, scan: 0, seqs: std::collections::VecDeque::new() });
        let q = Query { m, cursor: 0, follow, remaining: head, end: self.store.next_seq() - 1, reported, tail };
        if let Some(Conn { kind: Kind::Reader(rd), .. }) = self.conns.get_mut(&tok) {
            rd.state = Some(q);
        }
        self.pump(tok);
    }

    fn pump_all(&mut self) {
        let toks: Vec<u64> =
            self.conns.iter().filter(|(_, c)| matches!(&c.kind, Kind::Reader(r) if r.state.is_some() && r.out.is_none())).map(|(t, _)| *t).collect();
        for t in toks {
            self.pump(t);
        }
    }

    /// Sends a reader what it can take of its query, for at most [`SLICE`]
    /// of matching; a reader with work left is served again on the next
    /// turn of the loop, after every other event.
    fn pump(&mut self, tok: u64) {
        let deadline = Instant::now() + SLICE;
        loop {
            let Some(c) = self.conns.get_mut(&tok) else { return };
            let fd = c.fd.as_raw_fd();
            let Kind::Reader(rd) = &mut c.kind else { return };
            if let Some(out) = rd.out.take() {
                match send_packet(fd, &out) {
                    Ok(true) => {}
                    Ok(false) => return park(&self.epoll, &c.fd, rd, tok, out),
                    Err(_) => return self.close(tok),
                }
            }
            if let Some(next) = rd.queued.pop_front() {
                rd.out = Some(next);
                continue;
            }
            if rd.want_out {
                rd.want_out = false;
                let _ = self.epoll.modify(c.fd.as_fd(), &mut EpollEvent::new(EpollFlags::EPOLLIN, tok));
            }
            let Some(q) = rd.state.as_mut() else { return };
            if Instant::now() >= deadline {
                if !self.busy.contains(&tok) {
                    self.busy.push(tok);
                }
                return;
            }
            let step = next_packet(&self.store, q, deadline);
            if step.done {
                rd.state = None;
            }
            match step.packet {
                Some(p) => rd.out = Some(p),
                None => {
                    if step.more && !self.busy.contains(&tok) {
                        self.busy.push(tok);
                    }
                    return;
                }
            }
        }
    }
}

/// Keeps `packet` for a reader whose socket is full, and asks epoll to say
/// when it has room.
fn park(epoll: &Epoll, fd: &OwnedFd, rd: &mut Reader, tok: u64, packet: Vec<u8>) {
    rd.out = Some(packet);
    if !rd.want_out {
        rd.want_out = true;
        let _ = epoll.modify(fd.as_fd(), &mut EpollEvent::new(EpollFlags::EPOLLIN | EpollFlags::EPOLLOUT, tok));
    }
}

/// Matching time one reader gets per turn of the loop.
pub const SLICE: Duration = Duration::from_millis(2);

/// What [`next_packet`] produced.
struct Step {
    packet: Option<Vec<u8>>,
    /// The query is finished.
    done: bool,
    /// Time ran out with work left.
    more: bool,
}

/// The next packet for query `q`: lost records first, then a batch of
/// records, then `End` for a query that does not follow. No packet when a
/// following query has nothing new or when `deadline` passed first.
fn next_packet(store: &Store, q: &mut Query, deadline: Instant) -> Step {
    if let Some(t) = q.tail.as_mut() {
        // First pass of a tail query.
        let m = &q.m;
        let end = q.end;
        let mut k = 0u32;
        let mut late = false;
        let last = store.walk(&m.types, t.scan, |r| {
            k += 1;
            if k > 1 && Instant::now() >= deadline {
                late = true;
                return false;
            }
            if r.seq > end {
                return false;
            }
            if t.n > 0 && m.matches(r) {
                if t.seqs.len() as u64 == t.n {
                    t.seqs.pop_front();
                }
                t.seqs.push_back(r.seq);
            }
            true
        });
        t.scan = last;
        if late {
            return Step { packet: None, done: false, more: true };
        }
        q.cursor = match t.seqs.front() {
            Some(first) => first - 1,
            None => end,
        };
        q.tail = None;
    }
    let lost = store.lost_since(&q.m.types, q.cursor, &mut q.reported);
    if lost > 0 {
        return Step { packet: Some(response(&Response::Lost { count: lost })), done: false, more: false };
    }
    let limit_reached = q.remaining == Some(0);
    let mut out = Vec::with_capacity(16 * 1024);
    out.extend_from_slice(br#"{"kind":"records","records":["#);
    let mut any = false;
    let mut full = false;
    let mut late = false;
    let end = if q.follow { u64::MAX } else { q.end };
    let mut one = Vec::new();
    if !limit_reached {
        let remaining = &mut q.remaining;
        let m = &q.m;
        let mut k = 0u32;
        let last = store.walk(&m.types, q.cursor, |r| {
            k += 1;
            if k > 1 && Instant::now() >= deadline {
                late = true;
                return false;
            }
            if r.seq > end || *remaining == Some(0) {
                return false;
            }
            if !m.matches(r) {
                return true;
            }
            one.clear();
            if serde_json::to_writer(&mut one, r).is_err() {
                return true;
            }
            if out.len() + one.len() + 2 > MAX_RESPONSE {
                full = true;
                return false;
            }
            if any {
                out.push(b',');
            }
            out.extend_from_slice(&one);
            any = true;
            if let Some(n) = remaining.as_mut() {
                *n -= 1;
            }
            true
        });
        q.cursor = last;
    }
    if any {
        out.extend_from_slice(b"]}");
        return Step { packet: Some(out), done: false, more: late };
    }
    if late {
        return Step { packet: None, done: false, more: true };
    }
    let finished = q.remaining == Some(0) || (!q.follow && !full);
    if finished {
        return Step { packet: Some(response(&Response::End)), done: true, more: false };
    }
    Step { packet: None, done: false, more: false }
}

impl Proc {
    fn new(uid: u32, rate: u32) -> Proc {
        let now = Instant::now();
        Proc {
            uid,
            tag: String::new(),
            conns: 0,
            tokens: f64::from(rate),
            refill: now,
            lines: 0,
            bytes: 0,
            dropped_rate: 0,
            dropped_writer: 0,
            pending_rate: 0,
            pending_writer: 0,
            last_notice: None,
            last_seen: now,
        }
    }

    fn take_token(&mut self, rate: u32) -> bool {
        let now = Instant::now();
        let dt = now.duration_since(self.refill).as_secs_f64();
        self.refill = now;
        self.tokens = (self.tokens + dt * f64::from(rate)).min(f64::from(rate));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Realtime minus the kernel log's clock (monotonic), ns.
fn kmsg_offset_ns() -> i128 {
    let mono = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).map(|t| t.tv_sec() as i128 * 1_000_000_000 + t.tv_nsec() as i128).unwrap_or(0);
    now_ns() as i128 - mono
}

/// One `/dev/kmsg` record.
#[derive(Debug, PartialEq, Eq)]
pub struct Kmsg<'a> {
    pub prio: u8,
    pub facility: u8,
    pub seq: u64,
    pub ts_us: u64,
    pub msg: &'a str,
}

/// Parses `prio,seq,ts_us,flags[,…];message\n[ KEY=value\n…]`.
pub fn parse_kmsg(b: &[u8]) -> Option<Kmsg<'_>> {
    let s = std::str::from_utf8(b).ok().or_else(|| {
        // Keep what is valid.
        let e = std::str::from_utf8(b).err()?.valid_up_to();
        std::str::from_utf8(&b[..e]).ok()
    })?;
    let (head, rest) = s.split_once(';')?;
    let mut f = head.split(',');
    let pf: u32 = f.next()?.parse().ok()?;
    let seq: u64 = f.next()?.parse().ok()?;
    let ts_us: u64 = f.next()?.parse().ok()?;
    let msg = rest.split('\n').next().unwrap_or("");
    Some(Kmsg { prio: (pf & 7) as u8, facility: (pf >> 3) as u8, seq, ts_us, msg })
}

impl Kmsg<'_> {
    /// The record this kernel log entry becomes, if any: kernel lines are
    /// `kmsg`; lines init wrote before hilogd ran (`name[pid]: text`,
    /// `init: text`) are the service's `core` or init's `init` records;
    /// init's console copies (facility daemon, 3) are skipped.
    pub fn into_record(self, offset_ns: i128) -> Option<Record> {
        let time_ns = (self.ts_us as i128 * 1000 + offset_ns).max(0) as u64;
        let level = Level::from_syslog(self.prio);
        let base = Record { seq: 0, time_ns, ty: LogType::Kmsg, level, domain: 0, pid: 0, tid: 0, uid: 0, tag: "kernel".into(), msg: String::new() };
        match self.facility {
            0 => Some(Record { msg: self.msg.into(), ..base }),
            3 => None,
            _ => {
                if let Some(text) = self.msg.strip_prefix("init: ") {
                    return Some(Record { ty: LogType::Init, pid: 1, tid: 1, tag: "init".into(), msg: text.into(), ..base });
                }
                if let Some((name, rest)) = self.msg.split_once("]: ") {
                    if let Some((svc, pid)) = name.split_once('[') {
                        if let Ok(pid) = pid.parse::<u32>() {
                            if !svc.is_empty() && !svc.contains(' ') {
                                let tag = crate::truncate_utf8(svc, crate::MAX_TAG).to_owned();
                                return Some(Record { ty: LogType::Core, pid, tid: pid, tag, msg: rest.into(), ..base });
                            }
                        }
                    }
                }
                Some(Record { ty: LogType::Core, tag: "kmsg".into(), msg: self.msg.into(), ..base })
            }
        }
    }
}

/// `hilogd [--input PATH --control PATH] [--kmsg PATH | --no-kmsg] [--rate N]`:
/// the daemon's command line (`args[0]` is the program) and its service
/// loop; returns only on a bad command line, missing sockets, or a failed
/// epoll. The program of both `hilogd` binaries (its own and `sa_main`'s).
pub fn main(args: Vec<String>) -> anyhow::Result<()> {
    use anyhow::{bail, Context};
    let mut cfg = Config::default();
    let (mut input, mut control) = (socket_from_init("hilogInput"), socket_from_init("hilogControl"));
    let mut it = args.iter().skip(1);
    while let Some(a) = it.next() {
        let mut path = || it.next().map(std::path::Path::new).with_context(|| format!("{a} needs a path"));
        match a.as_str() {
            "--input" => input = Some(listen_at(path()?).context("input socket")?),
            "--control" => control = Some(listen_at(path()?).context("control socket")?),
            "--kmsg" => cfg.kmsg = Some(path()?.to_owned()),
            "--no-kmsg" => cfg.kmsg = None,
            "--rate" => cfg.rate = it.next().and_then(|v| v.parse().ok()).context("--rate takes lines per second")?,
            other => bail!("unknown argument {other:?} (usage: hilogd [--input PATH --control PATH] [--kmsg PATH | --no-kmsg] [--rate N])"),
        }
    }
    let (Some(input), Some(control)) = (input, control) else {
        bail!("hilogd: no sockets: run it from init (hilogd.cfg) or give --input and --control");
    };
    let mut d = Daemon::new(cfg, input, control).context("hilogd")?;
    d.serve().context("hilogd: epoll failed")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_zero_byte_read_is_told_apart_by_asking_the_socket_now() {
        use nix::sys::socket::{socketpair, MsgFlags};
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::empty()).unwrap();
        // An empty packet from a writer still there: not a hang-up.
        socket::send(b.as_raw_fd(), b"", MsgFlags::empty()).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(recv_packet(a.as_raw_fd(), &mut buf).unwrap(), Some(0));
        assert!(!hung_up(a.as_raw_fd()));
        // The writer gone after epoll looked: the next zero-byte read is
        // its hang-up, whatever epoll said before.
        drop(b);
        assert_eq!(recv_packet(a.as_raw_fd(), &mut buf).unwrap(), Some(0));
        assert!(hung_up(a.as_raw_fd()));
    }

    #[test]
    fn kmsg_records_are_parsed_and_sorted_by_origin() {
        let k = parse_kmsg(b"6,339,5140900,-;NET: Registered protocol family 10\n SUBSYSTEM=net\n").unwrap();
        assert_eq!((k.prio, k.facility, k.seq, k.ts_us), (6, 0, 339, 5140900));
        let r = k.into_record(0).unwrap();
        assert_eq!((r.ty, r.level, r.tag.as_str(), r.msg.as_str()), (LogType::Kmsg, Level::Info, "kernel", "NET: Registered protocol family 10"));
        assert_eq!(r.time_ns, 5_140_900_000);
        let r = parse_kmsg(b"14,340,6000000,-;storage_daemon[77]: volume added\n").unwrap().into_record(0).unwrap();
        assert_eq!((r.ty, r.pid, r.tag.as_str(), r.msg.as_str()), (LogType::Core, 77, "storage_daemon", "volume added"));
        let r = parse_kmsg(b"12,341,6000000,-;init: service samgr started, pid 80\n").unwrap().into_record(0).unwrap();
        assert_eq!((r.ty, r.level, r.pid, r.msg.as_str()), (LogType::Init, Level::Warn, 1, "service samgr started, pid 80"));
        assert!(parse_kmsg(b"28,342,6000000,-;init: a console copy\n").unwrap().into_record(0).is_none());
        let r = parse_kmsg(b"14,343,1,-;some [odd]: line\n").unwrap().into_record(0).unwrap();
        assert_eq!((r.ty, r.tag.as_str()), (LogType::Core, "kmsg"));
        assert!(parse_kmsg(b"garbage").is_none());
        assert!(parse_kmsg(b"x,1,2;y").is_none());
    }
}
