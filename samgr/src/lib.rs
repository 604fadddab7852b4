//! samgr: the system ability registry.
//!
//! Owns which process hosts which system ability (SA, by id), the SAs'
//! states (NOT_LOADED, LOADING, LOADED, UNLOADING), loading on-demand SAs
//! by asking init to start their process, unloading idle ones, telling
//! subscribers, and the access policy. It hands out direct connections:
//! on `GetSystemAbility` it makes a socket pair, gives one end to the SA's
//! host together with the caller's identity (SO_PEERCRED of the caller's
//! connection to samgr, taken when it connected) and returns the other
//! end. Calls never pass through samgr afterwards.
//!
//! Every registry change goes through [`State`] under one lock that is
//! never held across an await; waiters (getters of a loading SA) watch a
//! generation counter bumped after each change.

pub mod cli;
pub mod procinfo;

use std::collections::{BTreeMap, HashMap};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use accord_ipc::Identity;
use accord_safwk::policy::{self, Policy};
use accord_safwk::profile::Profile;
use accord_safwk::{ProcessInfo, SaInfo, SaProps, SystemAbilityHostProxy, SystemAbilityListenerProxy, MAX_SA_ID, MAX_SUBSCRIPTIONS, SAMGR_PATH};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};
use zbus::fdo;
use zbus::zvariant;

/// Starts the process that hosts on-demand SAs (init's `ohos.ctl.start`
/// on a device; tests may start hosts themselves).
pub trait Starter: Send + Sync + 'static {
    /// Ask for `process` to be started. Blocking is fine (runs on a
    /// blocking thread).
    fn start(&self, process: &str) -> Result<(), String>;
    /// Whether `process` is known to be stopped (not running, not
    /// exiting), if the starter can tell.
    fn stopped(&self, _process: &str) -> Option<bool> {
        None
    }
    /// The pid of the process the starter started for `process`
    /// (OpenHarmony: init's service of that name). Only that process may
    /// register the name (`AddSystemProcess`).
    fn service_pid(&self, _process: &str) -> ServicePid {
        ServicePid::Unknown
    }
}

/// What a [`Starter`] knows of a service's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServicePid {
    /// It cannot tell (no such record): then only root may register the
    /// name.
    Unknown,
    /// The service is not running: nobody may register the name.
    NotRunning,
    /// The service runs as this pid: only that process may.
    Pid(i32),
}

/// Starts processes through init's parameter service.
pub struct InitStarter;

impl Starter for InitStarter {
    fn start(&self, process: &str) -> Result<(), String> {
        if accord_param::client::get(&format!("startup.service.ctl.{process}")).is_err() {
            return Err(format!("init has no service named {process:?} (add it to an init cfg with \"ondemand\": true)"));
        }
        accord_param::client::set("ohos.ctl.start", process).map_err(|e| format!("ohos.ctl.start={process}: {e}"))
    }

    fn stopped(&self, process: &str) -> Option<bool> {
        let v = accord_param::client::get(&format!("startup.service.ctl.{process}")).ok()?;
        Some(!matches!(v.as_str(), "running" | "starting" | "stopping"))
    }

    /// init publishes the pid of each service it started as
    /// `startup.service.ctl.<name>.pid` (0 or empty when not running).
    /// Asked over init's socket, never read from the shared table: a
    /// process init just forked can reach samgr before init, back from
    /// fork, has updated the table, but init answers a request only after
    /// the turn that started the process (and set its pid) is over.
    fn service_pid(&self, process: &str) -> ServicePid {
        let name = format!("startup.service.ctl.{process}.pid");
        match accord_param::client::Client::connect().and_then(|c| c.get_opt(&name)) {
            Err(_) | Ok(None) => ServicePid::Unknown,
            Ok(Some(v)) => match v.trim().parse::<i32>() {
                Ok(pid) if pid > 0 => ServicePid::Pid(pid),
                _ => ServicePid::NotRunning,
            },
        }
    }
}

/// The bounds samgr keeps on its clients (ARCHITECTURE.md, invariants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most connections samgr holds at once, all uids together
    /// ([`MAX_CONNECTIONS`]; lowered to fit RLIMIT_NOFILE at start).
    pub connections: usize,
    /// Most connections one uid other than root holds at once
    /// ([`MAX_CONNECTIONS_PER_UID`]).
    pub per_uid: usize,
    /// Largest message samgr reads, in bytes ([`MAX_MESSAGE`]); a header
    /// announcing more closes the connection before anything is allocated.
    pub max_message: usize,
    /// How long a listener may take to accept one notification before
    /// samgr hangs up on it ([`NOTIFY_TIMEOUT`]).
    pub notify_timeout: Duration,
}

/// Default [`Limits::connections`].
pub const MAX_CONNECTIONS: usize = 4096;
/// Default [`Limits::per_uid`]: well above what one service needs (one
/// connection per SA host or client handle), far below the total.
pub const MAX_CONNECTIONS_PER_UID: usize = 256;
/// Default [`Limits::max_message`]: samgr's methods take ids, names and
/// short strings; 64 KiB is ample.
pub const MAX_MESSAGE: usize = 64 << 10;
/// Default [`Limits::notify_timeout`].
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(4);

