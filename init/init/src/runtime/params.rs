//! The parameter service inside init: the socket protocol, permission
//! checks with the caller's SO_PEERCRED identity, waits and watches, and
//! what setting a parameter does (control parameters, `param:` jobs, boot
//! events, persistence).

use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use accord_param::dac::{Caller, Op};
use accord_param::proto::{encode_frame, ErrorKind, FrameDecoder, Request, Response};
use accord_param::ParamError;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
use tracing::{debug, info, warn};

use super::{Init, PowerCmd, TimerKind, TOK_PARAM_CLIENT};
use crate::trace::boottime_us;

/// Replies queued beyond this drop the client: init never waits for one.
const MAX_OUTBUF: usize = 1 << 20;
const MAX_CLIENTS: usize = 1024;

pub struct ParamClient {
    stream: UnixStream,
    caller: Caller,
    pid: i32,
    decoder: FrameDecoder,
    out: Vec<u8>,
    watches: Vec<String>,
    /// (wait id, name, pattern) of the client's pending `wait`.
    wait: Option<(u64, String, String)>,
    want_write: bool,
}

fn error_response(e: &ParamError) -> Response {
    Response::Error { kind: ErrorKind::from(e), message: e.to_string() }
}

fn caller_groups(pid: i32) -> Vec<u32> {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else { return Vec::new() };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .map(|g| g.split_whitespace().filter_map(|x| x.parse().ok()).collect())
        .unwrap_or_default()
}

