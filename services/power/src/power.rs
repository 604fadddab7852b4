//! The power manager (SA 3301): one task drives the state machine
//! ([`crate::policy`]) from user activity, running locks, the mode's
//! timeouts and the suspend's outcome; the SA's methods change its inputs
//! and wake it. State, mode and lock changes go to subscribers
//! ([`crate::notify`]).
//!
//! - Running locks are taken by a process (the pid samgr verified for the
//!   caller's connection): a pidfd of that process is watched, and its
//!   locks are let go when it exits. A lock with a timeout lets go by
//!   itself. Bounds: [`MAX_LOCKS_PER_UID`] per uid, [`MAX_LOCKS`] in all
//!   (root's and system's not counted).
//! - The mode is kept in [`Config::state_file`] (written with a temporary
//!   file, fsync and rename before `set_mode` answers), with the reason of
//!   a shutdown or reboot this manager was asked for; the next start
//!   reads both and clears the reason, so `shutdown_reason` tells how the
//!   previous boot ended ("" when it did not end through here).
//! - Shutdown and reboot: the state goes to SHUTDOWN, the shutdown
//!   callbacks run by priority (each priority's callbacks together, at
//!   most [`CALLBACK_DEADLINE`]), the reason is written, then init is
//!   asked through `ohos.startup.powerctrl` (which stops the services).
//! - Suspend: the write to `/sys/power/state` blocks until resume, on a
//!   thread of its own; a refusal is recorded (dump, log) and not retried
//!   until the next activity.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_safwk::typed::Listener;
use accord_safwk::Caller;
use serde::{Deserialize, Serialize};

use crate::config::{PowerConfig, MAX_TIMEOUT_MS, MIN_TIMEOUT_MS};
use crate::policy::{decide, Inputs};
use crate::sleep::Suspender;
use crate::{
    check_name, need, DisplayState, LockInfo, LockType, PowerError, PowerListenerProxy, PowerManager, PowerMode, PowerState, PowerStatus,
    ShutdownCallbackProxy, ShutdownPriority, ShutdownReason, MAX_LOCKS, MAX_LOCKS_PER_UID, MAX_SUBS_PER_UID, PERM_POWER_MANAGER, PERM_POWER_OPTIMIZATION,
    PERM_REBOOT, PERM_RUNNING_LOCK,
};
use accord_safwk::subscribers::Subscribers;

/// OpenHarmony's system uid: its locks and callbacks are not counted in
/// the totals others can fill.
const SYSTEM_UID: u32 = 1000;

/// Where the mode and the shutdown reason are kept in the image.
pub const STATE_FILE: &str = "/data/service/el1/public/power_manager/power.json";
/// How long each priority's shutdown callbacks have, together.
pub const CALLBACK_DEADLINE: Duration = Duration::from_secs(3);

/// How init is asked to reboot or power off: the value of
/// `ohos.startup.powerctrl` (`reboot`, `reboot,shutdown`).
pub type PowerCtl = Arc<dyn Fn(&str) -> Result<(), String> + Send + Sync>;

/// Where the power manager reads and writes (the image's paths by default;
/// tests point them at a temporary tree).
#[derive(Clone)]
pub struct Config {
    pub config: PowerConfig,
    /// `/sys/power`.
    pub sys_power: PathBuf,
    /// [`STATE_FILE`].
    pub state_file: PathBuf,
    /// `/dev/input`, watched for user activity; `None`: no input.
    pub input_dir: Option<PathBuf>,
    /// Sets `ohos.startup.powerctrl`.
    pub powerctl: PowerCtl,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            config: PowerConfig::default(),
            sys_power: "/sys/power".into(),
            state_file: STATE_FILE.into(),
            input_dir: Some("/dev/input".into()),
            powerctl: Arc::new(|v: &str| accord_param::client::set("ohos.startup.powerctrl", v).map_err(|e| format!("ohos.startup.powerctrl={v}: {e}"))),
        }
    }
}

/// What [`Config::state_file`] holds.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    mode: u32,
    #[serde(default)]
    pending: Option<ShutdownReason>,
}

/// A notification to power listeners.
#[derive(Debug, Clone)]
pub enum PowerEvent {
    State(PowerState, DisplayState),
    Mode(PowerMode),
    Lock(LockInfo, bool),
}

struct Lock {
    name: String,
    kind: LockType,
    pid: i32,
    uid: u32,
    since: Instant,
    until: Option<Instant>,
    /// Ends the watch of the holder's process.
    watch: tokio::task::AbortHandle,
}