impl Default for Limits {
    fn default() -> Limits {
        // Keep room under the descriptor limit for hosts' socket pairs,
        // profiles and logs: running out of descriptors must not be how
        // the cap is met.
        let nofile = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).map(|(soft, _)| soft as usize).unwrap_or(1024);
        let connections = MAX_CONNECTIONS.min(nofile.saturating_sub(64) / 2).max(16);
        Limits { connections, per_uid: MAX_CONNECTIONS_PER_UID.min(connections), max_message: MAX_MESSAGE, notify_timeout: NOTIFY_TIMEOUT }
    }
}

/// Connections held now, in all and by uid.
#[derive(Default)]
struct Held {
    total: usize,
    by_uid: HashMap<u32, usize>,
}

/// One slot of [`Held`]; given back when dropped.
struct Slot {
    held: Arc<Mutex<Held>>,
    uid: u32,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut h = accord_ipc::lock(&self.held);
        h.total -= 1;
        if let Some(n) = h.by_uid.get_mut(&self.uid) {
            *n -= 1;
            if *n == 0 {
                h.by_uid.remove(&self.uid);
            }
        }
    }
}

/// A client's connection and the means to hang it up (a duplicate of its
/// socket: shutdown(2) ends it whoever else holds it).
#[derive(Clone)]
struct Link {
    conn: zbus::Connection,
    hangup: Arc<OwnedFd>,
    who: Identity,
}

impl Link {
    fn hang_up(&self) {
        let _ = nix::sys::socket::shutdown(self.hangup.as_raw_fd(), nix::sys::socket::Shutdown::Both);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SaState {
    NotLoaded,
    Loading,
    Loaded,
    Unloading,
}

impl SaState {
    fn as_str(self) -> &'static str {
        match self {
            SaState::NotLoaded => "NOT_LOADED",
            SaState::Loading => "LOADING",
            SaState::Loaded => "LOADED",
            SaState::Unloading => "UNLOADING",
        }
    }
}

struct Reg {
    /// The host's interface, on its connection to samgr.
    host: SystemAbilityHostProxy<'static>,
    /// Which samgr connection registered it (removed when it closes).
    host_conn: u64,
    owner: Identity,
    /// A permission callers must hold (`SaProps::permission`), if any.
    permission: String,
}

struct Sa {
    /// The process (profile) that hosts it, if a profile lists it.
    process: Option<String>,
    state: SaState,
    reg: Option<Reg>,
    /// Number of the current or last load attempt and why it failed.
    attempt: u64,
    failed: Option<(u64, String)>,
}

struct Proc {
    /// The connection of the running host.
    conn: Option<HostLink>,
    /// It told us it exits (its last SA unloaded).
    exiting: bool,
}

#[derive(Clone)]
struct HostLink {
    /// samgr's connection id.
    id: u64,
    who: Identity,
    host: SystemAbilityHostProxy<'static>,
}

/// The host interface on a host's connection (built once per
/// registration, not per call).
async fn host_proxy(conn: &zbus::Connection) -> fdo::Result<SystemAbilityHostProxy<'static>> {
    SystemAbilityHostProxy::builder(conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.map_err(|e| fdo::Error::Failed(e.to_string()))
}

#[derive(Default)]
struct State {
    sas: BTreeMap<u32, Sa>,
    procs: BTreeMap<String, Proc>,
    /// SA id → subscribers (samgr connection id, connection).
    subscribers: BTreeMap<u32, Vec<(u64, Link)>>,
}

impl State {
    /// SA `id` has no host any more: a profile SA goes back to NOT_LOADED,
    /// any other is forgotten.
    fn withdraw(&mut self, id: u32) {
        if let Some(sa) = self.sas.get_mut(&id) {
            sa.reg = None;
            sa.state = SaState::NotLoaded;
            if sa.process.is_none() {
                self.sas.remove(&id);
            }
        }
    }
}

/// What samgr knows; cheap to clone (shared).
#[derive(Clone)]
pub struct Registry {
    state: Arc<Mutex<State>>,
    policy: Arc<Policy>,
    starter: Arc<dyn Starter>,
    changed: Arc<watch::Sender<u64>>,
    load_timeout: Duration,
    limits: Limits,
    held: Arc<Mutex<Held>>,
}

impl Default for Registry {
    fn default() -> Registry {
        Registry::new(Policy::default(), Vec::new(), Arc::new(InitStarter))
    }
}

fn check_id(id: u32) -> fdo::Result<()> {
    if id == 0 || id > MAX_SA_ID {
        return Err(fdo::Error::InvalidArgs(format!("SA id {id} is outside 1..={MAX_SA_ID}")));
    }
    Ok(())
}

impl Registry {
    /// A registry enforcing `policy` that knows the SAs of `profiles` and
    /// starts their processes with `starter`.
    pub fn new(policy: Policy, profiles: Vec<Profile>, starter: Arc<dyn Starter>) -> Registry {
        let mut st = State::default();
        for p in profiles {
            for sa in p.abilities {
                if let Some(other) = st.sas.get(&sa.id) {
                    warn!(
                        "SA {} is in the profiles of {} and {}; keeping {}",
                        sa.id,
                        other.process.as_deref().unwrap_or("?"),
                        p.process,
                        other.process.as_deref().unwrap_or("?")
                    );
                    continue;
                }
                st.sas.insert(sa.id, Sa { process: Some(p.process.clone()), state: SaState::NotLoaded, reg: None, attempt: 0, failed: None });
            }
            st.procs.entry(p.process).or_insert(Proc { conn: None, exiting: false });
        }
        Registry {
            state: Arc::new(Mutex::new(st)),
            policy: Arc::new(policy),
            starter,
            changed: Arc::new(watch::channel(0).0),
            load_timeout: accord_safwk::LOAD_TIMEOUT,
            limits: Limits::default(),
            held: Arc::default(),
        }
    }

