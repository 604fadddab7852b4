//! A raw Wayland client for hostile tests: it writes requests byte by
//! byte (any object, opcode or argument, descriptors passed with
//! SCM_RIGHTS) and reads events, so it can break the protocol on purpose.

#![allow(dead_code)]

pub mod input;
pub mod thread;

use std::{
    collections::HashMap,
    io::{ErrorKind, Read},
    os::{
        fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixStream,
    },
    path::Path,
    time::{Duration, Instant},
};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// A request argument.
pub enum Arg<'a> {
    U(u32),
    I(i32),
    S(&'a str),
    /// Sent as ancillary data, not in the byte stream.
    Fd(RawFd),
}

/// An event: object, opcode, argument bytes.
#[derive(Debug, Clone)]
pub struct Event {
    pub object: u32,
    pub opcode: u16,
    pub args: Vec<u8>,
}

impl Event {
    pub fn u32_at(&self, i: usize) -> u32 {
        u32::from_ne_bytes(self.args[i * 4..i * 4 + 4].try_into().expect("4 bytes"))
    }
}

/// Why a round trip did not complete.
#[derive(Debug)]
pub enum Gone {
    /// The compositor closed the connection (after these events).
    Disconnected(Vec<Event>),
    /// Nothing in time.
    Timeout,
}

pub struct RawClient {
    pub stream: UnixStream,
    next_id: u32,
    inbuf: Vec<u8>,
    /// interface -> (name, version), from the registry.
    pub globals: HashMap<String, (u32, u32)>,
    pub registry: u32,
    /// Every event read, when set to `Some` (tests that must not miss one
    /// a round trip skipped over).
    pub history: Option<Vec<Event>>,
}

impl RawClient {
    /// Connects and reads the registry.
    /// A client on an already connected stream, without a registry.
    pub fn from_stream(stream: UnixStream) -> RawClient {
        RawClient { stream, next_id: 2, inbuf: Vec::new(), globals: HashMap::new(), registry: 0, history: None }
    }

    pub fn connect(path: &Path) -> RawClient {
        let stream = UnixStream::connect(path).unwrap_or_else(|e| panic!("connecting to {}: {e}", path.display()));
        let mut c = RawClient { stream, next_id: 2, inbuf: Vec::new(), globals: HashMap::new(), registry: 0, history: None };
        c.registry = c.new_id();
        c.send(1, 1, &[Arg::U(c.registry)]);
        let events = c.roundtrip().expect("registry round trip");
        for e in events.iter().filter(|e| e.object == c.registry && e.opcode == 0) {
            let name = e.u32_at(0);
            let len = e.u32_at(1) as usize;
            let iface = String::from_utf8_lossy(&e.args[8..8 + len - 1]).into_owned();
            let version_at = 8 + len.div_ceil(4) * 4;
            let version = u32::from_ne_bytes(e.args[version_at..version_at + 4].try_into().unwrap());
            c.globals.insert(iface, (name, version));
        }
        c
    }

    pub fn new_id(&mut self) -> u32 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Binds a global at `version` (at most what is advertised); its id.
    pub fn bind(&mut self, interface: &str, version: u32) -> u32 {
        let (name, max) = *self.globals.get(interface).unwrap_or_else(|| panic!("no {interface} global"));
        let id = self.new_id();
        self.send(self.registry, 0, &[Arg::U(name), Arg::S(interface), Arg::U(version.min(max)), Arg::U(id)]);
        id
    }

    /// Sends one request; `Err` if the socket is closed or full (a
    /// non-blocking write is never used: this blocks up to the timeout).
    pub fn try_send(&mut self, object: u32, opcode: u16, args: &[Arg]) -> std::io::Result<()> {
        let mut body = Vec::new();
        let mut fds = Vec::new();
        for a in args {
            match a {
                Arg::U(v) => body.extend_from_slice(&v.to_ne_bytes()),
                Arg::I(v) => body.extend_from_slice(&v.to_ne_bytes()),
                Arg::S(s) => {
                    body.extend_from_slice(&(s.len() as u32 + 1).to_ne_bytes());
                    body.extend_from_slice(s.as_bytes());
                    body.push(0);
                    while !body.len().is_multiple_of(4) {
                        body.push(0);
                    }
                }
                Arg::Fd(fd) => fds.push(*fd),
            }
        }
        let mut msg = Vec::with_capacity(8 + body.len());
        msg.extend_from_slice(&object.to_ne_bytes());
        msg.extend_from_slice(&((((8 + body.len()) as u32) << 16) | u32::from(opcode)).to_ne_bytes());
        msg.extend_from_slice(&body);
        self.send_bytes(&msg, &fds)
    }

