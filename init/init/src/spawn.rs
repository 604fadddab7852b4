//! Starting a service's process: credentials, capabilities, priority, CPU
//! affinity, sockets handed over by init, and stdio (the console, or a pipe
//! init reads into the log).
//!
//! Everything that can fail for a reason the cfg author must fix (unknown
//! user, unknown capability, missing executable) is checked in the parent
//! and reported as a [`SpawnError`] naming the service.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use caps::{CapSet, Capability, CapsHashSet};
use nix::sys::signal::{SigSet, SigmaskHow};
use thiserror::Error;

use crate::cfg::{Ident, Service};
use crate::users::Users;

#[derive(Debug, Error)]
pub enum SpawnError {
    #[error("service {service}: unknown user {user:?}")]
    UnknownUser { service: String, user: String },
    #[error("service {service}: unknown group {group:?}")]
    UnknownGroup { service: String, group: String },
    #[error("service {service}: unknown capability {cap:?}")]
    UnknownCap { service: String, cap: String },
    #[error("service {service}: cannot open the console: {source}")]
    Console { service: String, source: std::io::Error },
    #[error("service {service}: cannot make the output pipe: {source}")]
    Pipe { service: String, source: nix::Error },
    #[error("service {service}: cannot run {path}: {source}")]
    Exec { service: String, path: String, source: std::io::Error },
    /// The forked child failed while setting itself up, before exec.
    #[error("service {service}: {stage} failed in the child before exec: {source}")]
    Setup { service: String, stage: &'static str, source: std::io::Error },
}

/// Steps of the child's setup, reported through the stage pipe so a
/// failure names the step rather than blaming exec.
/// RLIMIT_NOFILE (soft, hard) that services start with, when set: init
/// raises its own limit for its clients, and services get the limit init
/// was started with instead (or what a cfg's `setrlimit RLIMIT_NOFILE`
/// says). Atomics, so the forked child reads them without locking.
static SERVICE_NOFILE: (AtomicU64, AtomicU64, AtomicBool) = (AtomicU64::new(0), AtomicU64::new(0), AtomicBool::new(false));

/// Sets the RLIMIT_NOFILE services start with (soft, hard).
pub fn set_service_nofile(soft: u64, hard: u64) {
    SERVICE_NOFILE.0.store(soft, Ordering::SeqCst);
    SERVICE_NOFILE.1.store(hard, Ordering::SeqCst);
    SERVICE_NOFILE.2.store(true, Ordering::SeqCst);
}

const STAGES: &[&str] = &[
    "setsid",
    "setting RLIMIT_NOFILE",
    "passing sockets",
    "dropping the capability bounding set",
    "setgroups",
    "setgid",
    "setuid",
    "setting capabilities",
    "setting ambient capabilities",
];

fn stage_index(name: &str) -> u8 {
    STAGES.iter().position(|s| *s == name).unwrap_or(0) as u8
}

/// A started process.
#[derive(Debug)]
pub struct Spawned {
    pub pid: i32,
    /// Read end of the pipe carrying the child's stdout and stderr (none for
    /// console services).
    pub output: Option<OwnedFd>,
}

/// Credentials resolved in the parent.
struct Creds {
    uid: Option<u32>,
    gid: Option<u32>,
    groups: Vec<u32>,
}

fn resolve_creds(svc: &Service, users: &Users) -> Result<Creds, SpawnError> {
    let uid = match &svc.uid {
        None => None,
        Some(u) => Some(users.uid(u).ok_or_else(|| SpawnError::UnknownUser { service: svc.name.clone(), user: ident_text(u) })?),
    };
    let mut gids = Vec::new();
    for g in &svc.gid {
        gids.push(users.gid(g).ok_or_else(|| SpawnError::UnknownGroup { service: svc.name.clone(), group: ident_text(g) })?);
    }
    // Without an explicit gid, a named user's primary group is used.
    let gid = gids.first().copied().or_else(|| svc.uid.as_ref().and_then(|u| users.primary_gid(u))).or(uid);
    let groups = if gids.len() > 1 { gids[1..].to_vec() } else { Vec::new() };
    Ok(Creds { uid, gid, groups })
}

fn ident_text(i: &Ident) -> String {
    match i {
        Ident::Name(n) => n.clone(),
        Ident::Id(n) => n.to_string(),
    }
}

fn resolve_caps(svc: &Service) -> Result<Option<CapsHashSet>, SpawnError> {
    let Some(names) = &svc.caps else { return Ok(None) };
    let mut set = CapsHashSet::new();
    for n in names {
        let full = if n.starts_with("CAP_") { n.clone() } else { format!("CAP_{n}") };
        let cap = Capability::from_str(&full).map_err(|_| SpawnError::UnknownCap { service: svc.name.clone(), cap: n.clone() })?;
        set.insert(cap);
    }
    Ok(Some(set))
}

/// Everything the child needs, prepared before fork.
pub struct SpawnRequest<'a> {
    pub svc: &'a Service,
    /// Sockets init created for this service, in `svc.sockets` order.
    pub sockets: &'a [OwnedFd],
    pub users: &'a Users,
}