    /// How long a load may take before its waiters get an error.
    pub fn with_load_timeout(mut self, t: Duration) -> Registry {
        self.load_timeout = t;
        self
    }

    /// The same registry with other bounds.
    pub fn with_limits(mut self, limits: Limits) -> Registry {
        self.limits = limits;
        self
    }

    /// A connection slot for `uid`, or why not (root is held to the total
    /// only).
    fn take_slot(&self, uid: u32) -> Result<Slot, String> {
        let mut h = accord_ipc::lock(&self.held);
        if h.total >= self.limits.connections {
            return Err(format!("samgr holds {} connections, its limit", h.total));
        }
        let mine = h.by_uid.get(&uid).copied().unwrap_or(0);
        if uid != 0 && mine >= self.limits.per_uid {
            return Err(format!("uid {uid} holds {mine} connections, the per-uid limit"));
        }
        h.total += 1;
        *h.by_uid.entry(uid).or_default() += 1;
        Ok(Slot { held: self.held.clone(), uid })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // State stays consistent between statements; a panic in one
        // handler must not take samgr down.
        accord_ipc::lock(&self.state)
    }

    fn bump(&self) {
        self.changed.send_modify(|g| *g += 1);
    }

    fn allow(&self, id: u32, who: &Identity, groups: &[u32], action: policy::Action) -> fdo::Result<()> {
        self.policy.check(id, &policy::Subject { uid: who.uid, gid: who.gid, groups }, action).map_err(|why| {
            warn!("denied (pid {}): {why}", who.pid);
            fdo::Error::AccessDenied(why)
        })
    }

    /// Tells the subscribers of `id` without waiting for them (no-reply
    /// calls from a task of their own).
    fn notify(&self, st: &State, id: u32, added: bool) {
        let Some(list) = st.subscribers.get(&id) else { return };
        for (_, link) in list {
            tell(link.clone(), self.limits.notify_timeout, move |p| async move {
                if added {
                    p.on_add_system_ability(id).await
                } else {
                    p.on_remove_system_ability(id).await
                }
            });
        }
    }