    pub fn send(&mut self, object: u32, opcode: u16, args: &[Arg]) {
        self.try_send(object, opcode, args).expect("sending a request");
    }

    /// Writes `bytes` with `fds` attached to the first chunk.
    pub fn send_bytes(&mut self, bytes: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
        let mut sent = 0;
        let mut fds = fds;
        while sent < bytes.len() {
            let mut iov = libc::iovec { iov_base: bytes[sent..].as_ptr() as *mut _, iov_len: bytes.len() - sent };
            // SAFETY: CMSG_SPACE is arithmetic.
            let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
            let mut cbuf = vec![0u8; space.max(1)];
            // SAFETY: msghdr, iovec and control buffer all live across sendmsg.
            let n = unsafe {
                let mut msg: libc::msghdr = std::mem::zeroed();
                msg.msg_iov = &mut iov;
                msg.msg_iovlen = 1;
                if !fds.is_empty() {
                    msg.msg_control = cbuf.as_mut_ptr().cast();
                    msg.msg_controllen = space as _;
                    let cmsg = libc::CMSG_FIRSTHDR(&msg);
                    (*cmsg).cmsg_level = libc::SOL_SOCKET;
                    (*cmsg).cmsg_type = libc::SCM_RIGHTS;
                    (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
                    std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast::<RawFd>(), fds.len());
                }
                libc::sendmsg(self.stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            sent += n as usize;
            fds = &[];
        }
        Ok(())
    }

    /// The next event, `Ok(None)` at end of stream.
    fn next_event(&mut self, deadline: Instant) -> Result<Option<Event>, Gone> {
        loop {
            if self.inbuf.len() >= 8 {
                let object = u32::from_ne_bytes(self.inbuf[0..4].try_into().unwrap());
                let word = u32::from_ne_bytes(self.inbuf[4..8].try_into().unwrap());
                let size = (word >> 16) as usize;
                if size >= 8 && self.inbuf.len() >= size {
                    let args = self.inbuf[8..size].to_vec();
                    self.inbuf.drain(..size);
                    let event = Event { object, opcode: word as u16, args };
                    if let Some(history) = &mut self.history {
                        history.push(event.clone());
                    }
                    return Ok(Some(event));
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Gone::Timeout);
            }
            self.stream.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 65536];
            match self.stream.read(&mut buf) {
                Ok(0) => return Ok(None),
                Ok(n) => self.inbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return Ok(None),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(Gone::Timeout),
                Err(e) => panic!("reading events: {e}"),
            }
        }
    }

    /// wl_display.sync and waits for its done; every event before it.
    pub fn roundtrip(&mut self) -> Result<Vec<Event>, Gone> {
        let cb = self.new_id();
        if self.try_send(1, 0, &[Arg::U(cb)]).is_err() {
            return Err(Gone::Disconnected(Vec::new()));
        }
        let deadline = Instant::now() + DEADLINE;
        let mut events = Vec::new();
        loop {
            match self.next_event(deadline)? {
                None => return Err(Gone::Disconnected(events)),
                Some(e) if e.object == cb && e.opcode == 0 => return Ok(events),
                Some(e) => events.push(e),
            }
        }
    }

    /// Waits for an event matching `want`; the events before it.
    pub fn wait_for(&mut self, mut want: impl FnMut(&Event) -> bool) -> Result<Event, Gone> {
        let deadline = Instant::now() + DEADLINE;
        let mut events = Vec::new();
        loop {
            match self.next_event(deadline)? {
                None => return Err(Gone::Disconnected(events)),
                Some(e) if want(&e) => return Ok(e),
                Some(e) => events.push(e),
            }
        }
    }
}

/// A memfd of `len` bytes.
pub fn memfd(len: u64) -> OwnedFd {
    // SAFETY: memfd_create with a static NUL-terminated name.
    let fd = unsafe { libc::memfd_create(c"hostile".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
    // SAFETY: a new descriptor owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ftruncate on a descriptor we own.
    assert_eq!(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) }, 0);
    fd
}

/// Open descriptors of process `pid` (`self` for this one).
pub fn fd_count(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// User + system CPU time of process `pid`, in clock ticks.
pub fn cpu_ticks(pid: &str) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0) + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0)
}