impl Lock {
    fn info(&self, id: u64, now: Instant) -> LockInfo {
        LockInfo {
            id,
            name: self.name.clone(),
            kind: self.kind,
            pid: self.pid,
            uid: self.uid,
            held_ms: now.saturating_duration_since(self.since).as_millis() as u64,
            left_ms: self.until.map_or(0, |u| u.saturating_duration_since(now).as_millis().max(1) as u64),
        }
    }
}

struct Core {
    cfg: PowerConfig,
    mode: PowerMode,
    override_ms: Option<i64>,
    last_activity: Instant,
    last_reason: String,
    forced: bool,
    refused: bool,
    state: PowerState,
    display: DisplayState,
    locks: BTreeMap<u64, Lock>,
    next_lock: u64,
    last_suspend: String,
    suspends: u64,
    suspending: bool,
    shutting_down: bool,
    /// The shutdown or reboot under way, written with every save so a
    /// later save cannot erase it.
    pending: Option<ShutdownReason>,
}

impl Core {
    fn times(&self) -> crate::config::ModeTimes {
        let mut t = self.cfg.times(self.mode);
        if let Some(ms) = self.override_ms {
            t.display_off_ms = ms;
        }
        t
    }
}

struct Callback {
    id: u64,
    uid: u32,
    priority: ShutdownPriority,
    /// `None` while its handshake runs (the place is taken already).
    proxy: Option<ShutdownCallbackProxy>,
    /// The task that drops it when its process goes.
    watch: Option<tokio::task::AbortHandle>,
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(w) = &self.watch {
            w.abort();
        }
    }
}

struct Shared {
    core: Mutex<Core>,
    wake: tokio::sync::Notify,
    subs: Arc<Subscribers<PowerEvent>>,
    callbacks: Mutex<Vec<Callback>>,
    next_callback: std::sync::atomic::AtomicU64,
    suspender: Suspender,
    /// The state a suspend writes, as the kernel offered at start (it
    /// does not change while the system runs); for `status`.
    suspend_state: Result<String, String>,
    state_file: PathBuf,
    powerctl: PowerCtl,
    previous: ShutdownReason,
    input_devices: std::sync::atomic::AtomicU32,
    /// Taken around every write of the state file, so writes land in the
    /// order of the changes they carry (the core's lock is not held across
    /// the fsyncs).
    save_lock: Mutex<()>,
    rt: tokio::runtime::Handle,
    /// Mode changes (durable writes) per uid in the current second.
    mode_writes: Mutex<std::collections::HashMap<u32, (Instant, u32)>>,
}

/// Most mode changes one uid (root excepted) makes per second: each is an
/// fsync'd write.
pub const MODE_CHANGES_PER_SECOND: u32 = 10;

