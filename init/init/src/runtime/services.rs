//! Service lifecycle inside the loop: start, stop, exit handling with the
//! restart policy, ondemand sockets, output forwarding, state parameters.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use accord_param::proto::ServiceInfo;
use nix::sys::epoll::{EpollEvent, EpollFlags};
use nix::sys::signal::{kill, killpg, Signal};
use nix::sys::socket::{self, AddressFamily, SockFlag, SockType, UnixAddr};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use tracing::{error, info, warn};

use super::{Init, TimerKind, TOK_CMD_OUTPUT, TOK_SVC_OUTPUT, TOK_SVC_SOCKET};
use crate::cfg::{Service, SocketType, StartMode};
use crate::restart::{self, CrashHistory, ExitAction};
use crate::spawn::{self, SpawnRequest};
use crate::trace::boottime_us;

/// OpenHarmony's service states, published as `startup.service.ctl.<name>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Idle,
    Starting,
    Running,
    Stopping,
    Stopped,
    Error,
    Disabled,
    Critical,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Starting => "starting",
            State::Running => "running",
            State::Stopping => "stopping",
            State::Stopped => "stopped",
            State::Error => "error",
            State::Disabled => "disabled",
            State::Critical => "critical",
        }
    }
}

pub struct ServiceRt {
    pub cfg: Service,
    pub state: State,
    pub pid: Option<i32>,
    pub history: CrashHistory,
    pub restarts: u32,
    /// init asked it to stop; its exit is not a crash.
    pub stop_requested: bool,
    /// Listening sockets init made for it, in `cfg.sockets` order.
    pub sockets: Vec<OwnedFd>,
    /// Its ondemand sockets are in the epoll set.
    pub watching: bool,
    pub output: Option<OwnedFd>,
    /// Partial output line.
    pub pending_line: Vec<u8>,
    /// Bumped on every start; stale timers compare against it.
    pub gen: u64,
    pub started_at: Option<Instant>,
    pub restart_pending: bool,
    /// Asked to start while it was stopping: started once it has stopped.
    pub start_after_stop: bool,
}

impl ServiceRt {
    pub fn new(cfg: Service) -> ServiceRt {
        let state = if cfg.disabled { State::Disabled } else { State::Idle };
        ServiceRt {
            cfg,
            state,
            pid: None,
            history: CrashHistory::default(),
            restarts: 0,
            stop_requested: false,
            start_after_stop: false,
            sockets: Vec::new(),
            watching: false,
            output: None,
            pending_line: Vec::new(),
            gen: 0,
            started_at: None,
            restart_pending: false,
        }
    }

    pub fn info(&self, users: &crate::users::Users) -> ServiceInfo {
        let uid = self.cfg.uid.as_ref().and_then(|u| users.uid(u)).unwrap_or(0);
        let gid = self.cfg.gid.first().and_then(|g| users.gid(g)).unwrap_or(0);
        ServiceInfo {
            name: self.cfg.name.clone(),
            state: self.state.as_str().to_owned(),
            pid: self.pid,
            path: self.cfg.path.clone(),
            uid,
            gid,
            start_mode: match self.cfg.start_mode {
                StartMode::Boot => "boot",
                StartMode::Normal => "normal",
                StartMode::Condition => "condition",
            }
            .to_owned(),
            critical: self.cfg.critical.enabled,
            ondemand: self.cfg.ondemand,
            once: self.cfg.once,
            restarts: self.restarts,
            sockets: self.cfg.sockets.iter().map(|s| s.name.clone()).collect(),
            bootevents: self.cfg.bootevents.clone(),
        }
    }
}

