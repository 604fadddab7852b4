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
}

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
    job_depth: u32,
    boot_steps: VecDeque<BootStep>,
    boot_done: bool,
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
    persist: params::PersistState,
    next_wait_id: u64,
    timers: BinaryHeap<Reverse<(Instant, u64, TimerKind)>>,
    timer_seq: u64,
    helpers: HashMap<i32, Helper>,
    /// Output pipes of `exec` commands: fd → (name, pid, pipe).
    cmd_outputs: HashMap<RawFd, (String, i32, std::os::fd::OwnedFd)>,
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
            job_depth: 0,
            boot_steps: BOOT_STEPS.iter().copied().collect(),
            boot_done: false,
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
            persist: params::PersistState::default(),
            next_wait_id: 1,
            timers: BinaryHeap::new(),
            timer_seq: 0,
            helpers: HashMap::new(),
            cmd_outputs: HashMap::new(),
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
                    if job.name.starts_with("param:") {
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
            let timeout = if (!self.boot_steps.is_empty() && self.shutdown.is_none()) || !self.ready.is_empty() {
                Duration::ZERO
            } else {
                self.next_timeout()
            };
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
            for ev in &events[..n] {
                let data = ev.data();
                let flags = ev.events();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.dispatch(data, flags)));
                if result.is_err() {
                    error!("a handler panicked (token {data:#x}); init carries on");
                }
            }
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

    fn dispatch(&mut self, data: u64, flags: EpollFlags) {
        let low = data & !TOK_MASK;
        match data & TOK_MASK {
            TOK_SIGNAL => self.handle_signals(),
            TOK_PARAM_LISTEN => self.accept_clients(),
            TOK_PARAM_CLIENT => self.client_event(low as RawFd, flags),
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
        self.timers.push(Reverse((Instant::now() + after, self.timer_seq, kind)));
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
            }
        }
    }

    fn run_boot_step(&mut self, step: BootStep) {
        match step {
            BootStep::Job(name) => {
                if !self.jobs_done.contains(name) {
                    self.run_job(name);
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
            }
        }
    }

    /// Runs job `name` if it exists and its condition (if any) holds.
    pub(crate) fn run_job(&mut self, name: &str) {
        self.jobs_done.insert(name.to_owned());
        let Some(job) = self.cfg.jobs.get(name).cloned() else { return };
        if let Some(expr) = self.boot_job_conditions.get(name) {
            let params = &self.params;
            if !expr.eval(&|n| params.get(n).map(str::to_owned)) {
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
            if let Err(e) = self.run_cmd(cmd) {
                warn!("{}: {} {}: {e}", cmd.origin, cmd.name, cmd.args.join(" "));
            }
        }
        self.trace.span("job", name, start, boottime_us());
        self.job_depth -= 1;
    }

    fn check_boot_completed(&mut self) {
        if self.boot_completed || !self.boot_done {
            return;
        }
        if !self.bootevents_declared.is_subset(&self.bootevents_seen) {
            return;
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