/// Forks and execs the service. Returns once exec succeeded or failed.
pub fn spawn(req: SpawnRequest<'_>) -> Result<Spawned, SpawnError> {
    let svc = req.svc;
    let creds = resolve_creds(svc, req.users)?;
    let caps = resolve_caps(svc)?;
    let mut cmd = Command::new(&svc.path[0]);
    cmd.args(&svc.path[1..]);
    // Services inherit init's environment (the kernel's, plus the cfg's
    // `export`s), then their own `env`.
    for (k, v) in &svc.env {
        cmd.env(k, v);
    }
    let mut socket_fds: Vec<RawFd> = Vec::new();
    for (spec, fd) in svc.sockets.iter().zip(req.sockets) {
        cmd.env(format!("OHOS_SOCKET_{}", spec.name), fd.as_raw_fd().to_string());
        socket_fds.push(fd.as_raw_fd());
    }
    cmd.current_dir("/");

    let mut output = None;
    if svc.console {
        let dev = console_device();
        let open = || OpenOptions::new().read(true).write(true).open(&dev);
        let mk = |r: std::io::Result<std::fs::File>| r.map_err(|source| SpawnError::Console { service: svc.name.clone(), source });
        cmd.stdin(Stdio::from(mk(open())?));
        cmd.stdout(Stdio::from(mk(open())?));
        cmd.stderr(Stdio::from(mk(open())?));
    } else {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| SpawnError::Pipe { service: svc.name.clone(), source })?;
        let w2 =
            w.try_clone().map_err(|e| SpawnError::Pipe { service: svc.name.clone(), source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) })?;
        cmd.stdin(Stdio::null());
        cmd.stdout(Stdio::from(w));
        cmd.stderr(Stdio::from(w2));
        output = Some(r);
    }

    let console = svc.console;
    let importance = svc.importance;
    let cpucore = svc.cpucore.clone();
    // The child writes the index of a failed setup step here (the pipe is
    // close-on-exec, so a successful exec leaves it empty).
    let (stage_r, stage_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| SpawnError::Pipe { service: svc.name.clone(), source })?;
    let stage_fd = stage_w.as_raw_fd();
    // SAFETY: init is single-threaded, so the child may allocate; the
    // closure only calls into the kernel and the caps crate.
    unsafe {
        cmd.pre_exec(move || {
            child_setup(console, importance, &cpucore, &socket_fds, &creds, caps.as_ref()).map_err(|(stage, e)| {
                let b = [stage_index(stage)];
                // Writing one byte to a pipe we own (inside the unsafe
                // pre_exec block).
                libc::write(stage_fd, b.as_ptr().cast(), 1);
                e
            })
        });
    }
    let spawned = cmd.spawn();
    drop(stage_w);
    drop(cmd);
    let child = spawned.map_err(|source| {
        let mut b = [0u8; 1];
        match nix::unistd::read(stage_r.as_raw_fd(), &mut b) {
            Ok(1) => SpawnError::Setup { service: svc.name.clone(), stage: STAGES.get(b[0] as usize).copied().unwrap_or("setup"), source },
            _ => SpawnError::Exec { service: svc.name.clone(), path: svc.path[0].clone(), source },
        }
    })?;
    let pid = child.id() as i32;
    // The Child handle is dropped without waiting: init reaps every pid.
    drop(child);
    Ok(Spawned { pid, output })
}