impl Init {
    pub(crate) fn service_index(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    pub(crate) fn service_infos(&self, name: Option<&str>) -> Vec<ServiceInfo> {
        self.services.iter().filter(|s| name.is_none_or(|n| n == s.cfg.name)).map(|s| s.info(&self.users)).collect()
    }

    pub(super) fn publish_state(&mut self, idx: usize) {
        let name = self.services[idx].cfg.name.clone();
        let state = self.services[idx].state.as_str();
        self.set_internal(&format!("startup.service.ctl.{name}"), state);
    }

    fn set_state(&mut self, idx: usize, state: State) {
        if self.services[idx].state != state {
            self.services[idx].state = state;
            self.publish_state(idx);
            if state == State::Error {
                let rt = &self.services[idx];
                let missing: Vec<&str> = rt.cfg.bootevents.iter().filter(|e| !self.bootevents_seen.contains(*e)).map(String::as_str).collect();
                if !missing.is_empty() {
                    warn!("service {} failed: its boot events {} will not come; boot completion no longer waits for them", rt.cfg.name, missing.join(", "));
                }
                self.check_boot_completed();
            }
        }
    }

    pub(super) fn start_services_with_mode(&mut self, mode: StartMode) {
        let idxs: Vec<usize> = (0..self.services.len())
            .filter(|&i| {
                let c = &self.services[i].cfg;
                c.start_mode == mode && !c.disabled
            })
            .collect();
        for idx in idxs {
            if self.services[idx].cfg.ondemand {
                self.prepare_ondemand(idx);
            } else {
                self.start_service(idx);
            }
        }
    }

    /// Creates a service's sockets if it has none yet.
    fn ensure_sockets(&mut self, idx: usize) -> Result<(), String> {
        if !self.services[idx].sockets.is_empty() || self.services[idx].cfg.sockets.is_empty() {
            return Ok(());
        }
        let specs = self.services[idx].cfg.sockets.clone();
        let mut fds = Vec::new();
        for spec in &specs {
            let fd = create_socket(spec, &self.users).map_err(|e| format!("socket {}: {e}", spec.name))?;
            fds.push(fd);
        }
        self.services[idx].sockets = fds;
        Ok(())
    }

    /// Ondemand: create the sockets and start the service on the first
    /// connection (or datagram). Without sockets it waits for a start
    /// request (`ohos.ctl.start`, samgr loading a system ability).
    fn prepare_ondemand(&mut self, idx: usize) {
        if let Err(e) = self.ensure_sockets(idx) {
            error!("service {}: {e}", self.services[idx].cfg.name);
            self.set_state(idx, State::Error);
            return;
        }
        if self.services[idx].sockets.is_empty() {
            info!("service {} waits for a start request", self.services[idx].cfg.name);
            return;
        }
        self.watch_sockets(idx);
    }

    fn watch_sockets(&mut self, idx: usize) {
        if self.services[idx].watching {
            return;
        }
        for (i, fd) in self.services[idx].sockets.iter().enumerate() {
            let tok = TOK_SVC_SOCKET | ((idx as u64) << 8) | i as u64;
            if let Err(e) = self.epoll.add(fd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, tok)) {
                warn!("cannot watch socket of {}: {e}", self.services[idx].cfg.name);
            }
        }
        self.services[idx].watching = true;
        info!("service {} waits for its first connection", self.services[idx].cfg.name);
    }

    fn unwatch_sockets(&mut self, idx: usize) {
        if !self.services[idx].watching {
            return;
        }
        for fd in &self.services[idx].sockets {
            let _ = self.epoll.delete(fd.as_fd());
        }
        self.services[idx].watching = false;
    }

    pub(super) fn ondemand_socket_ready(&mut self, low: usize) {
        let idx = low >> 8;
        if idx >= self.services.len() {
            return;
        }
        self.unwatch_sockets(idx);
        if self.services[idx].pid.is_none() && self.shutdown.is_none() {
            info!("service {}: connection on its socket, starting it", self.services[idx].cfg.name);
            self.start_service(idx);
        }
    }

    /// A start asked for from outside (`ohos.ctl.start`: samgr loading a
    /// system ability on demand, `begetctl start_service`, the launcher).
    /// Before the boot has run `post-fs-data`, a service that is not a
    /// `boot` one is held and started right after that stage: such
    /// services keep their state under `/data`, and one started earlier
    /// would read and write the empty mount point (found with powermgr,
    /// loaded by samgr for the status bar while the data partition was
    /// still being checked). `boot` services are the ones meant to run
    /// before `/data`, and start at once.
    pub(crate) fn request_start(&mut self, idx: usize) {
        let data_ready = self.stages_done.contains(super::DATA_READY_STAGE);
        if data_ready || self.services[idx].cfg.start_mode == StartMode::Boot || self.services[idx].pid.is_some() {
            self.start_service(idx);
        } else if !self.held_starts.contains(&idx) {
            info!(
                "service {}: start asked before {}: held until that stage has run (/data is not ready)",
                self.services[idx].cfg.name,
                super::DATA_READY_STAGE
            );
            self.held_starts.push(idx);
        }
    }

