//! The writer side: what every Accord process (and init) logs through.
//!
//! One connected `SOCK_SEQPACKET` socket to hilogd per process, made on
//! first use and again after a fork or after hilogd restarts. A send never
//! blocks: when the socket is full the record is dropped and counted, and
//! the count travels in the next record's header so the daemon announces
//! it. When hilogd cannot be reached the caller is told
//! ([`SendError::Unreachable`]) and falls back (the tracing layer writes the
//! line to stderr, which init relays); a failed connect is retried at most
//! once per [`RETRY`].

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, MsgFlags, SockFlag, SockType, UnixAddr};

use crate::wire::{self, Fields};
use crate::{Level, LogType};

/// Shortest time between two failed connection attempts.
pub const RETRY: Duration = Duration::from_secs(1);

/// Why a record was not handed to hilogd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// No connection (hilogd not running, or it went away): the caller
    /// should put the line somewhere else.
    Unreachable,
    /// The socket is full (hilogd is behind): the record was dropped and
    /// counted; the count reaches hilogd with the next record.
    Full,
}

/// A connection to hilogd, shared by a process's threads.
#[derive(Debug)]
pub struct Writer {
    path: PathBuf,
    inner: Mutex<Inner>,
    count_full: bool,
}

#[derive(Debug, Default)]
struct Inner {
    sock: Option<OwnedFd>,
    /// The pid that made `sock` (a forked child makes its own).
    pid: u32,
    last_failed: Option<Instant>,
    dropped: u32,
    buf: Vec<u8>,
}

/// What one record says; the time is taken at [`Writer::send`].
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub ty: LogType,
    pub level: Level,
    pub domain: u32,
    pub tag: &'a str,
    pub msg: &'a [u8],
    /// The pid the record is for; only init's is honoured (0: the sender).
    pub for_pid: u32,
}

/// The calling thread's kernel id.
pub fn gettid() -> u32 {
    thread_local! {
        // A thread keeps its id; a forked child's thread is a new thread
        // only for the kernel, so the cache is reset after a fork.
        static TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    let pid = current_pid();
    TID.with(|t| {
        let cached = t.get();
        if cached != 0 && LAST_PID_FOR_TID.with(|p| p.get()) == pid {
            return cached;
        }
        // SAFETY: gettid has no arguments and cannot fail.
        let tid = unsafe { libc::syscall(libc::SYS_gettid) as u32 };
        t.set(tid);
        LAST_PID_FOR_TID.with(|p| p.set(pid));
        tid
    })
}

thread_local! {
    static LAST_PID_FOR_TID: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

/// This process's pid without a system call per record: cached, and
/// refreshed in a forked child by a `pthread_atfork` handler.
pub fn current_pid() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static PID: AtomicU32 = AtomicU32::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    extern "C" fn forked() {
        PID.store(0, Ordering::Relaxed);
    }
    HOOK.call_once(|| {
        // SAFETY: registers a handler that only stores to an atomic.
        unsafe { libc::pthread_atfork(None, None, Some(forked)) };
    });
    match PID.load(Ordering::Relaxed) {
        0 => {
            let p = std::process::id();
            PID.store(p, Ordering::Relaxed);
            p
        }
        p => p,
    }
}

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl Writer {
    /// A writer for the socket at `path` (not connected until used).
    pub fn new(path: impl AsRef<Path>) -> Writer {
        Writer { path: path.as_ref().to_owned(), inner: Mutex::new(Inner::default()), count_full: true }
    }

    /// A writer whose caller keeps what a full socket refused (init puts
    /// it in the kernel log, where hilogd reads it): [`SendError::Full`] is
    /// then not counted as a drop.
    pub fn keeping_refused(mut self) -> Writer {
        self.count_full = false;
        self
    }

    /// The process's writer: [`crate::INPUT_SOCKET`], or the path in
    /// `ACCORD_HILOG_INPUT` (tests run a daemon of their own).
    pub fn global() -> &'static Writer {
        static W: OnceLock<Writer> = OnceLock::new();
        W.get_or_init(|| Writer::new(std::env::var_os("ACCORD_HILOG_INPUT").map(PathBuf::from).unwrap_or_else(|| crate::INPUT_SOCKET.into())))
    }

    /// Records dropped because the socket was full and not yet reported.
    pub fn dropped(&self) -> u32 {
        self.inner.lock().map(|i| i.dropped).unwrap_or(0)
    }

    fn ensure(&self, i: &mut Inner) -> bool {
        let pid = current_pid();
        if i.sock.is_some() && i.pid == pid {
            return true;
        }
        i.sock = None;
        if i.last_failed.is_some_and(|t| t.elapsed() < RETRY) {
            return false;
        }
        match connect(&self.path) {
            Ok(s) => {
                i.sock = Some(s);
                i.pid = pid;
                i.last_failed = None;
                true
            }
            Err(_) => {
                i.last_failed = Some(Instant::now());
                false
            }
        }
    }

    /// Sends one record without blocking.
    ///
    /// # Errors
    /// [`SendError::Unreachable`] when hilogd cannot be reached (the record
    /// is not counted as dropped: the caller keeps it), [`SendError::Full`]
    /// when the socket is full (dropped and counted).
    pub fn send(&self, r: &Record<'_>) -> Result<(), SendError> {
        let Ok(mut guard) = self.inner.lock() else { return Err(SendError::Unreachable) };
        let i = &mut *guard;
        if !self.ensure(i) {
            return Err(SendError::Unreachable);
        }
        let fields = Fields {
            ty: r.ty,
            level: r.level,
            domain: r.domain,
            tid: gettid(),
            for_pid: r.for_pid,
            dropped: i.dropped,
            time_ns: now_ns(),
            tag: r.tag,
            msg: r.msg,
        };
        let mut buf = std::mem::take(&mut i.buf);
        wire::encode(&fields, &mut buf);
        let res = match &i.sock {
            Some(s) => socket::send(s.as_raw_fd(), &buf, MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL),
            None => Err(Errno::ENOTCONN),
        };
        i.buf = buf;
        match res {
            Ok(_) => {
                i.dropped = 0;
                Ok(())
            }
            Err(Errno::EAGAIN) | Err(Errno::ENOBUFS) => {
                if self.count_full {
                    i.dropped = i.dropped.saturating_add(1);
                }
                Err(SendError::Full)
            }
            Err(_) => {
                // hilogd went away: reconnect on the next record.
                i.sock = None;
                Err(SendError::Unreachable)
            }
        }
    }
}

/// Connects a non-blocking, close-on-exec `SOCK_SEQPACKET` socket to `path`.
pub fn connect(path: &Path) -> nix::Result<OwnedFd> {
    let fd = socket::socket(AddressFamily::Unix, SockType::SeqPacket, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK, None)?;
    let addr = UnixAddr::new(path)?;
    socket::connect(fd.as_raw_fd(), &addr)?;
    Ok(fd)
}
