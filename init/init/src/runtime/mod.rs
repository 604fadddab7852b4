//! PID 1's single-threaded event loop and the state it owns: services,
//! jobs, parameters, clients of the parameter service, timers, shutdown.
//!
//! One `epoll` set watches the signalfd (SIGCHLD and the power signals), the
//! parameter socket and its clients, services' output pipes and ondemand
//! sockets. Nothing a client does can block the loop: sockets are
//! non-blocking and a client whose replies pile up is dropped.

mod commands;
mod params;
mod services;
mod shutdown;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::os::fd::{AsFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use accord_param::dac::Dac;
use accord_param::store::ParamStore;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use tracing::{error, info, warn};

use crate::cfg::{self, condition::Expr, Config, StartMode};
use crate::trace::{boottime_us, BootTrace};
use crate::users::Users;

pub use params::ParamClient;
pub use services::{spawn_module_loaders, ServiceRt, State};
pub use shutdown::PowerCmd;

/// Where init reads its configuration. The defaults are the system's paths;
/// everything is relative to the root init runs in.
#[derive(Debug, Clone)]
pub struct Paths {
    pub init_cfg: PathBuf,
    pub cfg_dirs: Vec<PathBuf>,
    pub param_dirs: Vec<PathBuf>,
    pub param_socket: PathBuf,
    pub param_area: PathBuf,
    pub persist_file: PathBuf,
    pub trace_file: PathBuf,
    pub panic_record: PathBuf,
    pub modules_load_dir: PathBuf,
}

impl Default for Paths {
    fn default() -> Self {
        Paths {
            init_cfg: "/etc/init.cfg".into(),
            cfg_dirs: vec!["/etc/init".into(), "/system/etc/init".into(), "/vendor/etc/init".into()],
            param_dirs: vec!["/etc/param".into(), "/system/etc/param".into(), "/vendor/etc/param".into()],
            param_socket: accord_param::SOCKET_PATH.into(),
            param_area: accord_param::area::AREA_PATH.into(),
            persist_file: "/data/service/el1/startup/parameters/persist_parameters".into(),
            trace_file: "/data/log/startup/bootup.trace".into(),
            panic_record: "/data/log/startup/last_panic".into(),
            modules_load_dir: "/etc/modules-load.d".into(),
        }
    }
}

/// The fixed boot sequence; the `early-fs … boot` chain follows `post-init`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootStep {
    Job(&'static str),
    StartServices(StartMode),
    ServiceBootJobs,
    Done,
}

const BOOT_STEPS: &[BootStep] = &[
    BootStep::Job("pre-init"),
    BootStep::Job("init"),
    BootStep::StartServices(StartMode::Boot),
    BootStep::Job("post-init"),
    BootStep::Job("early-fs"),
    BootStep::Job("fs"),
    BootStep::Job("post-fs"),
    BootStep::Job("late-fs"),
    BootStep::Job("post-fs-data"),
    BootStep::Job("firmware_mounts_complete"),
    BootStep::Job("early-boot"),
    BootStep::Job("boot"),
    BootStep::ServiceBootJobs,
    BootStep::StartServices(StartMode::Normal),
    BootStep::Done,
];

/// The boot stage after which `/data` is mounted and prepared: a start
/// asked for earlier waits for it (see [`Init::request_start`]).
const DATA_READY_STAGE: &str = "post-fs-data";

/// Something to do at a given time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum TimerKind {
    /// Restart service `idx` if generation still matches.
    Restart { idx: usize, gen: u64 },
    /// A client's `wait` runs out.
    WaitTimeout { fd: RawFd, wait_id: u64 },
    /// Shutdown: services had their time to stop.
    ShutdownKill,
    /// A service asked to stop did not: SIGKILL it.
    StopKill { idx: usize, gen: u64 },
    /// The parameter listener rested after EMFILE: accept again.
    ResumeAccept,
    /// Boot events had their time: log the missing ones.
    BootEventTimeout,
    /// An ondemand service that crashed watches its sockets again.
    Rewatch { idx: usize, gen: u64 },
}

/// The output pipe of a background `exec` command, logged line by line.
struct CmdOutput {
    name: String,
    pid: i32,
    fd: std::os::fd::OwnedFd,
    /// A partial line waiting for its end.
    pending: Vec<u8>,
}