    /// Starts loading SA `id` unless it is loaded or loading. Returns the
    /// attempt number to wait on.
    fn start_load(&self, id: u32) -> Result<u64, fdo::Error> {
        let mut st = self.lock();
        let sa = st.sas.get_mut(&id).ok_or_else(|| fdo::Error::ServiceUnknown(format!("SA {id} is not registered and no profile lists it")))?;
        match sa.state {
            SaState::Loaded | SaState::Loading | SaState::Unloading => return Ok(sa.attempt),
            SaState::NotLoaded => {}
        }
        let Some(process) = sa.process.clone() else {
            return Err(fdo::Error::ServiceUnknown(format!("SA {id} is not registered and no profile lists it")));
        };
        sa.state = SaState::Loading;
        sa.attempt += 1;
        let attempt = sa.attempt;
        let running = st.procs.get(&process).and_then(|p| if p.exiting { None } else { p.conn.as_ref().map(|c| c.host.clone()) });
        drop(st);
        self.bump();
        info!("SA {id}: loading (process {process})");
        let reg = self.clone();
        tokio::spawn(async move {
            let r = match running {
                Some(host) => load_in_running(id, host).await,
                None => reg.start_process(&process).await,
            };
            if let Err(why) = r {
                reg.fail_load(id, attempt, why);
            }
        });
        let reg = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(reg.load_timeout).await;
            reg.fail_load(id, attempt, format!("SA {id} did not register within {} ms", reg.load_timeout.as_millis()));
        });
        Ok(attempt)
    }

    async fn start_process(&self, process: &str) -> Result<(), String> {
        // A host that is exiting must be gone before it can be started
        // again (init ignores a start of a running service).
        let deadline = tokio::time::Instant::now() + self.load_timeout;
        loop {
            let exiting = self.lock().procs.get(process).is_some_and(|p| p.exiting || p.conn.is_some());
            let (starter, name) = (self.starter.clone(), process.to_owned());
            let stopped = tokio::task::spawn_blocking(move || starter.stopped(&name)).await.ok().flatten();
            if !exiting && stopped != Some(false) {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!("process {process} did not exit after its last SA unloaded"));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let (starter, name) = (self.starter.clone(), process.to_owned());
        tokio::task::spawn_blocking(move || starter.start(&name)).await.map_err(|e| e.to_string())??;
        debug!("asked for process {process} to start");
        Ok(())
    }

    fn fail_load(&self, id: u32, attempt: u64, why: String) {
        let mut st = self.lock();
        let Some(sa) = st.sas.get_mut(&id) else { return };
        if sa.attempt != attempt || sa.state != SaState::Loading {
            return;
        }
        warn!("SA {id}: load failed: {why}");
        sa.state = SaState::NotLoaded;
        sa.failed = Some((attempt, why));
        drop(st);
        self.bump();
    }

    /// Waits until SA `id` is loaded (loading it if needed); its host's
    /// connection and the permission it requires, or why not.
    async fn loaded(&self, id: u32) -> fdo::Result<(SystemAbilityHostProxy<'static>, String)> {
        let mut rx = self.changed.subscribe();
        let deadline = tokio::time::Instant::now() + self.load_timeout + Duration::from_millis(200);
        let mut waiting_on: Option<u64> = None;
        loop {
            {
                let st = self.lock();
                let sa = st.sas.get(&id).ok_or_else(|| fdo::Error::ServiceUnknown(format!("SA {id} is not registered and no profile lists it")))?;
                match (sa.state, &sa.reg) {
                    (SaState::Loaded, Some(r)) => return Ok((r.host.clone(), r.permission.clone())),
                    (SaState::NotLoaded, _) => {
                        if let (Some(w), Some((a, why))) = (waiting_on, &sa.failed) {
                            if *a == w {
                                return Err(fdo::Error::Failed(format!("SA {id} failed to load: {why}")));
                            }
                        }
                        if sa.process.is_none() {
                            return Err(fdo::Error::ServiceUnknown(format!("SA {id} is not registered and no profile lists it")));
                        }
                    }
                    _ => {}
                }
            }
            // Not loaded: start a load (or join the one under way).
            if self.lock().sas.get(&id).is_some_and(|s| s.state == SaState::NotLoaded) {
                waiting_on = Some(self.start_load(id)?);
                continue;
            }
            if waiting_on.is_none() {
                waiting_on = self.lock().sas.get(&id).map(|s| s.attempt);
            }
            match tokio::time::timeout_at(deadline, rx.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(fdo::Error::Failed("samgr is shutting down".into())),
                Err(_) => return Err(fdo::Error::TimedOut(format!("SA {id} did not load within {} ms", self.load_timeout.as_millis()))),
            }
        }
    }

    /// Drops every SA registered over connection `conn_id` (its host
    /// process exited or hung up) and its subscriptions; tells the
    /// subscribers of the SAs; fails loads its process owed; returns the
    /// SA ids.
    fn remove_host(&self, conn_id: u64) -> Vec<u32> {
        let mut st = self.lock();
        let gone: Vec<u32> = st.sas.iter().filter(|(_, s)| s.reg.as_ref().is_some_and(|r| r.host_conn == conn_id)).map(|(id, _)| *id).collect();
        for id in &gone {
            st.withdraw(*id);
        }
        let mut dead_procs = Vec::new();
        for (name, p) in st.procs.iter_mut() {
            if p.conn.as_ref().is_some_and(|c| c.id == conn_id) {
                p.conn = None;
                if !p.exiting {
                    dead_procs.push(name.clone());
                }
                p.exiting = false;
            }
        }
        // A load its process owed will not come: fail it now.
        let owed: Vec<(u32, u64)> = st
            .sas
            .iter()
            .filter(|(_, s)| s.state == SaState::Loading && s.process.as_ref().is_some_and(|p| dead_procs.contains(p)))
            .map(|(id, s)| (*id, s.attempt))
            .collect();
        for list in st.subscribers.values_mut() {
            list.retain(|(c, _)| *c != conn_id);
        }
        for id in &gone {
            self.notify(&st, *id, false);
        }
        drop(st);
        for (id, attempt) in owed {
            self.fail_load(id, attempt, "its process exited before registering it".into());
        }
        self.bump();
        gone
    }
}

/// How long samgr waits for an SA host to answer one of its calls: a
/// stuck host must not hold a getter (or an unload) forever.
const HOST_CALL_TIMEOUT: Duration = Duration::from_secs(4);

/// A call to an SA host, failing after [`HOST_CALL_TIMEOUT`].
async fn bounded<T>(call: impl std::future::Future<Output = zbus::Result<T>>) -> zbus::Result<T> {
    match tokio::time::timeout(HOST_CALL_TIMEOUT, call).await {
        Ok(r) => r,
        Err(_) => Err(zbus::Error::Failure(format!("the SA host did not answer within {} s", HOST_CALL_TIMEOUT.as_secs()))),
    }
}

/// Asks a running host to load SA `id`.
async fn load_in_running(id: u32, host: SystemAbilityHostProxy<'static>) -> Result<(), String> {
    bounded(host.load(id)).await.map_err(|e| format!("its process could not load it: {e}"))
}

