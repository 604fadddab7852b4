//! The parameter service inside init: the socket protocol, permission
//! checks with the caller's SO_PEERCRED identity, waits and watches, and
//! what setting a parameter does (control parameters, `param:` jobs, boot
//! events, persistence).
//!
//! Every resource a client can make PID 1 hold is bounded (see the
//! constants and ARCHITECTURE.md's invariants): connections (total and per
//! uid), buffered input and output, requests and bytes handled per loop
//! turn, one pending `Wait` with its timer, watches, parameters created.
//! Wakeups are queued and handled by the loop, never by recursion.

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use accord_param::dac::{Caller, Op};
use accord_param::proto::{encode_frame, ErrorKind, FrameDecoder, Request, Response, MAX_FRAME};
use accord_param::store::Setter;
use accord_param::ParamError;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tracing::{debug, error, info, warn};

use super::{Init, PowerCmd, TimerKind, READ_BUDGET, TOK_PARAM_CLIENT, TOK_PARAM_LISTEN, TOK_PERSIST};
use crate::trace::boottime_us;

/// Replies queued beyond this drop the client: init never waits for one.
const MAX_OUTBUF: usize = 1 << 20;
/// Output queued for a connection whose unwritten bytes are all watch
/// notifications (`Changed`): a watcher that does not read is dropped long
/// before a client whose own replies wait.
const MAX_WATCH_OUTBUF: usize = 64 << 10;
/// Output queued for all non-root clients together. Root's connections
/// are not counted (each keeps [`MAX_OUTBUF`]), so root is always served.
pub(super) const MAX_OUT_TOTAL: usize = 16 << 20;
/// Output queued for all connections of one non-root uid: its share of
/// [`MAX_OUT_TOTAL`].
pub(super) const MAX_OUT_PER_UID: usize = 4 << 20;
/// An output buffer with more room than this that holds less than a
/// quarter of it is shrunk: a drained buffer does not keep the memory of
/// its peak.
const OUTBUF_KEEP: usize = 64 << 10;
/// Input buffered per client, in bytes: two whole frames. A client that
/// sends more than that without its requests being handled (e.g. behind a
/// pending `Wait`) is dropped.
pub(super) const MAX_INBUF: usize = 2 * (4 + MAX_FRAME);
/// Requests handled per client per loop turn; the rest wait for the next.
const FRAMES_PER_TURN: usize = 64;
/// Connections accepted per loop turn.
const ACCEPTS_PER_TURN: usize = 64;
/// Most clients at once (lowered to fit RLIMIT_NOFILE, see [`client_cap`]).
pub(super) const MAX_CLIENTS: usize = 4096;
/// Most connections one non-root uid may hold: its share of the clients.
pub(super) const MAX_CLIENTS_PER_UID: usize = 1024;
/// Connections of the cap that only root may use, so that no crowd of
/// users can lock root out.
pub(super) const ROOT_RESERVE: usize = 64;
/// Descriptors kept free for everything else init opens.
pub(super) const FD_RESERVE: usize = 256;
/// Watches per connection.
const MAX_WATCHES: usize = 64;
/// Longest `Wait`, in milliseconds (one day); longer ones are clamped.
const MAX_WAIT_MS: u64 = 24 * 3600 * 1000;
/// After EMFILE/ENFILE on accept, the listener rests this long (or until a
/// client leaves) instead of waking the loop again at once.
const ACCEPT_PAUSE: Duration = Duration::from_millis(250);

/// The client cap for a descriptor limit of `nofile`: below it by
/// [`FD_RESERVE`], at most [`MAX_CLIENTS`].
pub(super) fn client_cap(nofile: u64) -> usize {
    (nofile as usize).saturating_sub(FD_RESERVE).clamp(ROOT_RESERVE + 16, MAX_CLIENTS)
}

/// What holds a client's next requests back.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Hold {
    /// A `Wait` (id, name, pattern), with a `WaitTimeout` timer.
    Wait(u64, String, String),
    /// A `persist.*` set or `Save`: answered when the batch holding it is
    /// on disk.
    Persist,
}

pub struct ParamClient {
    /// Unique per connection (fds are reused).
    id: u64,
    stream: UnixStream,
    caller: Caller,
    pid: i32,
    /// The start time of the process that held `pid` when the connection
    /// was accepted (None: no such process then, or a root caller, whose
    /// pid is never checked). Trusting the pid later (a `bootevent.*` set)
    /// needs the process holding it then to be this one: the connecting
    /// process may have exited and its pid been reused.
    start: Option<u64>,
    decoder: FrameDecoder,
    /// Bytes not yet written to the socket.
    out: Vec<u8>,
    /// How many of the first bytes of `out` end a reply to a request (the
    /// rest are watch notifications): 0 when only notifications wait.
    out_replies: usize,
    /// `out.len()` as counted in [`OutBudget`].
    out_counted: usize,
    watches: Vec<String>,
    hold: Option<Hold>,
    want_write: bool,
}