/// Object ids of a toplevel made by [`toplevel`].
pub struct Toplevel {
    pub surface: u32,
    pub xdg_surface: u32,
    pub toplevel: u32,
}

/// wl_surface + xdg_surface + xdg_toplevel, committed, first configure
/// acked.
pub fn toplevel(c: &mut RawClient, compositor: u32, wm_base: u32) -> Toplevel {
    let surface = c.new_id();
    c.send(compositor, 0, &[Arg::U(surface)]);
    let xdg_surface = c.new_id();
    c.send(wm_base, 2, &[Arg::U(xdg_surface), Arg::U(surface)]);
    let tl = c.new_id();
    c.send(xdg_surface, 1, &[Arg::U(tl)]);
    c.send(surface, 6, &[]);
    let configure = c.wait_for(|e| e.object == xdg_surface && e.opcode == 0).expect("xdg_surface.configure");
    c.send(xdg_surface, 4, &[Arg::U(configure.u32_at(0))]);
    Toplevel { surface, xdg_surface, toplevel: tl }
}

/// An xdg_positioner: a 10x10 popup anchored on a 5x5 rectangle at its
/// parent's origin.
pub fn positioner(c: &mut RawClient, wm_base: u32) -> u32 {
    let positioner = c.new_id();
    c.send(wm_base, 1, &[Arg::U(positioner)]);
    c.send(positioner, 1, &[Arg::I(10), Arg::I(10)]);
    c.send(positioner, 2, &[Arg::I(0), Arg::I(0), Arg::I(5), Arg::I(5)]);
    positioner
}

/// wl_surface + xdg_surface + xdg_popup with `parent` (an xdg_surface, or
/// 0 for none), committed: (surface, xdg_surface, xdg_popup).
pub fn popup(c: &mut RawClient, compositor: u32, wm_base: u32, parent: u32, positioner: u32) -> (u32, u32, u32) {
    let surface = c.new_id();
    c.send(compositor, 0, &[Arg::U(surface)]);
    let xs = c.new_id();
    c.send(wm_base, 2, &[Arg::U(xs), Arg::U(surface)]);
    let popup = c.new_id();
    c.send(xs, 2, &[Arg::U(popup), Arg::U(parent), Arg::U(positioner)]);
    c.send(surface, 6, &[]);
    (surface, xs, popup)
}

/// A child process killed and reaped on drop.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A memfd of `width` x `height` XRGB8888 pixels, a wl_shm_pool over all of
/// it and one wl_buffer covering it.
pub struct ShmBuffer {
    /// The pool's file (the test keeps it open; it may shrink it).
    pub fd: OwnedFd,
    pub pool: u32,
    pub buffer: u32,
}

/// Makes a [`ShmBuffer`] through `shm`.
pub fn shm_buffer(c: &mut RawClient, shm: u32, width: i32, height: i32) -> ShmBuffer {
    let size = width * height * 4;
    let fd = memfd(size as u64);
    let pool = c.new_id();
    c.send(shm, 0, &[Arg::U(pool), Arg::Fd(fd.as_raw_fd()), Arg::I(size)]);
    let buffer = c.new_id();
    c.send(pool, 0, &[Arg::U(buffer), Arg::I(0), Arg::I(width), Arg::I(height), Arg::I(width * 4), Arg::U(1)]);
    ShmBuffer { fd, pool, buffer }
}

/// Starts Debian's weston-simple-shm on `display` (a socket name in
/// `dir`, its XDG_RUNTIME_DIR), its protocol log (WAYLAND_DEBUG) going to
/// the path returned.
pub fn spawn_simple_shm(dir: &Path, display: &str) -> (KillOnDrop, std::path::PathBuf) {
    let log = dir.join("client.log");
    let child = std::process::Command::new(SIMPLE_SHM)
        .env("XDG_RUNTIME_DIR", dir)
        .env("WAYLAND_DISPLAY", display)
        .env("WAYLAND_DEBUG", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("client log"))
        .spawn()
        .expect("spawning weston-simple-shm");
    (KillOnDrop(child), log)
}

/// How many frames a client asked for, from its WAYLAND_DEBUG log: each
/// request after the first answers a frame callback.
pub fn frames_requested(log: &str) -> usize {
    log.lines().filter(|l| l.contains("-> wl_surface@") && l.contains(".frame(")).count()
}

/// Debian's stock demo client.
pub const SIMPLE_SHM: &str = "/usr/bin/weston-simple-shm";