/// Parameter holding the boot-event timeout in seconds (Accord's name; it
/// follows OpenHarmony's `const.startup.*` settings).
pub const BOOTEVENT_TIMEOUT_PARAM: &str = "const.startup.bootevent.timeout";
/// Longest delay a timer accepts (longer ones are cut to it): 30 days.
const MAX_TIMER: Duration = Duration::from_secs(30 * 24 * 3600);
/// Default boot-event timeout, in seconds after the boot sequence.
pub const BOOTEVENT_TIMEOUT_SECS: u64 = 30;

// Epoll tokens: kind in the top byte, an index or fd below.
const TOK_SIGNAL: u64 = 1 << 56;
const TOK_PARAM_LISTEN: u64 = 2 << 56;
const TOK_PARAM_CLIENT: u64 = 3 << 56;
const TOK_SVC_OUTPUT: u64 = 4 << 56;
const TOK_SVC_SOCKET: u64 = 5 << 56;
const TOK_CMD_OUTPUT: u64 = 6 << 56;
const TOK_PERSIST: u64 = 7 << 56;
const TOK_MASK: u64 = 0xff << 56;

/// Bytes read from one descriptor (a client, a service's output) per loop
/// turn; what is left stays readable (level-triggered epoll) for the next
/// turn, so no single writer can starve the loop.
pub(crate) const READ_BUDGET: usize = 64 * 1024;
/// PID 1's descriptor limit (soft and hard) when the kernel allows it.
const NOFILE_TARGET: u64 = 65_536;

/// Raises RLIMIT_NOFILE to [`NOFILE_TARGET`] (or as far as the kernel's
/// `nr_open` lets it) and returns the soft limit in force.
fn raise_nofile() -> u64 {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap_or((1024, 1024));
    // Services start with the limit init was given, not init's own.
    crate::spawn::set_service_nofile(soft, hard);
    let want = NOFILE_TARGET.max(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    if setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    warn!("cannot raise RLIMIT_NOFILE above {soft}");
    soft
}

/// A child that is not a service: an `exec` command or the module loader.
#[derive(Debug)]
struct Helper {
    name: String,
}

pub struct Init {
    pub paths: Paths,
    cfg: Config,
    users: Users,
    pub(crate) params: ParamStore,
    /// Shared-memory table of world-readable parameters.
    area: Option<accord_param::area::AreaWriter>,
    dac: Dac,
    persist_loaded: bool,
    services: Vec<ServiceRt>,
    by_name: HashMap<String, usize>,
    start_order: Vec<usize>,
    /// Jobs triggered by parameters, with their parsed conditions.
    param_jobs: Vec<(String, Expr)>,
    /// Boot jobs that carry a condition.
    boot_job_conditions: HashMap<String, Expr>,
    jobs_done: HashSet<String>,
    /// Boot stages the boot sequence has passed (for stage terms in
    /// conditions).
    stages_done: HashSet<&'static str>,
    job_depth: u32,
    boot_steps: VecDeque<BootStep>,
    boot_done: bool,
    /// Services asked for (`ohos.ctl.start`: samgr loading an SA, begetctl)
    /// before `post-fs-data` ran, started once it has: see
    /// [`Init::request_start`].
    held_starts: Vec<usize>,
    bootevents_declared: HashSet<String>,
    bootevents_seen: HashSet<String>,
    boot_completed: bool,
    trace: BootTrace,
    epoll: Epoll,
    sigfd: SignalFd,
    listener: Option<UnixListener>,
    clients: HashMap<RawFd, ParamClient>,
    /// Connections per uid (the per-uid share).
    clients_per_uid: HashMap<u32, usize>,
    client_cap: usize,
    next_client_id: u64,
    /// Clients with requests to handle next turn (leftovers, released holds).
    ready: VecDeque<RawFd>,
    listener_paused: bool,
    param_counters: params::Counters,
    /// Output queued for non-root clients: in all and per uid.
    out_budget: params::OutBudget,
    persist: params::PersistState,
    next_wait_id: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, TimerKind)>>,
    timer_seq: u64,
    helpers: HashMap<i32, Helper>,
    /// Output pipes of `exec` commands: fd → (name, pid, pipe).
    cmd_outputs: HashMap<RawFd, CmdOutput>,
    /// `syncexec` children being waited for, and how those that ended did
    /// (filled by the reaper, taken by the waiting command).
    sync_children: HashSet<i32>,
    sync_exits: HashMap<i32, Result<(), String>>,
    /// Parameter clients whose request is being handled (innermost last).
    busy_clients: Vec<RawFd>,
    shutdown: Option<shutdown::ShutdownState>,
    gen: u64,
}