    /// Starts service `idx` unless it is running. Errors are logged and the
    /// state becomes `error`; nothing propagates.
    pub(crate) fn start_service(&mut self, idx: usize) {
        if self.shutdown.is_some() {
            return;
        }
        let name = self.services[idx].cfg.name.clone();
        if self.services[idx].pid.is_some() {
            if self.services[idx].state == State::Stopping {
                // Its process has not exited yet: started again when it has.
                self.services[idx].start_after_stop = true;
                info!("service {name} is stopping: it starts again once it has stopped");
            }
            return;
        }
        self.services[idx].start_after_stop = false;
        self.services[idx].stop_requested = false;
        self.services[idx].restart_pending = false;
        if let Err(e) = self.ensure_sockets(idx) {
            error!("service {name}: {e}");
            self.set_state(idx, State::Error);
            return;
        }
        self.unwatch_sockets(idx);
        if let Some(job) = self.services[idx].cfg.jobs.pre_start.clone() {
            self.run_job(&job);
        }
        self.set_state(idx, State::Starting);
        let t0 = boottime_us();
        let svc = &self.services[idx];
        let res = spawn::spawn(SpawnRequest { svc: &svc.cfg, sockets: &svc.sockets, users: &self.users });
        match res {
            Ok(sp) => {
                self.gen += 1;
                let gen = self.gen;
                let rt = &mut self.services[idx];
                rt.pid = Some(sp.pid);
                rt.gen = gen;
                rt.started_at = Some(Instant::now());
                if let Some(out) = sp.output {
                    let _ = nix::fcntl::fcntl(out.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
                    if let Err(e) = self.epoll.add(out.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_SVC_OUTPUT | idx as u64)) {
                        warn!("cannot watch output of {name}: {e}");
                    }
                    self.services[idx].output = Some(out);
                }
                if !self.start_order.contains(&idx) {
                    self.start_order.push(idx);
                }
                self.trace.span("service", &name, t0, boottime_us());
                info!("service {name} started, pid {}", sp.pid);
                for path in self.services[idx].cfg.writepid.clone() {
                    if let Err(e) = std::fs::write(&path, format!("{}\n", sp.pid)) {
                        warn!("service {name}: writepid {path}: {e}");
                    }
                }
                self.set_internal(&format!("startup.service.ctl.{name}.pid"), &sp.pid.to_string());
                self.set_state(idx, State::Running);
                if let Some(job) = self.services[idx].cfg.jobs.on_start.clone() {
                    self.run_job(&job);
                }
            }
            Err(e) => {
                error!("{e}");
                self.set_state(idx, State::Error);
                self.refuse_socket_clients(idx);
            }
        }
    }

    /// How long a service stopped on request (`begetctl stop_service`,
    /// the `stop` command) has between SIGTERM and SIGKILL.
    pub(crate) const CONTROL_STOP_GRACE: Duration = Duration::from_secs(3);

    /// Asks service `idx` to stop: SIGTERM now, SIGKILL after a grace time.
    pub(crate) fn stop_service(&mut self, idx: usize, grace: Duration) {
        let rt = &mut self.services[idx];
        rt.restart_pending = false;
        rt.stop_requested = true;
        rt.start_after_stop = false;
        let Some(pid) = rt.pid else {
            if rt.state != State::Disabled {
                let name = rt.cfg.name.clone();
                self.unwatch_sockets(idx);
                self.set_state(idx, State::Stopped);
                info!("service {name} stopped (was not running)");
            }
            return;
        };
        let gen = rt.gen;
        let console = rt.cfg.console;
        info!("stopping service {} (pid {pid})", rt.cfg.name);
        signal_group(pid, Signal::SIGTERM);
        if console {
            // An interactive shell ignores SIGTERM; a hangup ends it.
            signal_group(pid, Signal::SIGHUP);
        }
        self.set_state(idx, State::Stopping);
        self.add_timer(grace, TimerKind::StopKill { idx, gen });
    }

    pub(super) fn stop_kill(&mut self, idx: usize, gen: u64) {
        let rt = &self.services[idx];
        if rt.gen == gen {
            if let Some(pid) = rt.pid {
                warn!("service {} did not stop in time; killing it", rt.cfg.name);
                signal_group(pid, Signal::SIGKILL);
            }
        }
    }