impl Init {
    pub(super) fn accept_clients(&mut self) {
        loop {
            let Some(listener) = &self.listener else { return };
            match listener.accept() {
                Ok((stream, _)) => {
                    if self.clients.len() >= MAX_CLIENTS {
                        warn!("parameter service: too many clients; refusing one");
                        continue;
                    }
                    let _ = stream.set_nonblocking(true);
                    let (uid, gid, pid) = match getsockopt(&stream, PeerCredentials) {
                        Ok(c) => (c.uid(), c.gid(), c.pid()),
                        Err(e) => {
                            warn!("parameter service: no peer credentials: {e}");
                            continue;
                        }
                    };
                    let groups = if uid == 0 { Vec::new() } else { caller_groups(pid) };
                    let fd = stream.as_raw_fd();
                    if self.epoll.add(stream.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_PARAM_CLIENT | fd as u64)).is_err() {
                        continue;
                    }
                    self.clients.insert(
                        fd,
                        ParamClient {
                            stream,
                            caller: Caller { uid, gid, groups },
                            pid,
                            decoder: FrameDecoder::new(),
                            out: Vec::new(),
                            watches: Vec::new(),
                            wait: None,
                            want_write: false,
                        },
                    );
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("parameter service: accept: {e}");
                    return;
                }
            }
        }
    }

    fn drop_client(&mut self, fd: RawFd) {
        if let Some(c) = self.clients.remove(&fd) {
            let _ = self.epoll.delete(c.stream.as_fd());
        }
    }

    pub(super) fn client_event(&mut self, fd: RawFd, flags: EpollFlags) {
        if flags.contains(EpollFlags::EPOLLOUT) {
            self.flush_client(fd);
        }
        if flags.intersects(EpollFlags::EPOLLIN | EpollFlags::EPOLLHUP | EpollFlags::EPOLLERR) {
            self.read_client(fd);
        }
    }

    fn read_client(&mut self, fd: RawFd) {
        let mut buf = [0u8; 8192];
        let mut eof = false;
        if let Some(c) = self.clients.get_mut(&fd) {
            loop {
                match std::io::Read::read(&mut c.stream, &mut buf) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        c.decoder.push(&buf[..n]);
                        // A short read drained the socket for now; epoll
                        // (level-triggered) reports anything that follows.
                        if n < buf.len() {
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
        } else {
            return;
        }
        self.process_frames(fd);
        if eof {
            self.drop_client(fd);
        }
    }

    /// Handles complete requests in order; a pending `wait` holds the rest.
    fn process_frames(&mut self, fd: RawFd) {
        loop {
            let frame = {
                let Some(c) = self.clients.get_mut(&fd) else { return };
                if c.wait.is_some() {
                    return;
                }
                match c.decoder.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => return,
                    Err(e) => {
                        warn!("parameter service: garbage from pid {}: {e}; dropping the connection", c.pid);
                        let resp = Response::Error { kind: ErrorKind::Protocol, message: e.to_string() };
                        let _ = c.stream.write_all(&encode_frame(&resp));
                        self.drop_client(fd);
                        return;
                    }
                }
            };
            let req: Request = match serde_json::from_slice(&frame) {
                Ok(r) => r,
                Err(e) => {
                    let pid = self.clients.get(&fd).map(|c| c.pid).unwrap_or(0);
                    warn!("parameter service: bad request from pid {pid}: {e}");
                    self.reply(fd, &Response::Error { kind: ErrorKind::Protocol, message: format!("bad request: {e}") });
                    continue;
                }
            };
            if let Some(resp) = self.handle_request(fd, req) {
                self.reply(fd, &resp);
            }
        }
    }

    fn handle_request(&mut self, fd: RawFd, req: Request) -> Option<Response> {
        let caller = self.clients.get(&fd)?.caller.clone();
        debug!("param request from uid {}: {req:?}", caller.uid);
        let resp = match req {
            Request::Get { name } => match self.dac.check(&name, &caller, Op::Read) {
                Err(e) => error_response(&e),
                Ok(()) => match self.params.get(&name) {
                    Some(v) => Response::Value { value: v.to_owned() },
                    None => error_response(&ParamError::NotFound { name }),
                },
            },
            Request::Set { name, value } => match self.set_checked(&name, &value, &caller) {
                Ok(()) => Response::Ok,
                Err(e) => {
                    info!("param set {name} by uid {} refused: {e}", caller.uid);
                    error_response(&e)
                }
            },
            Request::List { prefix } => {
                let entries = self
                    .params
                    .list(&prefix)
                    .into_iter()
                    .filter(|(k, _)| self.dac.check(k, &caller, Op::Read).is_ok())
                    .collect();
                Response::List { entries }
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
                        c.wait = Some((id, name, pattern));
                    }
                    self.add_timer(Duration::from_millis(timeout_ms), TimerKind::WaitTimeout { fd, wait_id: id });
                    return None;
                }
            }
            Request::Watch { prefix } => match self.dac.check(&prefix, &caller, Op::Watch) {
                Err(e) => error_response(&e),
                Ok(()) => {
                    if let Some(c) = self.clients.get_mut(&fd) {
                        if c.watches.len() < 64 {
                            c.watches.push(prefix);
                        }
                    }
                    Response::Ok
                }
            },
            Request::Save => {
                if caller.uid != 0 {
                    error_response(&ParamError::PermissionDenied { name: "persist.*".into(), op: "save".into() })
                } else {
                    self.save_persist();
                    Response::Ok
                }
            }
            Request::DumpServices { name } => Response::Services { services: self.service_infos(name.as_deref()) },
        };
        Some(resp)
    }

    fn reply(&mut self, fd: RawFd, resp: &Response) {
        let bytes = encode_frame(resp);
        let Some(c) = self.clients.get_mut(&fd) else { return };
        c.out.extend_from_slice(&bytes);
        if c.out.len() > MAX_OUTBUF {
            warn!("parameter service: pid {} does not read its replies; dropping it", c.pid);
            self.drop_client(fd);
            return;
        }
        self.flush_client(fd);
    }

    fn flush_client(&mut self, fd: RawFd) {
        let Some(c) = self.clients.get_mut(&fd) else { return };
        while !c.out.is_empty() {
            match c.stream.write(&c.out) {
                Ok(0) => break,
                Ok(n) => {
                    c.out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.drop_client(fd);
                    return;
                }
            }
        }
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

    pub(super) fn wait_timeout(&mut self, fd: RawFd, wait_id: u64) {
        let Some(c) = self.clients.get_mut(&fd) else { return };
        let Some((id, name, _)) = &c.wait else { return };
        if *id != wait_id {
            return;
        }
        let name = name.clone();
        c.wait = None;
        self.reply(fd, &error_response(&ParamError::Timeout { name }));
        self.process_frames(fd);
    }

    /// A set from a client: DAC, type, then the common path.
    fn set_checked(&mut self, name: &str, value: &str, caller: &Caller) -> Result<(), ParamError> {
        accord_param::name::validate_name(name)?;
        self.dac.check(name, caller, Op::Write)?;
        self.dac.check_type(name, value)?;
        self.set_param(name, value)
    }

    /// A set by init itself (state, boot times, cfg `setparam`): no DAC.
    pub(crate) fn set_internal(&mut self, name: &str, value: &str) {
        if let Err(e) = self.set_param(name, value) {
            warn!("cannot set {name}: {e}");
        }
    }

    /// The common path of every set: store, then its effects.
    pub(crate) fn set_param(&mut self, name: &str, value: &str) -> Result<(), ParamError> {
        let outcome = self.params.set(name, value)?;
        if outcome.changed {
            self.publish_to_area(name, value);
        }
        if outcome.changed && name.starts_with("persist.") && self.persist_loaded {
            self.save_persist();
        }
        self.notify(name, value);
        self.param_effects(name, value);
        Ok(())
    }

    /// Mirrors a value into the shared table when every user may read it.
    fn publish_to_area(&mut self, name: &str, value: &str) {
        let Some(area) = self.area.as_mut() else { return };
        let anyone = Caller { uid: u32::MAX - 1, gid: u32::MAX - 1, groups: Vec::new() };
        if self.dac.check(name, &anyone, Op::Read).is_ok() {
            area.publish(name, value);
        }
    }

    /// Tells watchers and wakes waits.
    fn notify(&mut self, name: &str, value: &str) {
        let mut woken = Vec::new();
        let mut watchers = Vec::new();
        for (fd, c) in &mut self.clients {
            if c.watches.iter().any(|p| name.starts_with(p.as_str())) {
                watchers.push(*fd);
            }
            if let Some((_, wname, pattern)) = &c.wait {
                if wname == name && accord_param::value_matches(pattern, value) {
                    c.wait = None;
                    woken.push(*fd);
                }
            }
        }
        if !watchers.is_empty() {
            let ev = Response::Changed { name: name.to_owned(), value: value.to_owned() };
            for fd in watchers {
                self.reply(fd, &ev);
            }
        }
        for fd in woken {
            self.reply(fd, &Response::Ok);
            self.process_frames(fd);
        }
    }

    fn param_effects(&mut self, name: &str, value: &str) {
        match name {
            "ohos.ctl.start" => match self.service_index(value) {
                Some(idx) => self.start_service(idx),
                None => warn!("ohos.ctl.start: no service named {value:?}"),
            },
            "ohos.ctl.stop" | "ohos.ctl.term" => match self.service_index(value) {
                Some(idx) => self.stop_service(idx, Duration::from_secs(3)),
                None => warn!("{name}: no service named {value:?}"),
            },
            "ohos.startup.powerctrl" => match PowerCmd::parse(value) {
                Some(cmd) => self.begin_shutdown(cmd, "ohos.startup.powerctrl"),
                None => warn!("ohos.startup.powerctrl: unknown command {value:?}"),
            },
            _ => {}
        }
        if let Some(ev) = name.strip_prefix("bootevent.") {
            if value == "true" && name != "bootevent.boot.completed" && self.bootevents_declared.contains(name) && self.bootevents_seen.insert(name.to_owned()) {
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
                    warn!("{}: {p}", path.display());
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
            self.save_persist();
        }
    }

    pub(crate) fn save_persist(&mut self) {
        if !self.persist_loaded {
            return;
        }
        let entries: Vec<(String, String)> = self.params.persistent().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        if let Err(e) = accord_param::persist::save_atomic(&self.paths.persist_file, &entries) {
            warn!("cannot save persistent parameters to {}: {e}", self.paths.persist_file.display());
        }
    }
}