/// The power manager: see the module doc.
pub struct Power {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Writes `bytes` to `path` durably: a temporary file beside it, fsync,
/// rename, fsync of the directory.
fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

impl Power {
    /// Starts the power manager: reads the state file (the saved mode, and
    /// the previous boot's shutdown reason, which it then clears), starts
    /// the state task and the input watcher. Call it inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// Not inside a runtime.
    pub fn start(cfg: Config) -> Result<Power, String> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| format!("power manager: {e}"))?;
        let saved: Saved = match std::fs::read(&cfg.state_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                tracing::error!("{}: {e}; starting in the normal mode", cfg.state_file.display());
                Saved::default()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(e) => {
                tracing::error!("{}: {e}; starting in the normal mode", cfg.state_file.display());
                Saved::default()
            }
        };
        let mode = PowerMode::from_code(saved.mode).unwrap_or(PowerMode::Normal);
        let previous = saved.pending.unwrap_or_default();
        if !previous.kind.is_empty() {
            tracing::info!("the previous boot ended by {} (reason {:?}, uid {})", previous.kind, previous.reason, previous.uid);
        }
        let now = Instant::now();
        let suspender = Suspender::new(cfg.sys_power.clone(), &cfg.config.suspend_state);
        let shared = Arc::new(Shared {
            core: Mutex::new(Core {
                cfg: cfg.config.clone(),
                mode,
                override_ms: None,
                last_activity: now,
                last_reason: "boot".into(),
                forced: false,
                refused: false,
                state: PowerState::Awake,
                display: DisplayState::On,
                locks: BTreeMap::new(),
                next_lock: 0,
                last_suspend: String::new(),
                suspends: 0,
                suspending: false,
                shutting_down: false,
                pending: None,
            }),
            wake: tokio::sync::Notify::new(),
            subs: Arc::new(Subscribers::new("power listeners", crate::SUB_BOUNDS)),
            callbacks: Mutex::default(),
            next_callback: std::sync::atomic::AtomicU64::new(0),
            suspend_state: suspender.state().map_err(|e| e.to_string()),
            suspender,
            state_file: cfg.state_file.clone(),
            powerctl: cfg.powerctl.clone(),
            previous,
            input_devices: std::sync::atomic::AtomicU32::new(0),
            save_lock: Mutex::new(()),
            rt: rt.clone(),
            mode_writes: Mutex::default(),
        });
        // The reason is the previous boot's: cleared, so a boot that ends
        // without one does not repeat it.
        if let Err(e) = shared.save() {
            tracing::error!("{}: {e}: the power mode will not survive a reboot", cfg.state_file.display());
        }
        tracing::info!(
            "power mode {} ({}); suspend state: {}",
            mode.code(),
            mode.name(),
            match &shared.suspend_state {
                Ok(s) => s.clone(),
                Err(e) => format!("none ({e})"),
            }
        );
        rt.spawn(drive(shared.clone()));
        if let Some(dir) = cfg.input_dir {
            let s = shared.clone();
            rt.spawn(crate::input::watch(dir, Arc::new(move |n| s.input_devices.store(n, std::sync::atomic::Ordering::Relaxed)), {
                let s = shared.clone();
                Arc::new(move || s.activity("input", true))
            }));
        }
        Ok(Power { shared, rt })
    }
}

impl Shared {
    /// Writes the core's mode and pending reason.
    fn save(&self) -> std::io::Result<()> {
        let _turn = accord_safwk::lock(&self.save_lock);
        self.save_locked(None)
    }

    /// [`Shared::save`] with `save_lock` held; `mode` instead of the
    /// core's if given.
    fn save_locked(&self, mode: Option<PowerMode>) -> std::io::Result<()> {
        let saved = {
            let c = accord_safwk::lock(&self.core);
            Saved { mode: mode.unwrap_or(c.mode).code(), pending: c.pending.clone() }
        };
        let bytes = serde_json::to_vec_pretty(&saved).map_err(std::io::Error::other)?;
        write_durably(&self.state_file, &bytes)
    }

    /// User activity: the timers start again; `wake` turns a display that
    /// is off back on (an activity that is not a wake-up does not).
    fn activity(self: &Arc<Self>, reason: &str, wake: bool) {
        let mut c = accord_safwk::lock(&self.core);
        if c.shutting_down || (!wake && c.display == DisplayState::Off) {
            return;
        }
        c.last_activity = Instant::now();
        if c.last_reason != reason {
            c.last_reason = reason.to_owned();
        }
        c.forced = false;
        c.refused = false;
        if wake && c.display == DisplayState::Off {
            // Woken: the policy keeps an off display off otherwise. The
            // state change (and its notification) is the step's.
            c.display = DisplayState::On;
        }
        drop(c);
        self.changed();
    }

    /// An input of the state machine changed: the new state is taken now
    /// (so a caller reads it when its call returns), and the state task
    /// looks again at when the next change is due.
    fn changed(self: &Arc<Self>) {
        self.step();
        self.wake.notify_one();
    }