    /// Reaps every exited child: services, helpers and orphans.
    pub(super) fn reap(&mut self) {
        loop {
            match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(nix::errno::Errno::ECHILD) => break,
                Ok(WaitStatus::Exited(pid, code)) => self.child_exited(pid.as_raw(), format!("exit status {code}"), code == 0),
                Ok(WaitStatus::Signaled(pid, sig, _)) => self.child_exited(pid.as_raw(), format!("killed by {sig}"), false),
                Ok(_) => continue,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!("waitpid: {e}");
                    break;
                }
            }
        }
    }

    fn child_exited(&mut self, pid: i32, how: String, clean: bool) {
        if self.sync_children.remove(&pid) {
            self.sync_exits.insert(pid, if clean { Ok(()) } else { Err(how) });
            return;
        }
        if let Some(h) = self.helpers.remove(&pid) {
            info!("{} (pid {pid}) finished: {how}", h.name);
            return;
        }
        let Some(idx) = self.services.iter().position(|s| s.pid == Some(pid)) else {
            return; // an orphan re-parented to us
        };
        // Drain what it wrote before it died.
        self.service_output(idx);
        if let Some(out) = self.services[idx].output.take() {
            let _ = self.epoll.delete(out.as_fd());
        }
        self.flush_pending_line(idx);
        let name = self.services[idx].cfg.name.clone();
        crate::log::service_gone(&name, pid);
        let stopped_by_init = self.services[idx].stop_requested;
        self.services[idx].pid = None;
        if stopped_by_init {
            info!("service {name} (pid {pid}) stopped: {how}");
        } else {
            warn!("service {name} (pid {pid}) exited: {how}");
        }
        self.set_internal(&format!("startup.service.ctl.{name}.pid"), "0");
        if let Some(job) = self.services[idx].cfg.jobs.on_stop.clone() {
            self.run_job(&job);
        }
        if self.shutdown.is_some() {
            self.set_state(idx, State::Stopped);
            return;
        }
        if std::mem::take(&mut self.services[idx].start_after_stop) {
            self.set_state(idx, State::Stopped);
            info!("service {name}: starting again, as asked while it was stopping");
            self.start_service(idx);
            return;
        }
        let svc = self.services[idx].cfg.clone();
        // An ondemand service that leaves a connection unaccepted would be
        // started again at once: that exit is a crash, whatever its status.
        let unaccepted = svc.ondemand && self.sockets_pending(idx);
        let exit = restart::Exit { stopped_by_init, crashed: !stopped_by_init && (!clean || unaccepted) };
        let action = restart::on_exit_with(&svc, &mut self.services[idx].history, Instant::now(), exit);
        match action {
            ExitAction::Stay => self.set_state(idx, State::Stopped),
            ExitAction::Rewatch => {
                self.set_state(idx, State::Stopped);
                if exit.crashed {
                    self.services[idx].restarts += 1;
                    warn!(
                        "service {name} exited without serving{}; watching its sockets again",
                        if unaccepted { " (a connection is left unaccepted)" } else { "" }
                    );
                }
                self.watch_sockets(idx);
            }
            ExitAction::RewatchAfter { delay } => {
                self.set_state(idx, State::Stopped);
                self.services[idx].restarts += 1;
                let gen = self.services[idx].gen;
                warn!("service {name} crashed {} times; watching its sockets again in {} s", self.services[idx].history.count(), delay.as_secs());
                self.add_timer(delay, TimerKind::Rewatch { idx, gen });
            }
            ExitAction::Fail { count, period_secs } => {
                error!("service {name} crashed {count} times within {period_secs} s without serving its sockets: marked failed; its sockets refuse clients until it is started again");
                self.set_state(idx, State::Error);
                self.refuse_socket_clients(idx);
            }
            ExitAction::Panic => {
                self.set_state(idx, State::Critical);
                error!("critical service {name} exited {} times within {} s: rebooting into panic mode", svc.critical.count, svc.critical.period_secs);
                self.begin_shutdown(super::PowerCmd::Panic(name), "critical service failure");
            }
            ExitAction::Restart { delay } => {
                self.set_state(idx, State::Stopped);
                self.services[idx].restart_pending = true;
                let gen = self.services[idx].gen;
                if delay.is_zero() {
                    self.restart_timer(idx, gen);
                } else {
                    warn!("service {name} crashes too often; restarting it in {} s", delay.as_secs());
                    self.add_timer(delay, TimerKind::Restart { idx, gen });
                }
            }
        }
    }

    /// Whether a connection (or datagram) waits on one of service `idx`'s
    /// sockets.
    fn sockets_pending(&self, idx: usize) -> bool {
        self.services[idx].sockets.iter().any(|fd| {
            let mut p = [nix::poll::PollFd::new(fd.as_fd(), nix::poll::PollFlags::POLLIN)];
            matches!(nix::poll::poll(&mut p, nix::poll::PollTimeout::ZERO), Ok(n) if n > 0)
        })
    }

    /// The back-off of a crashed ondemand service ran out.
    pub(super) fn rewatch_timer(&mut self, idx: usize, gen: u64) {
        let rt = &self.services[idx];
        if rt.gen != gen || rt.pid.is_some() || rt.state == State::Error || self.shutdown.is_some() {
            return;
        }
        self.watch_sockets(idx);
    }

    /// A socket service that cannot run: close its listening sockets, so
    /// pending clients are reset and new ones refused (ECONNREFUSED on the
    /// node that stays) instead of waiting forever. A later start makes
    /// them afresh.
    fn refuse_socket_clients(&mut self, idx: usize) {
        if self.services[idx].sockets.is_empty() {
            return;
        }
        self.unwatch_sockets(idx);
        self.services[idx].sockets.clear();
        let names: Vec<String> = self.services[idx].cfg.sockets.iter().map(|s| s.name.clone()).collect();
        warn!("service {}: closed its sockets {}; clients are refused", self.services[idx].cfg.name, names.join(", "));
    }

    pub(super) fn restart_timer(&mut self, idx: usize, gen: u64) {
        let rt = &self.services[idx];
        if rt.gen != gen || !rt.restart_pending || rt.pid.is_some() {
            return;
        }
        if let Some(job) = rt.cfg.jobs.on_restart.clone() {
            self.run_job(&job);
        }
        self.services[idx].restarts += 1;
        info!("restarting service {}", self.services[idx].cfg.name);
        self.start_service(idx);
    }

    /// Forwards a service's output to the log, line by line.
    pub(super) fn service_output(&mut self, idx: usize) {
        let Some(fd) = self.services[idx].output.as_ref().map(|f| f.as_raw_fd()) else { return };
        let mut buf = [0u8; 4096];
        // At most READ_BUDGET bytes per turn; the rest stays readable.
        for _ in 0..super::READ_BUDGET / buf.len() {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    if let Some(out) = self.services[idx].output.take() {
                        let _ = self.epoll.delete(out.as_fd());
                    }
                    self.flush_pending_line(idx);
                    break;
                }
                Ok(n) => {
                    let pid = self.services[idx].pid.unwrap_or(0);
                    let name = self.services[idx].cfg.name.clone();
                    crate::log::service_output(&name, pid, &mut self.services[idx].pending_line, &buf[..n]);
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    fn flush_pending_line(&mut self, idx: usize) {
        let rt = &mut self.services[idx];
        if !rt.pending_line.is_empty() {
            let line = std::mem::take(&mut rt.pending_line);
            crate::log::service_line(&rt.cfg.name, rt.pid.unwrap_or(0), &line);
        }
    }

    /// Output of `exec` commands.
    pub(super) fn cmd_output(&mut self, fd: RawFd) {
        let mut buf = [0u8; 4096];
        // At most READ_BUDGET bytes per turn; the rest stays readable.
        for _ in 0..super::READ_BUDGET / buf.len() {
            match nix::unistd::read(fd, &mut buf) {
                Ok(0) => {
                    if let Some(out) = self.cmd_outputs.remove(&fd) {
                        let _ = self.epoll.delete(out.fd.as_fd());
                        if !out.pending.is_empty() {
                            crate::log::service_line(&out.name, out.pid, &out.pending);
                        }
                        crate::log::service_gone(&out.name, out.pid);
                    }
                    break;
                }
                Ok(n) => {
                    if let Some(out) = self.cmd_outputs.get_mut(&fd) {
                        crate::log::service_output(&out.name, out.pid, &mut out.pending, &buf[..n]);
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => break,
            }
        }
    }

    /// `exec`: runs a command in the background; `syncexec` waits for it.
    pub(crate) fn exec_command(&mut self, argv: &[String], wait: bool) -> Result<(), String> {
        let sp = spawn::spawn_command(argv).map_err(|e| e.to_string())?;
        let name = argv[0].rsplit('/').next().unwrap_or(&argv[0]).to_owned();
        if wait {
            self.sync_children.insert(sp.pid);
            return self.wait_sync_command(name, sp.pid, sp.output);
        }
        if let Some(out) = sp.output {
            let fd = out.as_raw_fd();
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
            let _ = self.epoll.add(out.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_CMD_OUTPUT | fd as u64));
            self.cmd_outputs.insert(fd, super::CmdOutput { name: name.clone(), pid: sp.pid, fd: out, pending: Vec::new() });
        }
        self.helpers.insert(sp.pid, super::Helper { name });
        Ok(())
    }

    /// `const.startup.syncexec.timeout`: seconds a `syncexec` command may
    /// run (default [`SYNCEXEC_TIMEOUT`], at most an hour).
    fn syncexec_timeout(&self) -> Duration {
        match self.params.get(SYNCEXEC_TIMEOUT_PARAM).map(str::parse::<u64>) {
            Some(Ok(n)) if n > 0 => Duration::from_secs(n.min(3600)),
            Some(_) => {
                warn!("{SYNCEXEC_TIMEOUT_PARAM} is not a positive number of seconds; using {} s", SYNCEXEC_TIMEOUT.as_secs());
                SYNCEXEC_TIMEOUT
            }
            None => SYNCEXEC_TIMEOUT,
        }
    }

    /// `syncexec`: waits for the command through the event loop (clients,
    /// signals and other output are served meanwhile; no boot step runs),
    /// forwarding its output to the log so it never blocks on a full pipe
    /// or dies of SIGPIPE. Past the deadline its process group is killed.
    fn wait_sync_command(&mut self, name: String, pid: i32, mut output: Option<OwnedFd>) -> Result<(), String> {
        if let Some(out) = &output {
            let _ = nix::fcntl::fcntl(out.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        }
        let timeout = self.syncexec_timeout();
        let mut deadline = Instant::now() + timeout;
        let mut killed = false;
        let mut pending = Vec::new();
        loop {
            if let Some(out) = &output {
                if drain_lines(out.as_raw_fd(), &name, pid, &mut pending) {
                    output = None;
                }
            }
            if let Some(res) = self.sync_exits.remove(&pid) {
                // It may have left output behind in the pipe.
                if let Some(out) = &output {
                    drain_lines(out.as_raw_fd(), &name, pid, &mut pending);
                }
                if !pending.is_empty() {
                    crate::log::service_line(&name, pid, &pending);
                }
                if killed {
                    return Err(format!("did not finish within {} s; killed", timeout.as_secs()));
                }
                return res;
            }
            let now = Instant::now();
            if now >= deadline {
                if killed {
                    // Still not reaped after SIGKILL (stuck in the kernel):
                    // the reaper takes it over, the job goes on.
                    self.sync_children.remove(&pid);
                    self.helpers.insert(pid, super::Helper { name: name.clone() });
                    return Err(format!("did not finish within {} s and did not die of SIGKILL", timeout.as_secs()));
                }
                warn!("syncexec {name} (pid {pid}) did not finish within {} s; killing it", timeout.as_secs());
                signal_group(pid, Signal::SIGKILL);
                killed = true;
                deadline = now + Duration::from_secs(5);
            }
            let left = deadline.saturating_duration_since(now);
            let fd = output.as_ref().map(|o| o.as_fd());
            self.serve_while_waiting(fd, left.min(Duration::from_secs(1)));
        }
    }

    /// Takes over the module loaders started by [`spawn_module_loaders`],
    /// so their exits are reaped and logged.
    pub fn adopt_module_loaders(&mut self, loaders: Vec<(i32, String)>) {
        for (pid, group) in loaders {
            self.helpers.insert(pid, super::Helper { name: format!("module loader {group}") });
        }
        // A loader that finished before SIGCHLD was routed to the signalfd
        // left no pending signal: reap now.
        self.reap();
    }
}

/// Forks one child of init per `/etc/modules-load.d/*.conf` file; they load
/// their modules in parallel with each other and with the boot jobs, so
/// device probing does not hold up boot. Returns (pid, group) of each.
pub fn spawn_module_loaders(dir: &std::path::Path) -> Vec<(i32, String)> {
    let mut out = Vec::new();
    for (file, names) in crate::kmod::modules_load_groups(dir) {
        let group = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        // SAFETY: init is single-threaded; the child only loads modules and
        // exits with _exit.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                if group.ends_with("devices") {
                    // Disk and filesystem groups gate the boot (/data);
                    // other devices yield the CPU to them.
                    // SAFETY: plain syscall.
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 10) };
                }
                let code = load_modules(&group, &names);
                // SAFETY: leaving the forked child without running atexit.
                unsafe { libc::_exit(code) };
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => {
                info!("loading {} kernel modules of {group} (pid {child})", names.len());
                out.push((child.as_raw(), group));
            }
            Err(e) => {
                error!("cannot fork the module loader: {e}; loading {group} inline");
                load_modules(&group, &names);
            }
        }
    }
    out
}