/// Calls a listener method on `link` from a task of its own. A listener
/// that does not take the message within `deadline` (it stopped reading
/// and its socket is full) is hung up on: its notifications cannot pile up
/// in samgr.
fn tell<F, Fut>(link: Link, deadline: Duration, f: F)
where
    F: FnOnce(SystemAbilityListenerProxy<'static>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = zbus::Result<()>> + Send,
{
    tokio::spawn(async move {
        let send = async {
            if let Ok(p) = SystemAbilityListenerProxy::builder(&link.conn).cache_properties(zbus::proxy::CacheProperties::No).build().await {
                let _ = f(p).await;
            }
        };
        if tokio::time::timeout(deadline, send).await.is_err() {
            warn!("samgr: pid {} (uid {}) took no notification within {} ms; hanging up on it", link.who.pid, link.who.uid, deadline.as_millis());
            link.hang_up();
        }
    });
}

/// One client's (or SA host's) view of samgr.
struct SamgrIface {
    registry: Registry,
    conn_id: u64,
    /// The kernel's word on who connected (SO_PEERCRED at accept).
    who: Identity,
    /// The start time of the process that held `who.pid` at accept (None:
    /// none did). The pid names the connecting process only while this
    /// matches: it may have exited and its pid been reused.
    start: Option<u64>,
    /// Its supplementary groups (SO_PEERGROUPS at accept).
    groups: Arc<[u32]>,
    /// A duplicate of the client's socket, to hang up on it.
    hangup: Arc<OwnedFd>,
}

impl SamgrIface {
    fn subject(&self) -> policy::Subject<'_> {
        policy::Subject { uid: self.who.uid, gid: self.who.gid, groups: &self.groups }
    }

    fn allow(&self, id: u32, action: policy::Action) -> fdo::Result<()> {
        self.registry.allow(id, &self.who, &self.groups, action)
    }

    /// Listing SAs and processes: root, or whom the policy's `list` admits.
    fn allow_list(&self) -> fdo::Result<()> {
        if self.registry.policy.may_list(&self.subject()) {
            return Ok(());
        }
        warn!("denied (pid {}): uid {} may not list SAs", self.who.pid, self.who.uid);
        Err(fdo::Error::AccessDenied(format!("uid {} may not list SAs (policy {:?}: list)", self.who.uid, self.registry.policy.source)))
    }

    fn link(&self, conn: &zbus::Connection) -> Link {
        Link { conn: conn.clone(), hangup: self.hangup.clone(), who: self.who }
    }
}

impl SamgrIface {
    /// Only the SA's host connection, or root, may withdraw it.
    fn owns(&self, st: &State, id: u32) -> fdo::Result<()> {
        let Some(reg) = st.sas.get(&id).and_then(|s| s.reg.as_ref()) else {
            return Err(fdo::Error::ServiceUnknown(format!("SA {id} is not registered")));
        };
        if reg.host_conn == self.conn_id || self.who.uid == 0 {
            return Ok(());
        }
        Err(fdo::Error::AccessDenied(format!("uid {} may not withdraw SA {id} (registered by pid {})", self.who.uid, reg.owner.pid)))
    }
}