/// The DAC name a `DumpServices` request is checked under (as a write).
const DUMP_SERVICES_KEY: &str = "ohos.servicectrl.dump";

/// Counters for `Request::Stats` (and the log).
#[derive(Debug, Default)]
pub(super) struct Counters {
    refused: u64,
    dropped_input: u64,
    dropped_output: u64,
    accept_pauses: u64,
    persist_batches: u64,
    persist_sets: u64,
    persist_failures: u64,
}

/// Output queued for non-root clients, in all and per uid (root's is not
/// counted): bounded by [`MAX_OUT_TOTAL`] and [`MAX_OUT_PER_UID`].
#[derive(Debug, Default)]
pub(super) struct OutBudget {
    total: usize,
    per_uid: std::collections::HashMap<u32, usize>,
}

impl OutBudget {
    /// A client of `uid` now holds `now` bytes where it held `before`.
    fn update(&mut self, uid: u32, before: usize, now: usize) {
        if uid == 0 || before == now {
            return;
        }
        self.total = self.total + now - before;
        let mine = self.per_uid.entry(uid).or_insert(0);
        *mine = *mine + now - before;
        if *mine == 0 {
            self.per_uid.remove(&uid);
        }
    }
}

/// `persist.*` writes: coalesced batches, each written and fsynced by a
/// forked child so that PID 1's loop never waits for the disk. A client's
/// set is answered once the batch holding it is on disk.
#[derive(Debug, Default)]
pub(super) struct PersistState {
    /// Something changed since the last batch started.
    dirty: bool,
    /// Clients to answer when the next batch is on disk: (fd, client id).
    next_waiters: Vec<(RawFd, u64)>,
    in_flight: Option<InFlight>,
}

#[derive(Debug)]
struct InFlight {
    pid: i32,
    /// Read end of the child's status pipe (one byte: 0 or an errno).
    pipe: OwnedFd,
    waiters: Vec<(RawFd, u64)>,
}

fn error_response(e: &ParamError) -> Response {
    Response::Error { kind: ErrorKind::from(e), message: e.to_string() }
}