fn load_modules(group: &str, names: &[String]) -> i32 {
    let dir = crate::kmod::module_dir();
    let dep = match crate::kmod::ModDep::load(&dir) {
        Ok(d) => d,
        Err(e) => {
            warn!("{e}");
            return 1;
        }
    };
    let mut loaded = std::collections::HashSet::new();
    let mut failed = 0;
    let t0 = boottime_us();
    for n in names {
        if let Err(e) = crate::kmod::modprobe(&dep, n, "", &mut loaded) {
            warn!("module {n}: {e}");
            failed += 1;
        }
    }
    info!("{group}: loaded {} module files in {} ms ({failed} failed)", loaded.len(), (boottime_us() - t0) / 1000);
    i32::from(failed > 0)
}

/// Longest run of a `syncexec` command unless
/// `const.startup.syncexec.timeout` says otherwise.
pub const SYNCEXEC_TIMEOUT: Duration = Duration::from_secs(60);
/// Parameter holding the `syncexec` deadline in seconds (Accord's name).
pub const SYNCEXEC_TIMEOUT_PARAM: &str = "const.startup.syncexec.timeout";

/// Reads what is available on non-blocking `fd` (at most
/// [`super::READ_BUDGET`] bytes) and logs complete lines. Returns true at
/// EOF.
fn drain_lines(fd: RawFd, name: &str, pid: i32, pending: &mut Vec<u8>) -> bool {
    let mut buf = [0u8; 4096];
    for _ in 0..super::READ_BUDGET / buf.len() {
        match nix::unistd::read(fd, &mut buf) {
            Ok(0) => return true,
            Ok(n) => crate::log::service_output(name, pid, pending, &buf[..n]),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(nix::errno::Errno::EAGAIN) => return false,
            Err(_) => return true,
        }
    }
    false
}