    /// One turn of the state machine: expired locks go, the decision is
    /// taken and applied (and told, in order: notifications are queued
    /// under the core's lock), a suspend is started if due. Returns when
    /// to look again.
    fn step(self: &Arc<Self>) -> Option<Duration> {
        let now = Instant::now();
        let mut c = accord_safwk::lock(&self.core);
        if c.shutting_down {
            return None;
        }
        let expired: Vec<u64> = c.locks.iter().filter(|(_, l)| l.until.is_some_and(|u| u <= now)).map(|(id, _)| *id).collect();
        for id in expired {
            if let Some(l) = c.locks.remove(&id) {
                l.watch.abort();
                tracing::info!("running lock {id} {:?} ({}) of pid {} timed out", l.name, l.kind.name(), l.pid);
                if l.kind.keeps_screen() && c.display != DisplayState::Off {
                    c.last_activity = now;
                }
                self.subs.send(&PowerEvent::Lock(l.info(id, now), false));
            }
        }
        let inputs = Inputs {
            idle: now.saturating_duration_since(c.last_activity),
            screen_lock: c.locks.values().any(|l| l.kind.keeps_screen()),
            display_off: c.display == DisplayState::Off,
            awake_lock: c.locks.values().any(|l| l.kind.keeps_awake()),
            forced: c.forced,
            refused: c.refused,
        };
        let d = decide(&c.times().timeouts(), &inputs);
        let state = d.state();
        if state != c.state || d.display != c.display {
            tracing::info!("power state {} -> {} (display {})", c.state.name(), state.name(), d.display.name());
            c.state = state;
            c.display = d.display;
            self.subs.send(&PowerEvent::State(state, d.display));
        }
        let suspend = d.suspend && !c.suspending;
        if suspend {
            c.suspending = true;
        }
        let next_lock = c.locks.values().filter_map(|l| l.until).min().map(|u| u.saturating_duration_since(now));
        drop(c);
        if suspend {
            let s = self.clone();
            self.rt.spawn(async move {
                let sus = s.suspender.clone();
                let r = tokio::task::spawn_blocking(move || sus.suspend())
                    .await
                    .unwrap_or_else(|e| Err(crate::sleep::SuspendError::Io { file: "(suspend thread)".into(), why: e.to_string() }));
                s.suspended(r);
            });
        }
        match (d.next, next_lock) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn suspended(self: &Arc<Self>, r: Result<String, crate::sleep::SuspendError>) {
        let mut c = accord_safwk::lock(&self.core);
        c.suspending = false;
        match r {
            Ok(state) => {
                c.suspends += 1;
                c.last_suspend = format!("{state}: resumed ({} since start)", c.suspends);
                drop(c);
                tracing::info!("resumed from suspend ({state})");
                self.activity("resume", true);
            }
            Err(e) => {
                c.refused = true;
                c.last_suspend = format!("refused: {e}");
                drop(c);
                tracing::warn!("suspend refused: {e}; not retried until the next activity");
                self.changed();
            }
        }
    }

    fn lock_count(c: &Core, uid: u32) -> (usize, usize) {
        let of_uid = c.locks.values().filter(|l| l.uid == uid).count();
        let all = c.locks.values().filter(|l| l.uid != 0 && l.uid != SYSTEM_UID).count();
        (of_uid, all)
    }

    fn release(self: &Arc<Self>, id: u64) -> bool {
        let now = Instant::now();
        let mut c = accord_safwk::lock(&self.core);
        let Some(l) = c.locks.remove(&id) else { return false };
        l.watch.abort();
        if l.kind.keeps_screen() && c.display != DisplayState::Off {
            // The display-off time counts from when the screen was let go.
            c.last_activity = now;
        }
        self.subs.send(&PowerEvent::Lock(l.info(id, now), false));
        drop(c);
        self.changed();
        true
    }
}

/// The state task.
async fn drive(shared: Arc<Shared>) {
    loop {
        let next = shared.step();
        match next {
            // A millisecond more, so the deadline has passed when it is
            // looked at again.
            Some(d) => tokio::select! {
                () = shared.wake.notified() => {}
                () = tokio::time::sleep(d + Duration::from_millis(1)) => {}
            },
            None => shared.wake.notified().await,
        }
    }
}

/// A pidfd for `pid` (the holder of a lock).
fn pidfd(pid: i32) -> std::io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new
    // descriptor or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

impl PowerManager for Power {
    fn state(&self) -> PowerState {
        accord_safwk::lock(&self.shared.core).state
    }

    fn status(&self) -> PowerStatus {
        let c = accord_safwk::lock(&self.shared.core);
        let t = c.times();
        PowerStatus {
            state: c.state,
            display: c.display,
            mode: c.mode,
            display_off_ms: t.display_off_ms,
            dim_ms: t.dim_ms,
            sleep_ms: t.sleep_ms,
            overridden: c.override_ms.is_some(),
            idle_ms: c.last_activity.elapsed().as_millis() as u64,
            last_activity: c.last_reason.clone(),
            last_suspend: c.last_suspend.clone(),
            suspends: c.suspends,
            suspend_state: self.shared.suspend_state.clone().unwrap_or_default(),
            input_devices: self.shared.input_devices.load(std::sync::atomic::Ordering::Relaxed),
            suspend_asked: c.forced,
        }
    }

    fn is_screen_on(&self) -> bool {
        matches!(accord_safwk::lock(&self.shared.core).display, DisplayState::On | DisplayState::Dim)
    }