impl Init {
    /// Builds init's state: signals, the parameter service, defaults and
    /// the configuration. Never fails for bad input; only a kernel that
    /// refuses epoll or signalfd stops it (returned as an error to main).
    pub fn new(paths: Paths) -> std::io::Result<Init> {
        let mut mask = SigSet::empty();
        for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGINT, Signal::SIGHUP, Signal::SIGPWR] {
            mask.add(s);
        }
        mask.thread_block().map_err(std::io::Error::from)?;
        let sigfd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).map_err(std::io::Error::from)?;
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).map_err(std::io::Error::from)?;
        epoll.add(sigfd.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_SIGNAL)).map_err(std::io::Error::from)?;
        // SIGPIPE would kill PID 1's writes to a departed client.
        // SAFETY: setting a signal to SIG_IGN.
        unsafe {
            let _ = nix::sys::signal::signal(Signal::SIGPIPE, nix::sys::signal::SigHandler::SigIgn);
        }
        let mut init = Init {
            paths,
            cfg: Config::default(),
            users: Users::load(),
            params: ParamStore::new(),
            area: None,
            dac: Dac::default(),
            persist_loaded: false,
            services: Vec::new(),
            by_name: HashMap::new(),
            start_order: Vec::new(),
            param_jobs: Vec::new(),
            boot_job_conditions: HashMap::new(),
            jobs_done: HashSet::new(),
            stages_done: HashSet::new(),
            job_depth: 0,
            boot_steps: BOOT_STEPS.iter().copied().collect(),
            boot_done: false,
            held_starts: Vec::new(),
            bootevents_declared: HashSet::new(),
            bootevents_seen: HashSet::new(),
            boot_completed: false,
            trace: BootTrace::new(),
            epoll,
            sigfd,
            listener: None,
            clients: HashMap::new(),
            clients_per_uid: HashMap::new(),
            client_cap: params::client_cap(raise_nofile()),
            next_client_id: 0,
            ready: VecDeque::new(),
            listener_paused: false,
            param_counters: params::Counters::default(),
            out_budget: params::OutBudget::default(),
            persist: params::PersistState::default(),
            next_wait_id: 1,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            helpers: HashMap::new(),
            cmd_outputs: HashMap::new(),
            sync_children: HashSet::new(),
            sync_exits: HashMap::new(),
            busy_clients: Vec::new(),
            shutdown: None,
            gen: 0,
        };
        match accord_param::area::AreaWriter::create(&init.paths.param_area) {
            Ok(w) => init.area = Some(w),
            Err(e) => warn!("no shared parameter table at {} ({e}); reads go through the socket", init.paths.param_area.display()),
        }
        init.load_dac();
        init.set_internal("ohos.boot.time.init", &boottime_us().to_string());
        init.load_param_files();
        init.open_param_socket();
        init.load_config();
        Ok(init)
    }

    fn param_dir_files(&self, suffix: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for dir in &self.paths.param_dirs {
            let Ok(rd) = std::fs::read_dir(dir) else { continue };
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.to_string_lossy().ends_with(suffix)).collect();
            files.sort();
            out.extend(files);
        }
        out
    }

    /// Loads `*.para.dac` permissions (before any value, so the shared
    /// table only ever holds what everyone may read).
    fn load_dac(&mut self) {
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        let mut dac = Dac::default();
        for f in self.param_dir_files(".para.dac") {
            match std::fs::read_to_string(&f) {
                Ok(t) => {
                    for p in dac.add_file(&f.display().to_string(), &t, &passwd, &group) {
                        warn!("param dac: {p}");
                    }
                }
                Err(e) => warn!("cannot read {}: {e}", f.display()),
            }
        }
        self.dac = dac;
    }

    /// Loads `*.para` defaults.
    fn load_param_files(&mut self) {
        for f in self.param_dir_files(".para") {
            self.load_param_file(&f, false);
        }
    }

    /// `load_param <file> [onlyadd]`: `name=value` lines.
    pub(crate) fn load_param_file(&mut self, path: &Path, only_add: bool) {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                warn!("cannot read parameter file {}: {e}", path.display());
                return;
            }
        };
        let (entries, problems) = accord_param::persist::parse_defaults(&path.display().to_string(), &text);
        for p in problems {
            warn!("{p}");
        }
        for (k, v) in entries {
            if only_add && self.params.get(&k).is_some() {
                continue;
            }
            self.set_internal(&k, &v);
        }
    }

    fn open_param_socket(&mut self) {
        let path = self.paths.param_socket.clone();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        // Bound under a temporary name, made 0666 (everyone may connect; the
        // DAC decides per parameter), then renamed into place: nobody finds
        // the socket before it has its final mode.
        let mut tmp_name = path.file_name().map(|n| n.to_os_string()).unwrap_or_default();
        tmp_name.push(".new");
        let tmp = path.with_file_name(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let bound = UnixListener::bind(&tmp).and_then(|l| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o666))?;
            std::fs::rename(&tmp, &path)?;
            Ok(l)
        });
        match bound {
            Ok(l) => {
                let _ = l.set_nonblocking(true);
                if let Err(e) = self.epoll.add(l.as_fd(), EpollEvent::new(EpollFlags::EPOLLIN, TOK_PARAM_LISTEN)) {
                    error!("cannot watch the parameter socket: {e}");
                }
                self.listener = Some(l);
            }
            Err(e) => error!("cannot create the parameter socket {}: {e}", path.display()),
        }
    }

    fn load_config(&mut self) {
        let params = &self.params;
        let lookup = |name: &str| params.get(name).map(str::to_owned);
        let (cfg, diags) = cfg::load(&self.paths.init_cfg, &self.paths.cfg_dirs, &lookup);
        for d in &diags {
            match d.severity {
                cfg::Severity::Error => error!("{d}"),
                cfg::Severity::Warning => warn!("{d}"),
            }
        }
        for job in cfg.jobs.values() {
            match cfg::condition::job_trigger(job) {
                None => {}
                Some(Ok(expr)) => {
                    // `param:` jobs, and jobs whose condition combines a boot
                    // stage with parameters (`boot && param:x=*`), are
                    // triggered by parameter changes and stages.
                    if job.name.starts_with("param:") || (!expr.stages().is_empty() && !expr.names().is_empty()) {
                        self.param_jobs.push((job.name.clone(), expr));
                    } else {
                        self.boot_job_conditions.insert(job.name.clone(), expr);
                    }
                }
                Some(Err(e)) => error!("job {}: bad condition: {e}", job.name),
            }
        }
        for svc in &cfg.services {
            for ev in &svc.bootevents {
                self.bootevents_declared.insert(ev.clone());
            }
        }
        self.cfg = cfg;
        let services: Vec<_> = self.cfg.services.clone();
        for svc in services {
            let idx = self.services.len();
            self.by_name.insert(svc.name.clone(), idx);
            let rt = ServiceRt::new(svc);
            self.services.push(rt);
            self.publish_state(idx);
        }
        info!("loaded {} services and {} jobs", self.services.len(), self.cfg.jobs.len());
    }

    /// Runs the event loop forever (PID 1 never returns).
    pub fn run(&mut self) -> ! {
        let mut events = vec![EpollEvent::empty(); 64];
        loop {
            // Boot steps run one at a time, with the loop serving
            // requests and reaping in between.
            let timeout = if (!self.boot_steps.is_empty() && self.shutdown.is_none()) || !self.ready.is_empty() { Duration::ZERO } else { self.next_timeout() };
            let t = EpollTimeout::try_from(timeout.min(Duration::from_secs(60))).unwrap_or(EpollTimeout::NONE);
            let n = match self.epoll.wait(&mut events, t) {
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => 0,
                Err(e) => {
                    error!("epoll_wait: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    0
                }
            };
            self.dispatch_events(&events[..n]);
            self.fire_timers();
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.serve_ready()));
            if r.is_err() {
                error!("serving parameter clients panicked; init carries on");
            }
            if self.shutdown.is_none() {
                if let Some(step) = self.boot_steps.pop_front() {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_boot_step(step)));
                    if r.is_err() {
                        error!("boot step {step:?} panicked; init carries on");
                    }
                }
            }
            self.shutdown_progress();
        }
    }

    /// Handles a batch of epoll events, each under its own panic guard.
    fn dispatch_events(&mut self, events: &[EpollEvent]) {
        for ev in events {
            let data = ev.data();
            let flags = ev.events();
            let busy = self.busy_clients.len();
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dispatch(data, flags)));
            self.busy_clients.truncate(busy);
            if result.is_err() {
                error!("a handler panicked (token {data:#x}); init carries on");
            }
        }
    }

    /// One turn of the loop from inside a command that waits (`syncexec`):
    /// serves whatever is ready now (clients, signals, output, timers) but
    /// runs no boot step. `wake` is an extra descriptor the caller waits
    /// on; returns whether it became readable. Waits at most `max`.
    pub(crate) fn serve_while_waiting(&mut self, wake: Option<std::os::fd::BorrowedFd<'_>>, max: Duration) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let wait = max.min(self.next_timeout());
        let t = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
        let mut fds = vec![PollFd::new(self.epoll.0.as_fd(), PollFlags::POLLIN)];
        if let Some(w) = wake {
            fds.push(PollFd::new(w, PollFlags::POLLIN));
        }
        let (loop_ready, woke) = match poll(&mut fds, t) {
            Ok(_) => {
                let ready = |p: &PollFd<'_>| p.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), fds.get(1).is_some_and(ready))
            }
            Err(_) => (false, false),
        };
        drop(fds);
        if loop_ready {
            let mut events = vec![EpollEvent::empty(); 64];
            if let Ok(n) = self.epoll.wait(&mut events, EpollTimeout::ZERO) {
                let busy = |e: &EpollEvent| e.data() & TOK_MASK == TOK_PARAM_CLIENT && self.busy_clients.contains(&((e.data() & !TOK_MASK) as RawFd));
                let ready: Vec<EpollEvent> = events[..n].iter().filter(|e| !busy(e)).copied().collect();
                if ready.is_empty() && !woke {
                    // Only a busy client is ready (level-triggered, so it
                    // stays ready): rest instead of spinning.
                    std::thread::sleep(wait.min(Duration::from_millis(5)));
                }
                self.dispatch_events(&ready);
            }
        }
        self.fire_timers();
        woke
    }

    /// Waits until `done` holds or `timeout` passes, serving the loop
    /// meanwhile (see [`Init::serve_while_waiting`]); `done` is polled every
    /// few milliseconds. Ok(true): it holds; Ok(false): time ran out;
    /// Err: a shutdown began, so the waiting command gives up.
    pub(crate) fn wait_serving(&mut self, timeout: Duration, mut done: impl FnMut(&mut Self) -> bool) -> Result<bool, String> {
        let deadline = Instant::now() + timeout.min(MAX_TIMER);
        loop {
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if self.shutdown.is_some() {
                return Err("a shutdown began; not waiting any longer".into());
            }
            self.serve_while_waiting(None, (deadline - now).min(Duration::from_millis(5)));
        }
    }

    fn dispatch(&mut self, data: u64, flags: EpollFlags) {
        let low = data & !TOK_MASK;
        match data & TOK_MASK {
            TOK_SIGNAL => self.handle_signals(),
            TOK_PARAM_LISTEN => self.accept_clients(),
            TOK_PARAM_CLIENT => {
                // While this client's request runs (a job it triggered may
                // wait and serve the loop), its next requests wait, so
                // replies keep their order.
                self.busy_clients.push(low as RawFd);
                self.client_event(low as RawFd, flags);
                self.busy_clients.pop();
            }
            TOK_SVC_OUTPUT => self.service_output(low as usize),
            TOK_SVC_SOCKET => self.ondemand_socket_ready(low as usize),
            TOK_CMD_OUTPUT => self.cmd_output(low as RawFd),
            TOK_PERSIST => self.persist_writer_done(),
            _ => warn!("unknown epoll token {data:#x}"),
        }
    }

    fn handle_signals(&mut self) {
        loop {
            match self.sigfd.read_signal() {
                Ok(Some(info)) => {
                    let sig = Signal::try_from(info.ssi_signo as i32);
                    match sig {
                        Ok(Signal::SIGCHLD) => self.reap(),
                        Ok(Signal::SIGUSR2) => self.begin_shutdown(PowerCmd::PowerOff, "SIGUSR2 (poweroff)"),
                        Ok(Signal::SIGUSR1) => self.begin_shutdown(PowerCmd::Halt, "SIGUSR1 (halt)"),
                        Ok(Signal::SIGTERM) => self.begin_shutdown(PowerCmd::Reboot(None), "SIGTERM (reboot)"),
                        Ok(Signal::SIGINT) => self.begin_shutdown(PowerCmd::Reboot(None), "SIGINT (ctrl-alt-del)"),
                        Ok(Signal::SIGPWR) => self.begin_shutdown(PowerCmd::PowerOff, "SIGPWR"),
                        Ok(other) => info!("ignoring signal {other}"),
                        Err(_) => {}
                    }
                }
                Ok(None) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    warn!("signalfd read: {e}");
                    break;
                }
            }
        }
        // A SIGCHLD may have been merged with another signal; reaping is
        // cheap and idempotent.
        self.reap();
    }

    fn next_timeout(&self) -> Duration {
        match self.timers.peek() {
            Some(Reverse((when, _, _))) => when.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        }
    }

    fn add_timer(&mut self, after: Duration, kind: TimerKind) {
        self.timer_seq += 1;
        // An absurd delay (from a cfg or a parameter) must not overflow.
        let now = Instant::now();
        let when = now.checked_add(after.min(MAX_TIMER)).unwrap_or(now);
        self.timers.push(Reverse((when, self.timer_seq, kind)));
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        while let Some(Reverse((when, _, _))) = self.timers.peek() {
            if *when > now {
                break;
            }
            let Some(Reverse((_, _, kind))) = self.timers.pop() else { break };
            match kind {
                TimerKind::Restart { idx, gen } => self.restart_timer(idx, gen),
                TimerKind::WaitTimeout { fd, wait_id } => self.wait_timeout(fd, wait_id),
                TimerKind::ShutdownKill => self.shutdown_deadline(),
                TimerKind::StopKill { idx, gen } => self.stop_kill(idx, gen),
                TimerKind::ResumeAccept => self.resume_accept(),
                TimerKind::BootEventTimeout => self.bootevent_timeout_fired(),
                TimerKind::Rewatch { idx, gen } => self.rewatch_timer(idx, gen),
            }
        }
    }

    fn run_boot_step(&mut self, step: BootStep) {
        match step {
            BootStep::Job(name) => {
                if !self.jobs_done.contains(name) {
                    self.run_job(name);
                }
                self.stages_done.insert(name);
                self.run_stage_triggered_jobs(name);
                if name == DATA_READY_STAGE {
                    for idx in std::mem::take(&mut self.held_starts) {
                        info!("service {}: {DATA_READY_STAGE} has run: starting it as asked", self.services[idx].cfg.name);
                        self.start_service(idx);
                    }
                }
            }
            BootStep::StartServices(mode) => self.start_services_with_mode(mode),
            BootStep::ServiceBootJobs => {
                let jobs: Vec<String> = self.services.iter().filter_map(|s| s.cfg.jobs.on_boot.clone()).collect();
                for j in jobs {
                    self.run_job(&j);
                }
            }
            BootStep::Done => {
                self.boot_done = true;
                info!("boot sequence done at {} us", boottime_us());
                self.check_boot_completed();
                if !self.boot_completed {
                    if let Some(t) = self.bootevent_timeout() {
                        self.add_timer(t, TimerKind::BootEventTimeout);
                    }
                }
            }
        }
    }

    /// Whether a job condition holds now: parameters from the store, boot
    /// stages from the stages the boot sequence has passed.
    pub(crate) fn condition_holds(&self, expr: &Expr) -> bool {
        let params = &self.params;
        expr.eval_with(&|n| params.get(n).map(str::to_owned), &|s| self.stages_done.contains(s))
    }

    /// After boot stage `stage`: the triggered jobs that name it and now hold
    /// (a `boot && param:x=*` job whose parameter already matches).
    fn run_stage_triggered_jobs(&mut self, stage: &str) {
        let due: Vec<String> = self.param_jobs.iter().filter(|(_, e)| e.stages().contains(&stage) && self.condition_holds(e)).map(|(j, _)| j.clone()).collect();
        for job in due {
            self.run_job(&job);
        }
    }

    /// Runs job `name` if it exists and its condition (if any) holds.
    pub(crate) fn run_job(&mut self, name: &str) {
        self.jobs_done.insert(name.to_owned());
        let Some(job) = self.cfg.jobs.get(name).cloned() else { return };
        if let Some(expr) = self.boot_job_conditions.get(name) {
            if !self.condition_holds(expr) {
                info!("job {name}: condition not met, skipped");
                return;
            }
        }
        if self.job_depth >= 8 {
            error!("job {name}: triggers nest deeper than 8; not run");
            return;
        }
        self.job_depth += 1;
        let start = boottime_us();
        info!("job {name}: {} commands", job.cmds.len());
        for cmd in &job.cmds {
            // A panic in one command is that command's error: the job goes
            // on and the nesting depth stays balanced.
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_cmd(cmd)));
            match r {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("{}: {} {}: {e}", cmd.origin, cmd.name, cmd.args.join(" ")),
                Err(_) => error!("{}: {} {}: the command panicked (a bug in init); job {name} goes on", cmd.origin, cmd.name, cmd.args.join(" ")),
            }
        }
        self.trace.span("job", name, start, boottime_us());
        self.job_depth -= 1;
    }

    /// Boot events still awaited, with the service that declares each, in
    /// declaration order. A service that cannot set its events does not hold
    /// the boot hostage: one in the error state or disabled, and an
    /// `ondemand` or `condition` service nobody has started.
    pub(crate) fn awaited_bootevents(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for s in &self.services {
            let never_started = s.started_at.is_none() && s.pid.is_none() && (s.cfg.ondemand || s.cfg.start_mode == StartMode::Condition);
            if matches!(s.state, services::State::Error | services::State::Disabled) || never_started {
                continue;
            }
            for ev in &s.cfg.bootevents {
                if !self.bootevents_seen.contains(ev) {
                    out.push((ev.clone(), s.cfg.name.clone()));
                }
            }
        }
        out
    }

    /// `const.startup.bootevent.timeout` (seconds, default
    /// [`BOOTEVENT_TIMEOUT_SECS`], 0: never): after the boot sequence, how
    /// long boot events may take before init names the missing ones.
    fn bootevent_timeout(&self) -> Option<Duration> {
        let v = self.params.get(BOOTEVENT_TIMEOUT_PARAM);
        let secs = match v.map(str::parse::<u64>) {
            None => BOOTEVENT_TIMEOUT_SECS,
            Some(Ok(n)) => n,
            Some(Err(_)) => {
                warn!("{BOOTEVENT_TIMEOUT_PARAM}={:?} is not a number of seconds; using {BOOTEVENT_TIMEOUT_SECS}", v.unwrap_or_default());
                BOOTEVENT_TIMEOUT_SECS
            }
        };
        (secs > 0).then(|| Duration::from_secs(secs.min(24 * 3600)))
    }

    /// The boot-event timeout ran out: name what is missing and whose it is.
    fn bootevent_timeout_fired(&mut self) {
        if self.boot_completed {
            return;
        }
        let awaited = self.awaited_bootevents();
        let list: Vec<String> = awaited.iter().map(|(ev, svc)| format!("{ev} (service {svc})")).collect();
        warn!(
            "bootevent.boot.completed has not come {} s after the boot sequence; still waiting for: {}",
            self.bootevent_timeout().map_or(0, |d| d.as_secs()),
            list.join(", ")
        );
    }

    fn check_boot_completed(&mut self) {
        if self.boot_completed || !self.boot_done {
            return;
        }
        if !self.awaited_bootevents().is_empty() {
            return;
        }
        let skipped: Vec<String> = self.bootevents_declared.iter().filter(|e| !self.bootevents_seen.contains(*e)).cloned().collect();
        if !skipped.is_empty() {
            let mut skipped = skipped;
            skipped.sort();
            warn!("boot completes without boot events of services that failed or were never started: {}", skipped.join(", "));
        }
        self.boot_completed = true;
        let now = boottime_us();
        self.set_internal("ohos.boot.time.boot.completed", &now.to_string());
        self.set_internal("bootevent.boot.completed", "true");
        info!("boot completed at {now} us");
        self.trace.enabled = self.params.get("persist.init.bootevent.enable") != Some("false");
        if self.trace.enabled {
            let path = self.paths.trace_file.clone();
            match self.trace.write(&path) {
                Ok(()) => info!("boot trace ({} spans) written to {}", self.trace.len(), path.display()),
                Err(e) => warn!("cannot write the boot trace {}: {e}", path.display()),
            }
        }
    }
}