/// Signals a service's process group (it is a session leader), falling back
/// to the process alone.
pub(super) fn signal_group(pid: i32, sig: Signal) {
    if killpg(Pid::from_raw(pid), sig).is_err() {
        let _ = kill(Pid::from_raw(pid), sig);
    }
}

/// Makes a listening Unix socket at `/dev/unix/socket/<name>`.
fn create_socket(spec: &crate::cfg::SocketSpec, users: &crate::users::Users) -> Result<OwnedFd, String> {
    let ty = match spec.sock_type {
        SocketType::Stream => SockType::Stream,
        SocketType::Dgram => SockType::Datagram,
        SocketType::SeqPacket => SockType::SeqPacket,
    };
    let fd = socket::socket(AddressFamily::Unix, ty, SockFlag::SOCK_CLOEXEC, None).map_err(|e| e.to_string())?;
    let path = std::path::Path::new("/dev/unix/socket").join(&spec.name);
    let _ = std::fs::create_dir_all("/dev/unix/socket");
    let _ = std::fs::remove_file(&path);
    let addr = UnixAddr::new(&path).map_err(|e| e.to_string())?;
    socket::bind(fd.as_raw_fd(), &addr).map_err(|e| format!("bind {}: {e}", path.display()))?;
    if ty != SockType::Datagram {
        socket::listen(&fd, socket::Backlog::new(128).unwrap_or(socket::Backlog::MAXCONN)).map_err(|e| e.to_string())?;
    }
    if spec.passcred {
        let _ = socket::setsockopt(&fd, socket::sockopt::PassCred, &true);
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(spec.permissions)).map_err(|e| e.to_string())?;
    let uid = spec.uid.as_ref().and_then(|u| users.uid(u));
    let gid = spec.gid.as_ref().and_then(|g| users.gid(g));
    if uid.is_some() || gid.is_some() {
        nix::unistd::chown(&path, uid.map(nix::unistd::Uid::from_raw), gid.map(nix::unistd::Gid::from_raw)).map_err(|e| e.to_string())?;
    }
    // SAFETY: converting an OwnedFd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(fd)) })
}