    fn refresh_activity(&self, _caller: &Caller) {
        self.shared.activity("refresh", false);
    }

    fn wakeup_device(&self, caller: &Caller, reason: &str) -> Result<(), PowerError> {
        need(caller, PERM_POWER_MANAGER)?;
        check_name("the reason", reason, true)?;
        tracing::info!("wake-up asked by uid {} pid {} ({reason:?})", caller.uid(), caller.pid());
        self.shared.activity(&format!("wakeup:{reason}"), true);
        Ok(())
    }

    fn suspend_device(&self, caller: &Caller, reason: &str) -> Result<(), PowerError> {
        need(caller, PERM_POWER_MANAGER)?;
        check_name("the reason", reason, true)?;
        tracing::info!("suspend asked by uid {} pid {} ({reason:?})", caller.uid(), caller.pid());
        let mut c = accord_safwk::lock(&self.shared.core);
        if c.shutting_down {
            return Err(PowerError::Failed("shutting down".into()));
        }
        c.forced = true;
        c.refused = false;
        drop(c);
        self.shared.changed();
        Ok(())
    }

    fn mode(&self) -> PowerMode {
        accord_safwk::lock(&self.shared.core).mode
    }

    fn set_mode(&self, caller: &Caller, mode: PowerMode) -> Result<(), PowerError> {
        need(caller, PERM_POWER_OPTIMIZATION)?;
        // Written before the answer, in turn with every other write of the
        // file; the core's lock is not held across the fsyncs.
        let _turn = accord_safwk::lock(&self.shared.save_lock);
        let was = {
            let c = accord_safwk::lock(&self.shared.core);
            if c.shutting_down {
                return Err(PowerError::Failed("shutting down: the mode is not changed any more".into()));
            }
            c.mode
        };
        if was == mode {
            return Ok(());
        }
        if caller.uid() != 0 {
            let mut w = accord_safwk::lock(&self.shared.mode_writes);
            let now = Instant::now();
            w.retain(|_, (since, _)| now.duration_since(*since) < Duration::from_secs(1));
            let (_, n) = w.entry(caller.uid()).or_insert((now, 0));
            if *n >= MODE_CHANGES_PER_SECOND {
                return Err(PowerError::TooMany(format!("uid {} changed the mode {n} times this second, its share", caller.uid())));
            }
            *n += 1;
        }
        self.shared.save_locked(Some(mode)).map_err(|e| PowerError::Failed(format!("{}: {e}", self.shared.state_file.display())))?;
        tracing::info!("power mode {} -> {} ({}) by uid {}", was.code(), mode.code(), mode.name(), caller.uid());
        {
            let mut c = accord_safwk::lock(&self.shared.core);
            c.mode = mode;
            self.shared.subs.send(&PowerEvent::Mode(mode));
        }
        self.shared.changed();
        Ok(())
    }

    fn lock(&self, caller: &Caller, name: &str, kind: LockType, timeout_ms: u64) -> Result<u64, PowerError> {
        need(caller, PERM_RUNNING_LOCK)?;
        check_name("a lock's name", name, false)?;
        if timeout_ms > MAX_TIMEOUT_MS as u64 {
            return Err(PowerError::InvalidArgument(format!("timeout {timeout_ms} ms is longer than {MAX_TIMEOUT_MS} ms")));
        }
        let pidfd = pidfd(caller.pid()).map_err(|e| PowerError::Failed(format!("the holder, pid {}: {e}", caller.pid())))?;
        let now = Instant::now();
        let mut c = accord_safwk::lock(&self.shared.core);
        let (of_uid, all) = Shared::lock_count(&c, caller.uid());
        if caller.uid() != 0 {
            if of_uid >= MAX_LOCKS_PER_UID {
                return Err(PowerError::TooMany(format!("uid {} holds {of_uid} running locks, its share", caller.uid())));
            }
            // System has its own share whatever the others hold.
            if all >= MAX_LOCKS && caller.uid() != SYSTEM_UID {
                return Err(PowerError::TooMany(format!("{all} running locks held in all")));
            }
        }
        c.next_lock += 1;
        let id = c.next_lock;
        // Watches the holder: its exit lets go of the lock.
        let s = Arc::downgrade(&self.shared);
        let pid = caller.pid();
        let watch = self
            .rt
            .spawn(async move {
                // SAFETY: the pidfd is ours and stays open as long as the AsyncFd.
                match unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }.map_err(std::io::Error::from) {
                    Ok(fd) => {
                        let _ = fd.readable().await;
                        tracing::debug!("pidfd {} of pid {pid} readable", fd.get_ref().as_raw_fd());
                    }
                    Err(e) => tracing::warn!("cannot watch pid {pid} for running lock {id}: {e}; it is let go now"),
                }
                if let Some(s) = s.upgrade() {
                    if s.release(id) {
                        tracing::info!("running lock {id} let go: its holder, pid {pid}, exited");
                    }
                }
            })
            .abort_handle();
        if kind == LockType::ProximityScreenControl {
            tracing::warn!("running lock {id} {name:?} is PROXIMITY_SCREEN_CONTROL: accepted, but this device has no proximity sensor, so it has no effect");
        }
        let lock = Lock {
            name: name.to_owned(),
            kind,
            pid,
            uid: caller.uid(),
            since: now,
            until: (timeout_ms > 0).then(|| now + Duration::from_millis(timeout_ms)),
            watch,
        };
        let info = lock.info(id, now);
        c.locks.insert(id, lock);
        self.shared.subs.send(&PowerEvent::Lock(info, true));
        drop(c);
        tracing::info!("running lock {id} {name:?} ({}) taken by pid {pid} uid {}", kind.name(), caller.uid());
        self.shared.changed();
        Ok(id)
    }