fn child_setup(
    console: bool,
    importance: i32,
    cpucore: &[u32],
    socket_fds: &[RawFd],
    creds: &Creds,
    caps: Option<&CapsHashSet>,
) -> Result<(), (&'static str, std::io::Error)> {
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    nix::unistd::setsid().map_err(|e| ("setsid", e.into()))?;
    if SERVICE_NOFILE.2.load(Ordering::SeqCst) {
        let lim = libc::rlimit { rlim_cur: SERVICE_NOFILE.0.load(Ordering::SeqCst), rlim_max: SERVICE_NOFILE.1.load(Ordering::SeqCst) };
        // SAFETY: plain syscall on a local struct (async-signal-safe).
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(("setting RLIMIT_NOFILE", std::io::Error::last_os_error()));
        }
    }
    if console {
        // Make the console this session's controlling terminal, so job
        // control and ^C work in the shell.
        // SAFETY: TIOCSCTTY on fd 0 with arg 0.
        unsafe { libc::ioctl(0, libc::TIOCSCTTY as _, 0) };
    }
    if importance != 0 {
        // SAFETY: plain syscall.
        unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, importance) };
    }
    if !cpucore.is_empty() {
        let mut set = nix::sched::CpuSet::new();
        for &c in cpucore {
            let _ = set.set(c as usize);
        }
        let _ = nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set);
    }
    for &fd in socket_fds {
        nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).map_err(|e| ("passing sockets", e.into()))?;
    }
    let cap_err = |stage: &'static str| move |e: caps::errors::CapsError| (stage, std::io::Error::other(e.to_string()));
    if let Some(set) = caps {
        // Bounding set: keep only the listed capabilities (needs
        // CAP_SETPCAP, which init still has here).
        for cap in caps::all() {
            if !set.contains(&cap) && caps::has_cap(None, CapSet::Bounding, cap).unwrap_or(false) {
                caps::drop(None, CapSet::Bounding, cap).map_err(cap_err("dropping the capability bounding set"))?;
            }
        }
        // SAFETY: prctl with integer args.
        unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, 1, 0, 0, 0) };
    }
    let gids: Vec<nix::unistd::Gid> = creds.groups.iter().map(|&g| nix::unistd::Gid::from_raw(g)).collect();
    if creds.uid.is_some() || creds.gid.is_some() {
        nix::unistd::setgroups(&gids).map_err(|e| ("setgroups", e.into()))?;
    }
    if let Some(g) = creds.gid {
        nix::unistd::setgid(nix::unistd::Gid::from_raw(g)).map_err(|e| ("setgid", e.into()))?;
    }
    if let Some(u) = creds.uid {
        nix::unistd::setuid(nix::unistd::Uid::from_raw(u)).map_err(|e| ("setuid", e.into()))?;
    }
    if let Some(set) = caps {
        // Order matters for a process that keeps uid 0 (its effective set is
        // still full): effective must stay a subset of permitted, and
        // inheritable may only grow within permitted. So: effective,
        // inheritable, then permitted, then ambient (OpenHarmony sets the
        // same four sets, plus bounding above).
        caps::set(None, CapSet::Effective, set).map_err(cap_err("setting capabilities"))?;
        caps::set(None, CapSet::Inheritable, set).map_err(cap_err("setting capabilities"))?;
        caps::set(None, CapSet::Permitted, set).map_err(cap_err("setting capabilities"))?;
        caps::clear(None, CapSet::Ambient).map_err(cap_err("setting ambient capabilities"))?;
        for cap in set {
            caps::raise(None, CapSet::Ambient, *cap).map_err(cap_err("setting ambient capabilities"))?;
        }
        // SAFETY: prctl with integer args.
        unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    }
    Ok(())
}

/// The terminal behind /dev/console (e.g. /dev/ttyAMA0): a shell on it can
/// take it as its controlling terminal, so job control and ^C work, which
/// /dev/console itself does not allow.
fn console_device() -> std::path::PathBuf {
    let active = std::fs::read_to_string("/sys/class/tty/console/active").unwrap_or_default();
    if let Some(name) = active.split_whitespace().last() {
        let p = std::path::Path::new("/dev").join(name);
        if p.exists() {
            return p;
        }
    }
    "/dev/console".into()
}

/// Runs a one-off command (`exec`/`syncexec`) with init's environment and
/// stdio going to the log pipe. Returns the pid and the output pipe.
pub fn spawn_command(argv: &[String]) -> Result<Spawned, SpawnError> {
    let name = argv.first().cloned().unwrap_or_default();
    let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|source| SpawnError::Pipe { service: name.clone(), source })?;
    let w2 = w.try_clone().map_err(|e| SpawnError::Pipe { service: name.clone(), source: nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO)) })?;
    let mut cmd = Command::new(&name);
    cmd.args(&argv[1..]).stdin(Stdio::null()).stdout(Stdio::from(w)).stderr(Stdio::from(w2));
    // SAFETY: single-threaded parent; only syscalls in the child.
    unsafe {
        cmd.pre_exec(|| {
            let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            nix::unistd::setsid()?;
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| SpawnError::Exec { service: name.clone(), path: name.clone(), source })?;
    let pid = child.id() as i32;
    drop(child);
    Ok(Spawned { pid, output: Some(r) })
}