#[zbus::interface(name = "org.accord.SystemAbilityManager")]
impl SamgrIface {
    async fn add_system_ability(&self, id: u32, props: SaProps, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<()> {
        check_id(id)?;
        let who = self.who;
        self.allow(id, policy::Action::Register)?;
        let host = host_proxy(conn).await?;
        let mut st = self.registry.lock();
        // An SA a profile lists is that profile's process's alone.
        if let Some(p) = st.sas.get(&id).and_then(|s| s.process.clone()) {
            if st.procs.get(&p).and_then(|pr| pr.conn.as_ref()).map(|c| c.id) != Some(self.conn_id) {
                drop(st);
                warn!("denied (pid {}, uid {}): SA {id} belongs to process {p} (its profile)", who.pid, who.uid);
                return Err(fdo::Error::AccessDenied(format!("SA {id} belongs to process {p} (its profile); pid {} is not it", who.pid)));
            }
        }
        let sa = st.sas.entry(id).or_insert(Sa { process: None, state: SaState::NotLoaded, reg: None, attempt: 0, failed: None });
        if let Some(old) = &sa.reg {
            if old.host_conn != self.conn_id {
                return Err(fdo::Error::FileExists(format!("SA {id} is already registered by pid {}", old.owner.pid)));
            }
        }
        sa.reg = Some(Reg { host: host.clone(), host_conn: self.conn_id, owner: who, permission: props.permission.clone() });
        sa.state = SaState::Loaded;
        self.registry.notify(&st, id, true);
        drop(st);
        self.registry.bump();
        info!("SA {id} added by pid {} (uid {}){}", who.pid, who.uid, if props.distributed { ", distributed" } else { "" });
        Ok(())
    }

    async fn remove_system_ability(&self, id: u32) -> fdo::Result<()> {
        check_id(id)?;
        let mut st = self.registry.lock();
        self.owns(&st, id)?;
        st.withdraw(id);
        self.registry.notify(&st, id, false);
        drop(st);
        self.registry.bump();
        info!("SA {id} removed by pid {}", self.who.pid);
        Ok(())
    }

    async fn get_system_ability(&self, id: u32) -> fdo::Result<zvariant::OwnedFd> {
        check_id(id)?;
        let who = self.who;
        self.allow(id, policy::Action::Get)?;
        // The SA may unload between our look and the host's answer: then
        // look (and load) again, within the load deadline.
        let mut tries = 0;
        loop {
            let (host, permission) = self.registry.loaded(id).await?;
            if !permission.is_empty() && !self.registry.policy.has_permission(&permission, &self.subject()) {
                warn!("denied (pid {}): uid {} lacks {permission} for SA {id}", who.pid, who.uid);
                return Err(fdo::Error::AccessDenied(format!("uid {} lacks {permission}, which SA {id} requires", who.uid)));
            }
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| fdo::Error::IOError(e.to_string()))?;
            let fd: std::os::fd::OwnedFd = ours.into();
            match bounded(host.connect(id, fd.into(), who.uid, who.gid, who.pid, self.groups.to_vec())).await {
                Ok(()) => {
                    let fd: std::os::fd::OwnedFd = theirs.into();
                    return Ok(fd.into());
                }
                // The host's bound on its clients (per uid, total): final,
                // and the getter hears which.
                Err(zbus::Error::MethodError(name, msg, _)) if name.as_str() == "org.freedesktop.DBus.Error.LimitsExceeded" => {
                    return Err(fdo::Error::LimitsExceeded(format!("SA {id}: {}", msg.unwrap_or_default())));
                }
                Err(e) if tries < 3 => {
                    debug!("SA {id}: host refused pid {}'s connection ({e}); looking again", who.pid);
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(e) => {
                    warn!("SA {id}: its host refused a connection for pid {}: {e}", who.pid);
                    return Err(fdo::Error::Failed(format!("SA {id} is unreachable: {e}")));
                }
            }
        }
    }

    fn check_system_ability(&self, id: u32) -> fdo::Result<bool> {
        check_id(id)?;
        self.allow(id, policy::Action::Get)?;
        Ok(self.registry.lock().sas.get(&id).is_some_and(|s| s.state == SaState::Loaded))
    }

    fn list_system_abilities(&self) -> fdo::Result<Vec<(u32, String)>> {
        self.allow_list()?;
        Ok(self.registry.lock().sas.iter().map(|(id, s)| (*id, s.state.as_str().to_owned())).collect())
    }

    /// Every SA with state, process, host pid and uid, for `hidumper -ls`.
    fn dump_system_abilities(&self) -> fdo::Result<Vec<SaInfo>> {
        self.allow_list()?;
        let st = self.registry.lock();
        Ok(st
            .sas
            .iter()
            .map(|(id, s)| SaInfo {
                id: *id,
                state: s.state.as_str().to_owned(),
                process: s.process.clone().unwrap_or_default(),
                pid: s.reg.as_ref().map(|r| r.owner.pid).unwrap_or(0),
                uid: s.reg.as_ref().map(|r| r.owner.uid).unwrap_or(0),
            })
            .collect())
    }

    async fn load_system_ability(&self, id: u32, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<()> {
        check_id(id)?;
        self.allow(id, policy::Action::Get)?;
        let (registry, link) = (self.registry.clone(), self.link(conn));
        let deadline = registry.limits.notify_timeout;
        tokio::spawn(async move {
            match registry.loaded(id).await {
                Ok(_) => tell(link, deadline, move |p| async move { p.on_load_system_ability_success(id).await }),
                Err(e) => {
                    let why = match &e {
                        fdo::Error::Failed(m) | fdo::Error::TimedOut(m) | fdo::Error::ServiceUnknown(m) => m.clone(),
                        other => other.to_string(),
                    };
                    tell(link, deadline, move |p| async move { p.on_load_system_ability_fail(id, &why).await })
                }
            }
        });
        Ok(())
    }

    async fn unload_system_ability(&self, id: u32) -> fdo::Result<()> {
        check_id(id)?;
        let (host, process) = {
            let mut st = self.registry.lock();
            self.owns(&st, id)?;
            let sa = st.sas.get_mut(&id).ok_or_else(|| fdo::Error::ServiceUnknown(format!("SA {id} is not registered")))?;
            if sa.state != SaState::Loaded {
                return Err(fdo::Error::Failed(format!("SA {id} is {}", sa.state.as_str())));
            }
            sa.state = SaState::Unloading;
            (sa.reg.as_ref().map(|r| r.host.clone()), sa.process.clone())
        };
        self.registry.bump();
        let stopped = match host {
            Some(h) => bounded(h.stop(id, false)).await,
            None => Ok((true, false)),
        };
        let mut st = self.registry.lock();
        let result = match stopped {
            Ok((true, exiting)) => {
                st.withdraw(id);
                if let Some(p) = process.as_ref().and_then(|p| st.procs.get_mut(p)) {
                    p.exiting |= exiting;
                }
                self.registry.notify(&st, id, false);
                info!("SA {id} unloaded{}", if exiting { "; its process exits" } else { "" });
                Ok(())
            }
            Ok((false, _)) => {
                if let Some(sa) = st.sas.get_mut(&id).filter(|s| s.state == SaState::Unloading) {
                    sa.state = SaState::Loaded;
                }
                Err(fdo::Error::Failed(format!("SA {id} stays: it has clients or its on_idle refused")))
            }
            Err(e) => {
                if let Some(sa) = st.sas.get_mut(&id).filter(|s| s.state == SaState::Unloading) {
                    sa.state = SaState::Loaded;
                }
                Err(fdo::Error::Failed(format!("SA {id}: its host did not answer the unload: {e}")))
            }
        };
        drop(st);
        self.registry.bump();
        result
    }

    async fn subscribe_system_ability(&self, id: u32, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<()> {
        check_id(id)?;
        self.allow(id, policy::Action::Get)?;
        let mut st = self.registry.lock();
        let held = st.subscribers.values().map(|v| v.iter().filter(|(c, _)| *c == self.conn_id).count()).sum::<usize>();
        let list = st.subscribers.entry(id).or_default();
        if list.iter().any(|(c, _)| *c == self.conn_id) {
            return Ok(());
        }
        if held >= MAX_SUBSCRIPTIONS {
            return Err(fdo::Error::LimitsExceeded(format!("at most {MAX_SUBSCRIPTIONS} subscriptions per caller")));
        }
        let link = self.link(conn);
        list.push((self.conn_id, link.clone()));
        if st.sas.get(&id).is_some_and(|s| s.state == SaState::Loaded) {
            tell(link, self.registry.limits.notify_timeout, move |p| async move { p.on_add_system_ability(id).await });
        }
        Ok(())
    }

    fn unsubscribe_system_ability(&self, id: u32) {
        let mut st = self.registry.lock();
        if let Some(list) = st.subscribers.get_mut(&id) {
            list.retain(|(c, _)| *c != self.conn_id);
        }
    }

    fn get_running_system_process(&self) -> fdo::Result<Vec<ProcessInfo>> {
        self.allow_list()?;
        let st = self.registry.lock();
        Ok(st.procs.iter().filter_map(|(name, p)| p.conn.as_ref().map(|c| ProcessInfo { name: name.clone(), pid: c.who.pid, uid: c.who.uid })).collect())
    }

    async fn add_system_process(&self, name: &str, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<Vec<u32>> {
        if !self.registry.lock().procs.contains_key(name) {
            return Err(fdo::Error::ServiceUnknown(format!("no SA profile names process {name:?}")));
        }
        // Only the process init started for the service may be it.
        let (starter, n) = (self.registry.starter.clone(), name.to_owned());
        // With the start time of the process holding that pid now: it must
        // be the one that connected (a process that connected, handed its
        // socket on and exited would otherwise pass as whatever service
        // reuses its pid).
        let (started, now) = tokio::task::spawn_blocking(move || match starter.service_pid(&n) {
            ServicePid::Pid(pid) => (ServicePid::Pid(pid), accord_param::cred::start_time(pid)),
            other => (other, None),
        })
        .await
        .unwrap_or((ServicePid::Unknown, None));
        let who = self.who;
        let refused = match started {
            ServicePid::Pid(pid) if pid == who.pid && self.start.is_some() && self.start == now => None,
            ServicePid::Pid(pid) if pid == who.pid => Some(format!(
                "pid {pid} (uid {}) is not process {name}: it is not the process that connected (its pid was reused, or it was gone at accept)",
                who.uid
            )),
            ServicePid::Pid(pid) => Some(format!("pid {} (uid {}) is not process {name}, which init started as pid {pid}", who.pid, who.uid)),
            ServicePid::NotRunning => Some(format!("pid {} (uid {}) is not process {name}: init has not started it", who.pid, who.uid)),
            ServicePid::Unknown if who.uid == 0 => None,
            ServicePid::Unknown => Some(format!("pid {} (uid {}) may not register process {name}: its pid is not known, so only root may", who.pid, who.uid)),
        };
        if let Some(why) = refused {
            warn!("denied: {why}");
            return Err(fdo::Error::AccessDenied(why));
        }
        let host = host_proxy(conn).await?;
        let mut st = self.registry.lock();
        let Some(p) = st.procs.get_mut(name) else {
            return Err(fdo::Error::ServiceUnknown(format!("no SA profile names process {name:?}")));
        };
        if let Some(other) = p.conn.as_ref().filter(|c| c.id != self.conn_id) {
            return Err(fdo::Error::FileExists(format!("process {name} is already running as pid {}", other.who.pid)));
        }
        p.conn = Some(HostLink { id: self.conn_id, who: self.who, host });
        p.exiting = false;
        let wanted: Vec<u32> = st.sas.iter().filter(|(_, s)| s.state == SaState::Loading && s.process.as_deref() == Some(name)).map(|(id, _)| *id).collect();
        drop(st);
        info!("process {name} (pid {}) is up; loading {wanted:?}", self.who.pid);
        Ok(wanted)
    }

    fn report_load_failure(&self, id: u32, reason: &str) -> fdo::Result<()> {
        let attempt = {
            let st = self.registry.lock();
            let sa = st.sas.get(&id).ok_or_else(|| fdo::Error::ServiceUnknown(format!("no SA {id}")))?;
            let host = sa.process.as_ref().and_then(|p| st.procs.get(p)).and_then(|p| p.conn.as_ref()).map(|c| c.id);
            if host != Some(self.conn_id) {
                return Err(fdo::Error::AccessDenied(format!("pid {} does not host SA {id}", self.who.pid)));
            }
            sa.attempt
        };
        self.registry.fail_load(id, attempt, reason.to_owned());
        Ok(())
    }

    async fn dump_system_ability(&self, id: u32, args: Vec<String>) -> fdo::Result<String> {
        check_id(id)?;
        if !self.registry.policy.has_permission("ohos.permission.DUMP", &self.subject()) {
            return Err(fdo::Error::AccessDenied(format!("uid {} lacks ohos.permission.DUMP", self.who.uid)));
        }
        let host = {
            let st = self.registry.lock();
            st.sas.get(&id).and_then(|s| s.reg.as_ref()).map(|r| r.host.clone()).ok_or_else(|| fdo::Error::ServiceUnknown(format!("SA {id} is not loaded")))?
        };
        bounded(host.dump(id, args)).await.map_err(|e| fdo::Error::Failed(format!("SA {id} dump: {e}")))
    }
}

/// Serves samgr on `listener` until the task is dropped. Each connection
/// takes a slot of [`Limits::connections`] and [`Limits::per_uid`] (a
/// client over either is closed at once, and samgr goes on serving the
/// others), must finish its handshake within
/// [`accord_ipc::HANDSHAKE_TIMEOUT`], and may send messages of at most
/// [`Limits::max_message`] bytes.
pub async fn serve(listener: UnixListener, registry: Registry) {
    let mut next_id = 0u64;
    // uid → refusals since its last accepted connection (one warning each).
    let mut refused: HashMap<u32, u64> = HashMap::new();
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let who = match accord_ipc::peer_identity(&stream) {
                    Ok(w) => w,
                    Err(e) => {
                        warn!("samgr: a client without credentials: {e}");
                        continue;
                    }
                };
                let slot = match registry.take_slot(who.uid) {
                    Ok(s) => s,
                    Err(why) => {
                        let n = refused.entry(who.uid).or_default();
                        if *n == 0 {
                            warn!("samgr: refusing pid {} (uid {}): {why}", who.pid, who.uid);
                        }
                        *n += 1;
                        continue;
                    }
                };
                refused.remove(&who.uid);
                // Which process `who.pid` is (a pid alone names it only
                // until it exits); read only for a connection samgr keeps.
                let start = accord_param::cred::start_time(who.pid);
                // Supplementary groups as the kernel recorded them at
                // connect (never /proc after the fact).
                let groups: Arc<[u32]> = match accord_param::cred::peer_groups(stream.as_fd()) {
                    Ok(g) => g.into(),
                    Err(e) => {
                        warn!("samgr: refusing pid {} (uid {}): no SO_PEERGROUPS: {e}", who.pid, who.uid);
                        continue;
                    }
                };
                let hangup = match stream.as_fd().try_clone_to_owned() {
                    Ok(fd) => Arc::new(fd),
                    Err(e) => {
                        warn!("samgr: refusing pid {} (uid {}): {e}", who.pid, who.uid);
                        continue;
                    }
                };
                let registry = registry.clone();
                next_id += 1;
                let conn_id = next_id;
                tokio::spawn(async move {
                    let _slot = slot;
                    let max = registry.limits.max_message;
                    let iface = SamgrIface { registry: registry.clone(), conn_id, who, start, groups, hangup: hangup.clone() };
                    match accord_ipc::serve_limited(stream, vec![(SAMGR_PATH, iface)], None, max).await {
                        Ok(conn) => {
                            accord_ipc::closed(&conn).await;
                            // Closed for a reason of ours (a message above the
                            // limit): make sure the peer sees it at once.
                            let _ = nix::sys::socket::shutdown(hangup.as_raw_fd(), nix::sys::socket::Shutdown::Both);
                            for id in registry.remove_host(conn_id) {
                                info!("SA {id} removed: its host (pid {}) closed its connection", who.pid);
                            }
                        }
                        // A peer that hangs up before the handshake is done (a probe) is
                        // no news; anything else is worth a warning.
                        Err(accord_ipc::IpcError::Zbus(zbus::Error::InputOutput(e))) => debug!("samgr: pid {} hung up during the handshake: {e}", who.pid),
                        Err(e) => warn!("samgr: pid {} (uid {}) failed the handshake: {e}", who.pid, who.uid),
                    }
                });
            }
            Err(e) => {
                // EMFILE and friends: back off rather than spin.
                warn!("samgr: accept: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}