    fn unlock(&self, caller: &Caller, id: u64) -> Result<bool, PowerError> {
        let owner = accord_safwk::lock(&self.shared.core).locks.get(&id).map(|l| l.uid);
        match owner {
            None => Ok(false),
            Some(uid) if uid == caller.uid() || caller.uid() == 0 => Ok(self.shared.release(id)),
            Some(_) => Ok(false),
        }
    }

    fn is_used(&self, kind: LockType) -> bool {
        accord_safwk::lock(&self.shared.core).locks.values().any(|l| l.kind == kind)
    }

    fn locks(&self, caller: &Caller) -> Vec<LockInfo> {
        let all = caller.has_permission(PERM_POWER_MANAGER);
        let now = Instant::now();
        let c = accord_safwk::lock(&self.shared.core);
        c.locks.iter().filter(|(_, l)| all || l.uid == caller.uid()).map(|(id, l)| l.info(*id, now)).collect()
    }

    fn override_timeout(&self, caller: &Caller, display_off_ms: i64) -> Result<(), PowerError> {
        need(caller, PERM_POWER_MANAGER)?;
        if display_off_ms != -1 && !(MIN_TIMEOUT_MS..=MAX_TIMEOUT_MS).contains(&display_off_ms) {
            return Err(PowerError::InvalidArgument(format!("display-off time {display_off_ms} ms: -1 (never) or {MIN_TIMEOUT_MS}..={MAX_TIMEOUT_MS}")));
        }
        accord_safwk::lock(&self.shared.core).override_ms = Some(display_off_ms);
        tracing::info!("display-off time overridden to {display_off_ms} ms by uid {}", caller.uid());
        self.shared.changed();
        Ok(())
    }

    fn restore_timeout(&self, caller: &Caller) -> Result<(), PowerError> {
        need(caller, PERM_POWER_MANAGER)?;
        accord_safwk::lock(&self.shared.core).override_ms = None;
        self.shared.changed();
        Ok(())
    }

    fn reboot(&self, caller: &Caller, reason: &str) -> Result<(), PowerError> {
        self.go_down(caller, true, reason)
    }

    fn shutdown(&self, caller: &Caller, reason: &str) -> Result<(), PowerError> {
        self.go_down(caller, false, reason)
    }

    fn shutdown_reason(&self) -> ShutdownReason {
        self.shared.previous.clone()
    }

    fn subscribe(&self, caller: &Caller, listener: Listener<PowerListenerProxy>) -> Result<u64, PowerError> {
        self.shared
            .subs
            .add(&self.rt, caller, listener, PowerListenerProxy::remote, |p, e, lost| async move {
                match e {
                    PowerEvent::State(s, d) => p.on_state(s, d, lost).await,
                    PowerEvent::Mode(m) => p.on_mode(m, lost).await,
                    PowerEvent::Lock(l, held) => p.on_lock(l, held, lost).await,
                }
            })
            .map_err(PowerError::from)
    }

    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, PowerError> {
        if self.shared.subs.remove(caller.uid(), id) {
            return Ok(true);
        }
        // Dropped here: its watch ends and its connection with it.
        let mut cbs = accord_safwk::lock(&self.shared.callbacks);
        let before = cbs.len();
        cbs.retain(|c| !(c.id == id && c.uid == caller.uid() && c.proxy.is_some()));
        Ok(cbs.len() != before)
    }