impl Init {
    pub(super) fn accept_clients(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((stream, _)) => self.add_client(stream),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)) => {
                    // The pending connection stays queued and the listener
                    // readable: stop polling it instead of spinning.
                    self.pause_accept(&e);
                    return;
                }
                Err(e) => {
                    warn!("parameter service: accept: {e}");
                    return;
                }
            }
        }
    }

    fn pause_accept(&mut self, e: &std::io::Error) {
        if self.listener_paused {
            return;
        }
        let Some(l) = &self.listener else { return };
        let _ = self.epoll.delete(l.as_fd());
        self.listener_paused = true;
        self.param_counters.accept_pauses += 1;
        warn!("parameter service: accept: {e}; not accepting until a client leaves or {ACCEPT_PAUSE:?} pass ({} clients)", self.clients.len());
        self.add_timer(ACCEPT_PAUSE, TimerKind::ResumeAccept);
    }

    pub(super) fn resume_accept(&mut self) {
        if !self.listener_paused {
            return;
        }
        let Some(l) = &self.listener else { return };
        if self.epoll.add(l.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_PARAM_LISTEN)).is_ok() {
            self.listener_paused = false;
        }
    }

    fn refuse(&mut self, mut stream: UnixStream, uid: u32, pid: i32, why: String) {
        self.param_counters.refused += 1;
        let n = self.param_counters.refused;
        // Logged at powers of two: a flood must not flood the log.
        if n.is_power_of_two() {
            warn!("parameter service: refused pid {pid} uid {uid}: {why} ({n} refused so far)");
        }
        let resp = Response::Error { kind: ErrorKind::ResourceLimit, message: why };
        let _ = stream.write(&encode_frame(&resp));
    }

    fn add_client(&mut self, stream: UnixStream) {
        let _ = stream.set_nonblocking(true);
        let (uid, gid, pid) = match getsockopt(&stream, PeerCredentials) {
            Ok(c) => (c.uid(), c.gid(), c.pid()),
            Err(e) => {
                warn!("parameter service: no peer credentials: {e}");
                return;
            }
        };
        // Non-root clients together leave ROOT_RESERVE connections to root.
        let (held, cap) = if uid == 0 {
            (self.clients.len(), self.client_cap)
        } else {
            (self.clients.len() - self.clients_per_uid.get(&0).copied().unwrap_or(0), self.client_cap - ROOT_RESERVE)
        };
        if held >= cap {
            let why = format!("the parameter service holds its maximum of {cap} connections{}", if uid == 0 { "" } else { " for non-root users" });
            return self.refuse(stream, uid, pid, why);
        }
        let mine = self.clients_per_uid.get(&uid).copied().unwrap_or(0);
        if uid != 0 && mine >= MAX_CLIENTS_PER_UID {
            let why = format!("uid {uid} holds its share of {MAX_CLIENTS_PER_UID} connections to the parameter service");
            return self.refuse(stream, uid, pid, why);
        }
        // From the kernel, as of connect(2): never /proc after the fact.
        let groups = match accord_param::cred::peer_groups(stream.as_fd()) {
            Ok(g) => g,
            Err(e) => {
                warn!("parameter service: no SO_PEERGROUPS for pid {pid} uid {uid} ({e}); only its primary group counts");
                Vec::new()
            }
        };
        // Who `pid` is (its start time): a pid alone names a process only
        // until it exits. Only a non-root caller's pid is ever checked (a
        // boot event), so root's connections skip the /proc read.
        let start = if uid == 0 { None } else { accord_param::cred::start_time(pid) };
        let fd = stream.as_raw_fd();
        if let Err(e) = self.epoll.add(stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_PARAM_CLIENT | fd as u64)) {
            warn!("parameter service: cannot watch pid {pid}'s connection: {e}");
            return;
        }
        self.next_client_id += 1;
        *self.clients_per_uid.entry(uid).or_insert(0) += 1;
        let c = ParamClient {
            id: self.next_client_id,
            stream,
            caller: Caller { uid, gid, groups },
            pid,
            start,
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            out_replies: 0,
            out_counted: 0,
            watches: Vec::new(),
            hold: None,
            want_write: false,
        };
        self.clients.insert(fd, c);
    }

    /// Forgets a client and everything it holds: its wait timer, its place
    /// in the uid share; a paused listener may accept again.
    fn drop_client(&mut self, fd: RawFd) {
        let Some(c) = self.clients.remove(&fd) else { return };
        let _ = self.epoll.delete(c.stream.as_fd());
        self.out_budget.update(c.caller.uid, c.out_counted, 0);
        if let Some(n) = self.clients_per_uid.get_mut(&c.caller.uid) {
            *n -= 1;
            if *n == 0 {
                self.clients_per_uid.remove(&c.caller.uid);
            }
        }
        if let Some(Hold::Wait(wait_id, ..)) = c.hold {
            let gone = TimerKind::WaitTimeout { fd, wait_id };
            self.timers.retain(|t| t.0 .2 != gone);
        }
        // The descriptor number may be reused by the next accept: nothing
        // queued for this client may reach that one. (An epoll event of
        // this batch still naming the number only makes the next client
        // try a non-blocking read or flush: harmless.)
        self.ready.retain(|&r| r != fd);
        self.resume_accept();
    }

    pub(super) fn client_event(&mut self, fd: RawFd, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush_client(fd);
        }
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            self.read_client(fd);
        }
    }

    /// Reads at most [`READ_BUDGET`] bytes (the rest is still readable next
    /// turn: epoll is level-triggered), then handles requests. A client
    /// whose requests can go on is read only while less than one whole
    /// frame is buffered (it waits in the kernel: back-pressure); one held
    /// by a pending request is read on, and dropped past [`MAX_INBUF`].
    fn read_client(&mut self, fd: RawFd) {
        let mut buf = [0u8; 8192];
        let mut eof = false;
        let mut overflow = false;
        let Some(c) = self.clients.get_mut(&fd) else { return };
        let mut budget = if c.hold.is_some() { READ_BUDGET } else { READ_BUDGET.min((4 + MAX_FRAME).saturating_sub(c.decoder.buffered())) };
        while budget > 0 {
            match std::io::Read::read(&mut c.stream, &mut buf[..budget.min(8192)]) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    budget -= n;
                    c.decoder.push(&buf[..n]);
                    if c.decoder.buffered() > MAX_INBUF {
                        overflow = true;
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        if overflow {
            let (pid, uid, held) = (c.pid, c.caller.uid, c.hold.is_some());
            self.param_counters.dropped_input += 1;
            warn!(
                "parameter service: pid {pid} uid {uid} sent more than {MAX_INBUF} bytes{}; dropping it",
                if held { " behind a pending request" } else { "" }
            );
            let resp = Response::Error { kind: ErrorKind::ResourceLimit, message: format!("more than {MAX_INBUF} bytes of requests buffered") };
            let _ = c.stream.write(&encode_frame(&resp));
            self.drop_client(fd);
            return;
        }
        if eof {
            // The peer is gone: what it sent is bounded by MAX_INBUF.
            self.process_frames(fd, usize::MAX);
            self.drop_client(fd);
        } else if !self.ready.contains(&fd) {
            // (A client on the ready queue gets its turn there.)
            self.process_frames(fd, FRAMES_PER_TURN);
        }
    }

    /// Handles up to `max` complete requests in order; a held request
    /// stops the rest. Leftovers put the client on the ready queue.
    fn process_frames(&mut self, fd: RawFd, max: usize) {
        let mut handled = 0;
        loop {
            let frame = {
                let Some(c) = self.clients.get_mut(&fd) else { return };
                if c.hold.is_some() {
                    return;
                }
                if handled >= max {
                    if c.decoder.buffered() >= 4 && !self.ready.contains(&fd) {
                        self.ready.push_back(fd);
                    }
                    return;
                }
                match c.decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => return,
                    Err(e) => {
                        warn!("parameter service: garbage from pid {} uid {}: {e}; dropping the connection", c.pid, c.caller.uid);
                        let resp = Response::Error { kind: ErrorKind::Protocol, message: e.to_string() };
                        let _ = c.stream.write_all(&encode_frame(&resp));
                        self.drop_client(fd);
                        return;
                    }
                }
            };
            handled += 1;
            let req: Request = match serde_json::from_slice(&frame) {
                Ok(r) => r,
                Err(e) => {
                    let (pid, uid) = self.clients.get(&fd).map(|c| (c.pid, c.caller.uid)).unwrap_or((0, 0));
                    warn!("parameter service: bad request from pid {pid} uid {uid}: {e}");
                    self.reply(fd, &Response::Error { kind: ErrorKind::Protocol, message: format!("bad request: {e}") });
                    continue;
                }
            };
            if let Some(resp) = self.handle_request(fd, req) {
                self.reply(fd, &resp);
            }
        }
    }

    /// Clients with requests left over or just released from a hold, one
    /// turn's worth each (the loop calls this once per turn).
    pub(super) fn serve_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(fd) = self.ready.pop_front() else { break };
            self.process_frames(fd, FRAMES_PER_TURN);
        }
    }

    fn handle_request(&mut self, fd: RawFd, req: Request) -> Option<Response> {
        let (caller, pid, start) = self.clients.get(&fd).map(|c| (c.caller.clone(), c.pid, c.start))?;
        debug!("param request from uid {}: {req:?}", caller.uid);
        let resp = match req {
            Request::Get { name } => match self.dac.check(&name, &caller, Op::Read) {
                Err(e) => error_response(&e),
                Ok(()) => match self.params.get(&name) {
                    Some(v) => Response::Value { value: v.to_owned() },
                    None => error_response(&ParamError::NotFound { name }),
                },
            },
            Request::Set { name, value } => match self.set_checked(&name, &value, &caller, pid, start) {
                Ok(false) => Response::Ok,
                Ok(true) => {
                    // Answered when the value is on disk.
                    self.hold_for_persist(fd);
                    self.start_persist_batch();
                    return None;
                }
                Err(e) => {
                    info!("param set {name} by uid {} refused: {e}", caller.uid);
                    error_response(&e)
                }
            },
            // One page: a reply always fits in a frame.
            Request::List { prefix, after } => {
                let readable = self.params.list_after(&prefix, after.as_deref()).filter(|(k, _)| self.dac.check(k, &caller, Op::Read).is_ok());
                let (entries, more) = accord_param::proto::page(readable.map(|(k, v)| (k.to_owned(), v.to_owned())));
                Response::List { entries, more }
            }
            Request::Wait { name, pattern, timeout_ms } => {
                if let Err(e) = self.dac.check(&name, &caller, Op::Read) {
                    return Some(error_response(&e));
                }
                let matched = self.params.get(&name).is_some_and(|v| accord_param::value_matches(&pattern, v));
                if matched {
                    Response::Ok
                } else {
                    let id = self.next_wait_id;
                    self.next_wait_id += 1;
                    if let Some(c) = self.clients.get_mut(&fd) {
                        c.hold = Some(Hold::Wait(id, name, pattern));
                    }
                    self.add_timer(Duration::from_millis(timeout_ms.min(MAX_WAIT_MS)), TimerKind::WaitTimeout { fd, wait_id: id });
                    return None;
                }
            }
            Request::Watch { prefix } => match self.dac.check(&prefix, &caller, Op::Watch) {
                Err(e) => error_response(&e),
                Ok(()) => match self.clients.get_mut(&fd) {
                    Some(c) if c.watches.len() >= MAX_WATCHES => {
                        error_response(&ParamError::LimitReached { name: prefix, why: format!("a connection may hold at most {MAX_WATCHES} watches") })
                    }
                    Some(c) => {
                        c.watches.push(prefix);
                        Response::Ok
                    }
                    None => return None,
                },
            },
            Request::Save => {
                if caller.uid != 0 {
                    error_response(&ParamError::PermissionDenied { name: "persist.*".into(), op: "save".into() })
                } else if self.persist_loaded {
                    self.persist.dirty = true;
                    self.hold_for_persist(fd);
                    self.start_persist_batch();
                    return None;
                } else {
                    Response::Ok
                }
            }
            // Services' command lines, users and pids are for root and the
            // service-control group: checked as a write of
            // `ohos.servicectrl.dump` (OpenHarmony's dump is under the same
            // control permission).
            Request::DumpServices { name, skip } => match self.dac.check(DUMP_SERVICES_KEY, &caller, Op::Write) {
                Ok(()) => {
                    let (services, more) = accord_param::proto::page(self.service_infos(name.as_deref()).into_iter().skip(skip));
                    Response::Services { services, more }
                }
                Err(_) => {
                    error_response(&ParamError::PermissionDenied { name: format!("the service list (checked as {DUMP_SERVICES_KEY})"), op: "read".into() })
                }
            },
            Request::Stats => {
                if caller.uid != 0 {
                    error_response(&ParamError::PermissionDenied { name: "parameter service statistics".into(), op: "read".into() })
                } else {
                    Response::Stats { stats: self.param_stats() }
                }
            }
        };
        Some(resp)
    }

    fn param_stats(&self) -> Vec<(String, u64)> {
        let c = &self.param_counters;
        let waits = self.clients.values().filter(|c| matches!(c.hold, Some(Hold::Wait(..)))).count();
        let wait_timers = self.timers.iter().filter(|t| matches!(t.0 .2, TimerKind::WaitTimeout { .. })).count();
        let stats = [
            ("clients", self.clients.len() as u64),
            ("client_cap", self.client_cap as u64),
            ("waits", waits as u64),
            ("wait_timers", wait_timers as u64),
            ("watches", self.clients.values().map(|c| c.watches.len()).sum::<usize>() as u64),
            ("buffered_in", self.clients.values().map(|c| c.decoder.buffered()).sum::<usize>() as u64),
            ("buffered_out", self.clients.values().map(|c| c.out.len()).sum::<usize>() as u64),
            ("buffered_out_non_root", self.out_budget.total as u64),
            ("params", self.params.len() as u64),
            ("params_by_clients", self.params.created_by_clients() as u64),
            ("refused", c.refused),
            ("dropped_input", c.dropped_input),
            ("dropped_output", c.dropped_output),
            ("accept_pauses", c.accept_pauses),
            ("persist_batches", c.persist_batches),
            ("persist_sets", c.persist_sets),
            ("persist_failures", c.persist_failures),
        ];
        stats.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    fn reply(&mut self, fd: RawFd, resp: &Response) {
        self.queue(fd, &encode_frame(resp), true);
    }

    /// Queues a frame (a reply to a request, or a watch notification) and
    /// writes what the socket takes. A client left holding more than its
    /// bound is dropped (hung up), never buffered further: a connection
    /// [`MAX_OUTBUF`], or [`MAX_WATCH_OUTBUF`] when only notifications
    /// wait; a non-root client also when its uid holds more than
    /// [`MAX_OUT_PER_UID`] or all non-root clients more than
    /// [`MAX_OUT_TOTAL`].
    fn queue(&mut self, fd: RawFd, frame: &[u8], is_reply: bool) {
        let Some(c) = self.clients.get_mut(&fd) else { return };
        c.out.extend_from_slice(frame);
        if is_reply {
            c.out_replies = c.out.len();
        }
        self.flush_client(fd);
        let Some(c) = self.clients.get(&fd) else { return };
        let (pending, uid) = (c.out.len(), c.caller.uid);
        if pending == 0 {
            return;
        }
        let over = if c.out_replies == 0 && pending > MAX_WATCH_OUTBUF {
            Some(format!("{MAX_WATCH_OUTBUF} bytes of unread watch notifications on one connection"))
        } else if pending > MAX_OUTBUF {
            Some(format!("{MAX_OUTBUF} bytes of unread replies on one connection"))
        } else if uid != 0 && self.out_budget.per_uid.get(&uid).copied().unwrap_or(0) > MAX_OUT_PER_UID {
            Some(format!("uid {uid}'s share of {MAX_OUT_PER_UID} bytes of unread output"))
        } else if uid != 0 && self.out_budget.total > MAX_OUT_TOTAL {
            Some(format!("{MAX_OUT_TOTAL} bytes of unread output for all non-root clients"))
        } else {
            None
        };
        if let Some(bound) = over {
            self.param_counters.dropped_output += 1;
            let n = self.param_counters.dropped_output;
            // Logged at powers of two: a crowd of non-readers must not flood the log.
            if n.is_power_of_two() {
                warn!("parameter service: pid {} uid {uid} does not read its output: over {bound}; hanging up on it ({n} dropped so far)", c.pid);
            }
            self.drop_client(fd);
        }
    }

    fn flush_client(&mut self, fd: RawFd) {
        let Some(c) = self.clients.get_mut(&fd) else { return };
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                    c.out_replies = c.out_replies.saturating_sub(n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_client(fd);
                    return;
                }
            }
        }
        if c.out.capacity() > OUTBUF_KEEP && c.out.len() < c.out.capacity() / 4 {
            c.out.shrink_to(c.out.len() * 2);
        }
        let (before, now) = (c.out_counted, c.out.len());
        c.out_counted = now;
        self.out_budget.update(c.caller.uid, before, now);
        let Some(c) = self.clients.get_mut(&fd) else { return };
        let want = !c.out.is_empty();
        if want != c.want_write {
            c.want_write = want;
            let mut flags = EpollFlags::EPOLLIN;
            if want {
                flags |= EpollFlags::EPOLLOUT;
            }
            let mut ev = EpollEvent::new(flags, TOK_PARAM_CLIENT | fd as u64);
            let _ = self.epoll.modify(c.stream.as_fd(), &mut ev);
        }
    }

    /// Releases a client's hold and queues it to go on with its requests.
    fn release(&mut self, fd: RawFd, resp: &Response) {
        let Some(c) = self.clients.get_mut(&fd) else { return };
        c.hold = None;
        self.reply(fd, resp);
        if self.clients.contains_key(&fd) && !self.ready.contains(&fd) {
            self.ready.push_back(fd);
        }
    }

    pub(super) fn wait_timeout(&mut self, fd: RawFd, wait_id: u64) {
        let Some(c) = self.clients.get(&fd) else { return };
        let Some(Hold::Wait(id, name, _)) = &c.hold else { return };
        if *id != wait_id {
            return;
        }
        let name = name.clone();
        self.release(fd, &error_response(&ParamError::Timeout { name }));
    }

    /// A set from a client: DAC, type, then the common path. `Ok(true)`
    /// when the answer must wait for the value to be on disk.
    ///
    /// Control parameters are checked under OpenHarmony's
    /// `ohos.servicectrl.*` names ([`accord_param::dac::write_key`]). A
    /// `bootevent.*` may be set by root or by the process of a service that
    /// declares it: the caller's SO_PEERCRED pid must be that service's,
    /// and the process holding that pid now must be the one that connected
    /// (`start`, its start time at accept): else a process that connected,
    /// handed its socket on and exited would pass as whatever service
    /// reuses its pid.
    fn set_checked(&mut self, name: &str, value: &str, caller: &Caller, pid: i32, start: Option<u64>) -> Result<bool, ParamError> {
        accord_param::name::validate_name(name)?;
        let key = accord_param::dac::write_key(name, value);
        self.dac.check(&key, caller, Op::Write).map_err(|e| match e {
            ParamError::PermissionDenied { op, .. } if key != name => ParamError::PermissionDenied { name: format!("{name} (checked as {key})"), op },
            e => e,
        })?;
        self.dac.check_type(name, value)?;
        if name.starts_with("bootevent.") && caller.uid != 0 {
            let declared_by: Vec<&str> = self.services.iter().filter(|s| s.cfg.bootevents.iter().any(|e| e == name)).map(|s| s.cfg.name.as_str()).collect();
            let pid_matches = self.services.iter().any(|s| s.pid == Some(pid) && s.cfg.bootevents.iter().any(|e| e == name));
            let same = pid_matches && accord_param::cred::same_process(pid, start);
            if !same {
                let why = if declared_by.is_empty() {
                    "no service declares it".to_owned()
                } else if pid_matches {
                    format!("only the process of {} may, and pid {pid} is not the process that connected (its pid was reused)", declared_by.join(", "))
                } else {
                    format!("only the process of {} may", declared_by.join(", "))
                };
                return Err(ParamError::PermissionDenied { name: format!("{name} (pid {pid} uid {}: {why})", caller.uid), op: "set".into() });
            }
        }
        self.set_param_by(name, value, Setter::Client(caller.uid))
    }

    /// A set by init itself (state, boot times, cfg `setparam`): no DAC.
    pub(crate) fn set_internal(&mut self, name: &str, value: &str) {
        if let Err(e) = self.set_param(name, value) {
            warn!("cannot set {name}: {e}");
        }
    }

    /// The common path of every set by init itself.
    pub(crate) fn set_param(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        if self.set_param_by(name, value, Setter::Init)? {
            self.start_persist_batch();
        }
        Ok(())
    }

    /// The common path of every set: store, then its effects. `Ok(true)`
    /// when a `persist.*` value changed: the caller starts the batch write
    /// (after queueing itself for the answer).
    fn set_param_by(&mut self, name: &str, value: &str, setter: Setter) -> Result<bool, ParamError> {
        let outcome = self.params.set_by(name, value, setter)?;
        if outcome.changed {
            self.publish_to_area(name, value);
        }
        let persist = outcome.changed && name.starts_with("persist.") && self.persist_loaded;
        if persist {
            self.persist.dirty = true;
            self.param_counters.persist_sets += 1;
        }
        self.notify(name, value);
        self.param_effects(name, value);
        Ok(persist)
    }

    /// Mirrors a value into the shared table when every user may read it.
    fn publish_to_area(&mut self, name: &str, value: &str) {
        let Some(area) = self.area.as_mut() else { return };
        let anyone = Caller::anyone();
        if self.dac.check(name, &anyone, Op::Read).is_ok() {
            area.publish(name, value);
        }
    }

    /// Tells watchers that may read `name` and wakes matching waits. The
    /// woken go on the ready queue (never handled from here: no recursion).
    fn notify(&mut self, name: &str, value: &str) {
        let mut woken = Vec::new();
        let mut watchers = Vec::new();
        for (fd, c) in &self.clients {
            if c.watches.iter().any(|p| name.starts_with(p.as_str())) && self.dac.check(name, &c.caller, Op::Read).is_ok() {
                watchers.push(*fd);
            }
            if let Some(Hold::Wait(_, wname, pattern)) = &c.hold {
                if wname == name && accord_param::value_matches(pattern, value) {
                    woken.push(*fd);
                }
            }
        }
        if !watchers.is_empty() {
            let ev = encode_frame(&Response::Changed { name: name.to_owned(), value: value.to_owned() });
            for fd in watchers {
                self.queue(fd, &ev, false);
            }
        }
        for fd in woken {
            if let Some(Hold::Wait(wait_id, ..)) = self.clients.get(&fd).and_then(|c| c.hold.clone()) {
                let gone = TimerKind::WaitTimeout { fd, wait_id };
                self.timers.retain(|t| t.0 .2 != gone);
            }
            self.release(fd, &Response::Ok);
        }
    }

    fn hold_for_persist(&mut self, fd: RawFd) {
        let Some(c) = self.clients.get_mut(&fd) else { return };
        c.hold = Some(Hold::Persist);
        self.persist.next_waiters.push((fd, c.id));
    }

    /// Starts writing the current `persist.*` values in a forked child if
    /// something changed and no write is in flight; a write in flight is
    /// followed by the next batch when it ends. Many sets share one batch
    /// (one fsync of the file and one of the directory).
    fn start_persist_batch(&mut self) {
        if self.persist.in_flight.is_some() || !self.persist.dirty || !self.persist_loaded {
            return;
        }
        let entries: Vec<(String, String)> = self.params.persistent().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let path = self.paths.persist_file.clone();
        let prepared = match accord_param::persist::Prepared::new(&path, &entries) {
            Ok(p) => p,
            Err(e) => {
                let waiters = std::mem::take(&mut self.persist.next_waiters);
                return self.finish_persist_batch(Err(format!("cannot prepare {}: {e}", path.display())), waiters);
            }
        };
        let (rd, wr) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => {
                warn!("persist: no pipe ({e}); writing on the loop");
                let r = prepared.write().map_err(|e| format!("{}: {}", path.display(), std::io::Error::from_raw_os_error(e)));
                self.persist.dirty = false;
                let waiters = std::mem::take(&mut self.persist.next_waiters);
                return self.finish_persist_batch(r, waiters);
            }
        };
        // SAFETY: the child only makes system calls on memory prepared
        // before the fork (Prepared::write allocates nothing), then _exits.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                let status: u8 = match prepared.write() {
                    Ok(()) => 0,
                    Err(e) => e.clamp(1, 255) as u8,
                };
                // SAFETY: writing one byte from a stack buffer, then exiting without unwinding.
                unsafe {
                    libc::write(wr.as_raw_fd(), (&status as *const u8).cast(), 1);
                    libc::_exit(0);
                }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                drop(wr);
                if let Err(e) = self.epoll.add(rd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_PERSIST)) {
                    error!("persist: cannot watch the writer's pipe: {e}");
                }
                self.persist.dirty = false;
                self.param_counters.persist_batches += 1;
                let waiters = std::mem::take(&mut self.persist.next_waiters);
                self.persist.in_flight = Some(InFlight { pid: child.as_raw(), pipe: rd, waiters });
            }
            Err(e) => {
                warn!("persist: cannot fork a writer ({e}); writing on the loop");
                let r = prepared.write().map_err(|e| format!("{}: {}", path.display(), std::io::Error::from_raw_os_error(e)));
                self.persist.dirty = false;
                let waiters = std::mem::take(&mut self.persist.next_waiters);
                self.finish_persist_batch(r, waiters);
            }
        }
    }

    /// The writer's status pipe is readable: the batch is done (or the
    /// writer died, which fails the batch).
    pub(super) fn persist_writer_done(&mut self) {
        if self.persist_collect() {
            self.start_persist_batch();
        }
    }

    /// Collects the writer's status and answers its batch; false when it
    /// is still writing.
    fn persist_collect(&mut self) -> bool {
        let Some(fl) = self.persist.in_flight.take() else { return false };
        let mut b = [0u8; 1];
        let r = match nix::unistd::read(fl.pipe.as_raw_fd(), &mut b) {
            Ok(1) if b[0] == 0 => Ok(()),
            Ok(1) => Err(format!("{}: {}", self.paths.persist_file.display(), std::io::Error::from_raw_os_error(b[0] as i32))),
            Err(nix::errno::Errno::EAGAIN) => {
                // Spurious wakeup: still writing.
                self.persist.in_flight = Some(fl);
                return false;
            }
            _ => Err(format!("the writer (pid {}) of {} died", fl.pid, self.paths.persist_file.display())),
        };
        let _ = self.epoll.delete(fl.pipe.as_fd());
        self.finish_persist_batch(r, fl.waiters);
        true
    }

    fn finish_persist_batch(&mut self, r: Result<(), String>, waiters: Vec<(RawFd, u64)>) {
        let resp = match &r {
            Ok(()) => Response::Ok,
            Err(e) => {
                self.param_counters.persist_failures += 1;
                warn!("cannot save persistent parameters: {e}");
                Response::Error { kind: ErrorKind::Internal, message: format!("the value is set but not saved: {e}") }
            }
        };
        for (fd, id) in waiters {
            if self.clients.get(&fd).is_some_and(|c| c.id == id && c.hold == Some(Hold::Persist)) {
                self.release(fd, &resp);
            }
        }
    }

    /// Waits (at most 5 s) for a writer in flight, so that a synchronous
    /// save cannot be overtaken by an older batch's rename.
    fn wait_persist_writer(&mut self) {
        let Some(fl) = &self.persist.in_flight else { return };
        let mut pfd = [nix::poll::PollFd::new(fl.pipe.as_fd(), nix::poll::PollFlags::POLLIN)];
        let _ = nix::poll::poll(&mut pfd, nix::poll::PollTimeout::from(5000u16));
        self.persist_collect();
    }

    fn param_effects(&mut self, name: &str, value: &str) {
        match name {
            "ohos.ctl.start" => match self.service_index(value) {
                Some(idx) => self.request_start(idx),
                None => warn!("ohos.ctl.start: no service named {value:?}"),
            },
            "ohos.ctl.stop" | "ohos.ctl.term" => match self.service_index(value) {
                Some(idx) => {
                    if let Some(at) = self.held_starts.iter().position(|&i| i == idx) {
                        self.held_starts.remove(at);
                        info!("service {value}: its held start is cancelled by {name}");
                    }
                    self.stop_service(idx, Self::CONTROL_STOP_GRACE)
                }
                None => warn!("{name}: no service named {value:?}"),
            },
            "ohos.startup.powerctrl" => match PowerCmd::parse(value) {
                Some(cmd) => self.begin_shutdown(cmd, "ohos.startup.powerctrl"),
                None => warn!("ohos.startup.powerctrl: unknown command {value:?}"),
            },
            _ => {}
        }
        if let Some(ev) = name.strip_prefix("bootevent.") {
            if value == "true" && name != "bootevent.boot.completed" && self.bootevents_declared.contains(name) && self.bootevents_seen.insert(name.to_owned())
            {
                let now = boottime_us();
                self.set_internal(&format!("ohos.boot.time.{ev}"), &now.to_string());
                self.check_boot_completed();
            }
        }
        // `param:` jobs whose condition mentions this parameter.
        let matching: Vec<String> =
            self.param_jobs.iter().filter(|(_, e)| e.names().contains(&name) && self.condition_holds(e)).map(|(j, _)| j.clone()).collect();
        for job in matching {
            self.run_job(&job);
        }
    }

    /// `load_persist_params`: reads saved `persist.*` values, then saves
    /// if something set before (and not in the file) would otherwise be
    /// lost. A boot with nothing new writes nothing.
    pub(crate) fn load_persist(&mut self) {
        let path = self.paths.persist_file.clone();
        let mut from_file = Vec::new();
        match accord_param::persist::load(&path) {
            Ok((entries, problems)) => {
                for p in problems {
                    warn!("{p}");
                }
                for (k, v) in entries {
                    if k.starts_with("persist.") {
                        self.set_internal(&k, &v);
                        from_file.push((k, v));
                    }
                }
                info!("loaded {} persistent parameters from {}", from_file.len(), path.display());
            }
            Err(e) => info!("no persistent parameters yet ({}: {e})", path.display()),
        }
        self.persist_loaded = true;
        let now: Vec<(String, String)> = self.params.persistent().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        from_file.sort();
        if now != from_file {
            self.persist.dirty = true;
            self.start_persist_batch();
        }
    }

    /// Writes the `persist.*` values now, on the loop (shutdown): after any
    /// batch in flight, so an older batch cannot overwrite this one.
    pub(crate) fn save_persist(&mut self) {
        if !self.persist_loaded {
            return;
        }
        self.wait_persist_writer();
        let entries: Vec<(String, String)> = self.params.persistent().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        let r = accord_param::persist::save_atomic(&self.paths.persist_file, &entries).map_err(|e| format!("{}: {e}", self.paths.persist_file.display()));
        self.persist.dirty = false;
        let waiters = std::mem::take(&mut self.persist.next_waiters);
        self.finish_persist_batch(r, waiters);
    }
}