    fn add_shutdown_callback(&self, caller: &Caller, callback: Listener<ShutdownCallbackProxy>, priority: ShutdownPriority) -> Result<u64, PowerError> {
        need(caller, PERM_REBOOT)?;
        let id = self.shared.next_callback.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1 + (1 << 40);
        {
            // The place is taken before the handshake, so callers racing
            // on many connections cannot pass the share.
            let mut cbs = accord_safwk::lock(&self.shared.callbacks);
            let held = cbs.iter().filter(|c| c.uid == caller.uid()).count();
            if held >= MAX_SUBS_PER_UID {
                return Err(PowerError::TooMany(format!("uid {} holds {held} shutdown callbacks, its share", caller.uid())));
            }
            let others = cbs.iter().filter(|c| !matches!(c.uid, 0 | SYSTEM_UID)).count();
            if others >= crate::MAX_SUBS && !matches!(caller.uid(), 0 | SYSTEM_UID) {
                return Err(PowerError::TooMany(format!("{others} shutdown callbacks held in all")));
            }
            cbs.push(Callback { id, uid: caller.uid(), priority, proxy: None, watch: None });
        }
        let connected = self
            .rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(30), callback.connect()).await })
            .map_err(|_| PowerError::Failed("no handshake with the callback".into()))
            .and_then(|r| r.map_err(|e| PowerError::Failed(format!("the callback cannot be called: {e}"))));
        let proxy = match connected {
            Ok(p) => p,
            Err(e) => {
                accord_safwk::lock(&self.shared.callbacks).retain(|c| c.id != id);
                return Err(e);
            }
        };
        // Gone with its process.
        let remote = proxy.remote().clone();
        let s = Arc::downgrade(&self.shared);
        let watch = self
            .rt
            .spawn(async move {
                remote.died().await;
                if let Some(s) = s.upgrade() {
                    accord_safwk::lock(&s.callbacks).retain(|c| c.id != id);
                }
            })
            .abort_handle();
        let mut cbs = accord_safwk::lock(&self.shared.callbacks);
        match cbs.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.proxy = Some(proxy);
                c.watch = Some(watch);
            }
            None => watch.abort(),
        }
        drop(cbs);
        tracing::info!("shutdown callback {id} ({priority:?}) added by uid {} pid {}", caller.uid(), caller.pid());
        Ok(id)
    }

    fn on_dump(&self, _args: &[String]) -> String {
        let s = self.status();
        let mut out = dump_text(&s, &self.shared.previous);
        let locks: Vec<LockInfo> = {
            let now = Instant::now();
            accord_safwk::lock(&self.shared.core).locks.iter().map(|(id, l)| l.info(*id, now)).collect()
        };
        out.push_str(&locks_text(&locks));
        out.push_str(&format!(
            "listeners: {}  shutdown callbacks: {}\n",
            self.shared.subs.len(),
            accord_safwk::lock(&self.shared.callbacks).iter().filter(|c| c.proxy.is_some()).count()
        ));
        out
    }
}

impl Power {
    fn go_down(&self, caller: &Caller, reboot: bool, reason: &str) -> Result<(), PowerError> {
        need(caller, PERM_REBOOT)?;
        check_name("the reason", reason, true)?;
        let kind = if reboot { "reboot" } else { "shutdown" };
        {
            let mut c = accord_safwk::lock(&self.shared.core);
            if c.shutting_down {
                return Err(PowerError::Failed("a shutdown is already under way".into()));
            }
            c.shutting_down = true;
            c.state = PowerState::Shutdown;
            c.display = DisplayState::Off;
            self.shared.subs.send(&PowerEvent::State(PowerState::Shutdown, DisplayState::Off));
        }
        tracing::warn!("{kind} asked by uid {} pid {} (reason {reason:?})", caller.uid(), caller.pid());
        self.run_callbacks(reboot, reason);
        let record = ShutdownReason { kind: kind.into(), reason: reason.into(), uid: caller.uid(), unix_ms: unix_ms() };
        accord_safwk::lock(&self.shared.core).pending = Some(record);
        if let Err(e) = self.shared.save() {
            tracing::error!("{}: {e}: the next boot will not know why this one ended", self.shared.state_file.display());
        }
        let value = if reboot { "reboot" } else { "reboot,shutdown" };
        if let Err(e) = (self.shared.powerctl)(value) {
            tracing::error!("init refused the {kind}: {e}");
            // Nothing will stop: serve on, and forget the reason.
            accord_safwk::lock(&self.shared.core).pending = None;
            let _ = self.shared.save();
            accord_safwk::lock(&self.shared.core).shutting_down = false;
            self.shared.activity("shutdown refused", true);
            return Err(PowerError::Failed(e));
        }
        Ok(())
    }

    /// Calls the shutdown callbacks, HIGH first; each priority's together,
    /// for at most [`CALLBACK_DEADLINE`].
    fn run_callbacks(&self, reboot: bool, reason: &str) {
        for priority in [ShutdownPriority::High, ShutdownPriority::Default, ShutdownPriority::Low] {
            let group: Vec<(u64, ShutdownCallbackProxy)> =
                accord_safwk::lock(&self.shared.callbacks).iter().filter(|c| c.priority == priority).filter_map(|c| Some((c.id, c.proxy.clone()?))).collect();
            if group.is_empty() {
                continue;
            }
            let started = Instant::now();
            let n = group.len();
            let results = self.rt.block_on(async {
                let calls = group.into_iter().map(|(id, p)| {
                    let reason = reason.to_owned();
                    async move { (id, tokio::time::timeout(CALLBACK_DEADLINE, p.on_shutdown(reboot, reason)).await) }
                });
                futures_join_all(calls).await
            });
            for (id, r) in results {
                match r {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::warn!("shutdown callback {id} ({priority:?}): {e}"),
                    Err(_) => tracing::warn!("shutdown callback {id} ({priority:?}) did not return within {} s: going on", CALLBACK_DEADLINE.as_secs()),
                }
            }
            tracing::info!("{n} {priority:?} shutdown callbacks in {} ms", started.elapsed().as_millis());
        }
    }
}

/// Runs every future at once and collects their outputs (in order).
async fn futures_join_all<F>(futs: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let mut set = tokio::task::JoinSet::new();
    for (i, f) in futs.enumerate() {
        set.spawn(async move { (i, f.await) });
    }
    let mut out: Vec<(usize, F::Output)> = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(v) = r {
            out.push(v);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, v)| v).collect()
}

/// `power-shell dump`'s text (the locks apart).
pub fn dump_text(s: &PowerStatus, previous: &ShutdownReason) -> String {
    let ms = |v: i64| if v < 0 { "never".to_owned() } else { format!("{v} ms") };
    format!(
        "power manager (SA {}):\n  state: {}  display: {}\n  mode: {} ({})\n  display off: {}{}  dim: {}  sleep after display off: {}\n  idle: {} ms (last activity: {})\n  suspend state: {}  suspends: {}  last suspend: {}\n  input devices watched: {}\n  previous boot ended: {}\n",
        crate::ID,
        s.state.name(),
        s.display.name(),
        s.mode.code(),
        s.mode.name(),
        ms(s.display_off_ms),
        if s.overridden { " (overridden)" } else { "" },
        ms(s.dim_ms),
        ms(s.sleep_ms),
        s.idle_ms,
        s.last_activity,
        if s.suspend_state.is_empty() { "none offered" } else { &s.suspend_state },
        s.suspends,
        if s.last_suspend.is_empty() { "-" } else { &s.last_suspend },
        s.input_devices,
        if previous.kind.is_empty() { "unknown (not through the power manager)".to_owned() } else { format!("{} (reason {:?}, uid {})", previous.kind, previous.reason, previous.uid) },
    ) + if s.suspend_asked && s.state != PowerState::Sleep {
        "  suspend asked: waiting until no running lock keeps the system awake (a wake-up cancels it)\n"
    } else {
        ""
    }
}

/// `power-shell lock`'s text.
pub fn locks_text(locks: &[LockInfo]) -> String {
    let mut out = format!("running locks: {}\n", locks.len());
    for l in locks {
        out.push_str(&format!(
            "  {:>4}  {:<24} {:<13} pid {:<6} uid {:<6} held {} ms{}\n",
            l.id,
            l.name,
            l.kind.name(),
            l.pid,
            l.uid,
            l.held_ms,
            if l.left_ms > 0 { format!(", {} ms left", l.left_ms) } else { String::new() }
        ));
    }
    out
}
