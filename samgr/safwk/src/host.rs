//! The SA side of the SDK: the [`SystemAbility`] trait, the host process
//! that publishes SAs to samgr, serves each client on a connection of its
//! own, unloads idle SAs, and registers everything again when samgr
//! restarts.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::UnixStream;
use tokio::sync::Notify;
use tracing::{debug, info, warn};
use zbus::connection::Builder;
use zbus::{fdo, zvariant};

use accord_ipc::remote::{Handler, RemoteError};
use accord_ipc::{lock, Identity, IpcError};

use crate::policy::Policy;
use crate::profile::{Profile, SaProfile};
use crate::{SaError, SaProps, StartError, SystemAbilityManagerProxy, HOST_PATH};

static HOST_POLICY: std::sync::OnceLock<Arc<Policy>> = std::sync::OnceLock::new();

/// Makes `policy` the one this process's hosts and callers check
/// permissions against, instead of [`crate::policy::POLICY_PATH`] (for a
/// process whose policy comes from elsewhere: tests). Only before any host
/// or caller read it: returns whether it was installed.
pub fn set_host_policy(policy: Policy) -> bool {
    HOST_POLICY.set(Arc::new(policy)).is_ok()
}

/// The SA policy's permissions as this process reads them: the file is
/// read once (the first host or caller that needs it); without it, fail
/// closed: only root holds a permission.
fn host_policy() -> Arc<Policy> {
    HOST_POLICY
        .get_or_init(|| {
            Arc::new(Policy::load(Path::new(crate::policy::POLICY_PATH)).unwrap_or_else(|e| {
                warn!("{e}; SA permissions fall back to root only");
                Policy::default()
            }))
        })
        .clone()
}

/// Who is calling an SA, as samgr verified it (SO_PEERCRED of the caller's
/// connection to samgr), plus the permission check of the SA policy.
#[derive(Debug, Clone)]
pub struct Caller {
    pub identity: Identity,
    /// Supplementary groups, as the kernel reported them to samgr.
    groups: Arc<[u32]>,
    policy: Arc<Policy>,
}

impl Caller {
    /// A caller known by `identity`, with the permissions of the policy
    /// file (for serving a connection outside an SA host).
    pub fn new(identity: Identity) -> Caller {
        Caller { identity, groups: Arc::new([]), policy: host_policy() }
    }

    /// The caller's supplementary groups (SO_PEERGROUPS of its connection
    /// to samgr; empty for a [`Caller::new`]).
    pub fn groups(&self) -> &[u32] {
        &self.groups
    }

    pub fn uid(&self) -> u32 {
        self.identity.uid
    }
    pub fn gid(&self) -> u32 {
        self.identity.gid
    }
    pub fn pid(&self) -> i32 {
        self.identity.pid
    }

    /// `Ok` if the caller holds `permission` (policy `permissions`), else
    /// an AccessDenied error naming the caller and the permission, ready
    /// to return from a method.
    pub fn check_permission(&self, permission: &str) -> fdo::Result<()> {
        if self.has_permission(permission) {
            return Ok(());
        }
        Err(fdo::Error::AccessDenied(format!("uid {} lacks {permission}", self.identity.uid)))
    }

    /// Whether the caller holds `permission` (policy `permissions`); a
    /// denial is logged. For a typed interface, whose methods return
    /// their own error type.
    pub fn has_permission(&self, permission: &str) -> bool {
        // The same meaning as samgr's decisions: uid, gid and the
        // supplementary groups samgr read from the kernel.
        let who = crate::policy::Subject { uid: self.identity.uid, gid: self.identity.gid, groups: &self.groups };
        if self.policy.has_permission(permission, &who) {
            return true;
        }
        warn!("pid {} (uid {}) lacks {permission}", self.identity.pid, self.identity.uid);
        false
    }
}

/// A system ability: a D-Bus interface that each client gets a fresh
/// instance of, plus lifecycle hooks (OpenHarmony's `SystemAbility`).
///
/// An interface whose methods are quick and never wait can say
/// `#[zbus::interface(name = "...", spawn = false)]`: zbus then runs each
/// call inline instead of in a task of its own (about 4 us less per call
/// here); calls from one client are then handled one at a time.
pub trait SystemAbility: Send + Sync + 'static {
    /// What clients call.
    type Interface: zbus::object_server::Interface;
    /// The object path of [`Self::Interface`] on each client connection.
    const PATH: &'static str;

    /// The interface instance for one client connection.
    fn connect(self: &Arc<Self>, caller: Caller) -> Self::Interface;
    /// Called before the SA is published; an error keeps it unpublished
    /// (and goes to samgr, which tells whoever waits for the load).
    fn on_start(&self) -> Result<(), StartError> {
        Ok(())
    }
    /// The SA has had no client for its unload delay: may it unload?
    fn on_idle(&self) -> bool {
        true
    }
    /// Called when the SA is withdrawn (idle unload, samgr's request).
    fn on_stop(&self) {}
    /// Text for `hidumper -s <id> -a "<args>"`.
    fn on_dump(&self, _args: &[String]) -> String {
        String::new()
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A [`SystemAbility`] with its interface type erased.
trait AnySa: Send + Sync {
    /// Serves one client until it goes away.
    fn serve(&self, stream: UnixStream, caller: Caller) -> BoxFuture<Result<(), SaError>>;
    fn on_idle(&self) -> bool;
    fn on_stop(&self);
    fn on_dump(&self, args: &[String]) -> String;
}

impl<T: SystemAbility> AnySa for Arc<T> {
    fn serve(&self, stream: UnixStream, caller: Caller) -> BoxFuture<Result<(), SaError>> {
        let uid = caller.identity.uid;
        let iface = self.connect(caller);
        Box::pin(async move {
            // The connection lives as long as the client keeps it.
            let conn = accord_ipc::serve_for(stream, vec![(T::PATH, iface)], Some(uid)).await?;
            accord_ipc::closed(&conn).await;
            Ok(())
        })
    }
    fn on_idle(&self) -> bool {
        T::on_idle(self)
    }
    fn on_stop(&self) {
        T::on_stop(self)
    }
    fn on_dump(&self, args: &[String]) -> String {
        T::on_dump(self, args)
    }
}

/// An SA in the remote-object model (OpenHarmony's `IRemoteStub`): each
/// request is a code and bytes, answered on the fast path
/// ([`accord_ipc::remote`]); clients use [`crate::Samgr::get_remote`].
pub trait RemoteObject: Send + Sync + 'static {
    /// Answers request `code` with `data` from `caller` by appending to
    /// `reply`. Runs inline in the connection's thread: return quickly.
    fn on_remote_request(&self, caller: &Caller, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError>;
    /// [`RemoteObject::on_remote_request`] with the request's file
    /// descriptors (`fds`; those not kept are closed) and the reply's
    /// (`reply_fds`, at most [`accord_ipc::fds::MAX_FDS`]); see
    /// [`accord_ipc::remote::Handler::on_request_fds`]. Every request comes
    /// here; the default drops the descriptors and calls
    /// `on_remote_request`. A typed interface ([`crate::interface`])
    /// passes them to its [`crate::typed::Fd`] and [`crate::typed::Blob`]
    /// arguments and results.
    fn on_remote_request_fds(
        &self,
        caller: &Caller,
        code: u32,
        data: &[u8],
        fds: Vec<std::os::fd::OwnedFd>,
        reply: &mut Vec<u8>,
        reply_fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> Result<(), RemoteError> {
        let _ = (fds, reply_fds);
        self.on_remote_request(caller, code, data, reply)
    }
    /// As [`SystemAbility::on_idle`].
    fn on_idle(&self) -> bool {
        true
    }
    /// As [`SystemAbility::on_stop`].
    fn on_stop(&self) {}
    /// As [`SystemAbility::on_dump`].
    fn on_dump(&self, _args: &[String]) -> String {
        String::new()
    }
    /// A D-Bus call of `interface.member` other than `SendRequest` (see
    /// [`accord_ipc::remote::Handler::on_dbus_call`]); a typed interface
    /// ([`crate::interface`]) answers its methods by name here.
    fn on_dbus_call(
        &self,
        caller: &Caller,
        interface: &str,
        member: &str,
        signature: &str,
        body: &[u8],
        reply: &mut Vec<u8>,
    ) -> Option<Result<String, RemoteError>> {
        let _ = (caller, interface, member, signature, body, reply);
        None
    }
    /// `<interface>` elements for `Introspect`.
    fn introspect(&self) -> String {
        String::new()
    }
}

/// One client's connection to a [`RemoteObject`]: the object and who
/// samgr said the caller is.
struct Bound {
    obj: Arc<dyn RemoteObject>,
    caller: Caller,
}

impl Handler for Bound {
    fn on_request(&self, code: u32, data: &[u8], reply: &mut Vec<u8>) -> Result<(), RemoteError> {
        self.obj.on_remote_request(&self.caller, code, data, reply)
    }
    fn on_request_fds(
        &self,
        code: u32,
        data: &[u8],
        fds: Vec<std::os::fd::OwnedFd>,
        reply: &mut Vec<u8>,
        reply_fds: &mut Vec<std::os::fd::OwnedFd>,
    ) -> Result<(), RemoteError> {
        self.obj.on_remote_request_fds(&self.caller, code, data, fds, reply, reply_fds)
    }
    fn on_dbus_call(&self, interface: &str, member: &str, signature: &str, body: &[u8], reply: &mut Vec<u8>) -> Option<Result<String, RemoteError>> {
        self.obj.on_dbus_call(&self.caller, interface, member, signature, body, reply)
    }
    fn introspect(&self) -> String {
        self.obj.introspect()
    }
}

/// Serves `obj` to one client on `stream` outside an SA host (a tool, a
/// test): the fast path with `caller` as who is calling (the D-Bus
/// handshake expects its uid). Returns when the client goes away.
pub async fn serve_remote(stream: UnixStream, obj: Arc<dyn RemoteObject>, caller: Caller) -> Result<(), SaError> {
    let uid = caller.identity.uid;
    Ok(accord_ipc::remote::serve(stream, Bound { obj, caller }, uid).await?)
}

/// Serves listener object `obj` on this process's end of a private socket
/// pair whose other end was sent to one receiver ([`crate::typed::Listener`]).
/// Its methods see this process as their caller: the pair is private, and
/// the receiver's identity is not known here.
pub(crate) async fn serve_listener(stream: UnixStream, obj: Arc<dyn RemoteObject>) -> Result<(), SaError> {
    let me = Identity { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw(), pid: std::process::id() as i32 };
    Ok(accord_ipc::remote::serve_private(stream, Bound { obj, caller: Caller::new(me) }).await?)
}

/// A [`RemoteObject`] SA: its clients get the fast path.
struct RemoteSa(Arc<dyn RemoteObject>);

impl AnySa for RemoteSa {
    fn serve(&self, stream: UnixStream, caller: Caller) -> BoxFuture<Result<(), SaError>> {
        Box::pin(serve_remote(stream, self.0.clone(), caller))
    }
    fn on_idle(&self) -> bool {
        self.0.on_idle()
    }
    fn on_stop(&self) {
        self.0.on_stop()
    }
    fn on_dump(&self, args: &[String]) -> String {
        self.0.on_dump(args)
    }
}

impl Live {
    /// Shuts down every connection handed out for this SA (shutdown(2)
    /// acts on the socket, so the serving side sees EOF and can no longer
    /// write, and the client's next call fails as dead). Synchronous: when
    /// it returns, no reply can leave any more. "The SA is gone" means
    /// this (see ARCHITECTURE.md).
    fn hang_up(&self) {
        for (_, fd) in lock(&self.conns).drain() {
            let _ = nix::sys::socket::shutdown(std::os::fd::AsRawFd::as_raw_fd(&fd), nix::sys::socket::Shutdown::Both);
        }
    }
}

/// Numbers the client connections of this process.
static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Default of [`HostLimits::connections`].
pub const MAX_HOST_CONNECTIONS: usize = 4096;
/// Default of [`HostLimits::per_uid`].
pub const MAX_HOST_CONNECTIONS_PER_UID: usize = 256;

/// How many client connections one host process serves at once, over all
/// its SAs: each costs descriptors (and, on the fast path, a thread), so
/// one uid getting an SA again and again cannot exhaust the host. A get
/// past a bound fails with `LimitsExceeded` naming it; root (uid 0) is
/// held to the total only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    /// All clients together ([`MAX_HOST_CONNECTIONS`] by default).
    pub connections: usize,
    /// One uid's clients ([`MAX_HOST_CONNECTIONS_PER_UID`] by default).
    pub per_uid: usize,
}

impl Default for HostLimits {
    fn default() -> HostLimits {
        HostLimits { connections: MAX_HOST_CONNECTIONS, per_uid: MAX_HOST_CONNECTIONS_PER_UID }
    }
}

/// The host's client connections, counted against [`HostLimits`].
#[derive(Default)]
struct ConnCount {
    total: usize,
    per_uid: HashMap<u32, usize>,
}

/// Makes an SA of a profile when samgr asks this process to load it.
pub type Maker = Box<dyn Fn() -> Result<Published, StartError> + Send + Sync>;

/// An SA ready to publish: see [`Published::new`].
pub struct Published {
    sa: Box<dyn AnySa>,
}

impl Published {
    /// Wraps `sa`, running its `on_start`.
    pub fn new<T: SystemAbility>(sa: T) -> Result<Published, StartError> {
        let sa = Arc::new(sa);
        sa.on_start()?;
        Ok(Published { sa: Box::new(sa) })
    }

    /// Wraps a remote object (a typed interface's `into_remote()`).
    pub fn remote(obj: Arc<dyn RemoteObject>) -> Published {
        Published { sa: Box::new(RemoteSa(obj)) }
    }
}

struct Live {
    sa: Box<dyn AnySa>,
    props: SaProps,
    clients: AtomicUsize,
    /// A duplicate of each client connection's socket, by connection
    /// number, so [`Live::hang_up`] can shut them all down at once.
    conns: Mutex<HashMap<u64, std::os::fd::OwnedFd>>,
    /// Bumped on every connect, so a pending idle timer knows it is stale.
    generation: AtomicU64,
    unload_after: Option<Duration>,
}

struct Inner {
    socket: PathBuf,
    process: Option<String>,
    samgr: Mutex<Option<zbus::Connection>>,
    live: Mutex<HashMap<u32, Arc<Live>>>,
    makers: Mutex<HashMap<u32, (Maker, SaProfile)>>,
    /// Set when the host exits once it holds no SA (profile hosts).
    exit_when_empty: bool,
    empty: Notify,
    policy: Arc<Policy>,
    limits: Mutex<HostLimits>,
    conn_count: Mutex<ConnCount>,
    /// Dropped with the last handle: tells the supervisor to hang up.
    _hang_up: tokio::sync::oneshot::Sender<()>,
}

impl Drop for Inner {
    /// The host goes away: its clients' connections are hung up before
    /// its connection to samgr closes (`_hang_up` drops after this runs),
    /// so nobody is answered by an SA samgr no longer lists.
    fn drop(&mut self) {
        for live in lock(&self.live).values() {
            live.hang_up();
        }
    }
}

/// A process that hosts system abilities.
#[derive(Clone)]
pub struct SaHost {
    inner: Arc<Inner>,
}

impl SaHost {
    /// Connects to samgr at `socket` as an anonymous host (SAs published
    /// with [`SaHost::publish`]). The host keeps serving when samgr
    /// restarts: it reconnects and adds its SAs again.
    pub async fn connect(socket: &Path) -> Result<SaHost, SaError> {
        SaHost::start(socket, None, false).await
    }

    async fn start(socket: &Path, process: Option<String>, exit_when_empty: bool) -> Result<SaHost, SaError> {
        // Each client holds a connection (a descriptor) to its SA.
        accord_ipc::raise_fd_limit();
        let policy = host_policy();
        let (hang_up, hung_up) = tokio::sync::oneshot::channel();
        let host = SaHost {
            inner: Arc::new(Inner {
                socket: socket.to_owned(),
                process,
                samgr: Mutex::new(None),
                live: Mutex::default(),
                makers: Mutex::default(),
                exit_when_empty,
                empty: Notify::new(),
                limits: Mutex::new(HostLimits::default()),
                conn_count: Mutex::default(),
                policy,
                _hang_up: hang_up,
            }),
        };
        let conn = host.dial().await?;
        *lock(&host.inner.samgr) = Some(conn.clone());
        let weak = Arc::downgrade(&host.inner);
        tokio::spawn(async move {
            tokio::select! {
                _ = supervise(weak, conn) => {}
                // The host was dropped: its connection goes with it, and
                // samgr withdraws its SAs.
                _ = hung_up => {}
            }
        });
        Ok(host)
    }

    async fn dial(&self) -> Result<zbus::Connection, SaError> {
        let stream = UnixStream::connect(&self.inner.socket).await?;
        let iface = HostIface { host: Arc::downgrade(&self.inner) };
        Ok(Builder::unix_stream(stream).p2p().serve_at(HOST_PATH, iface)?.build().await?)
    }

    fn samgr(&self) -> Result<zbus::Connection, SaError> {
        lock(&self.inner.samgr).clone().ok_or_else(|| SaError::SamgrGone)
    }

    /// Publishes SA `id`: each client gets its own instance of the
    /// interface, made by [`SystemAbility::connect`] with the caller's
    /// verified identity, served on a connection of its own. With
    /// `unload_after`, the SA is unloaded after that long without clients.
    pub async fn publish<T: SystemAbility>(&self, id: u32, sa: T, unload_after: Option<Duration>) -> Result<(), SaError> {
        self.publish_with(id, sa, SaProps::default(), unload_after).await
    }

    /// [`SaHost::publish`] with OpenHarmony's extra properties; a
    /// non-empty `props.permission` is required of every getter by samgr.
    pub async fn publish_with<T: SystemAbility>(&self, id: u32, sa: T, props: SaProps, unload_after: Option<Duration>) -> Result<(), SaError> {
        let p = Published::new(sa).map_err(|source| SaError::StartFailed { id, source })?;
        self.add(id, p, props, unload_after).await
    }

    /// Publishes a remote object as SA `id`: clients reach it with
    /// [`crate::Samgr::get_remote`] on the fast path.
    pub async fn publish_remote(&self, id: u32, obj: Arc<dyn RemoteObject>, unload_after: Option<Duration>) -> Result<(), SaError> {
        self.add(id, Published::remote(obj), SaProps::default(), unload_after).await
    }

    async fn add(&self, id: u32, p: Published, props: SaProps, unload_after: Option<Duration>) -> Result<(), SaError> {
        let live = Arc::new(Live {
            sa: p.sa,
            props: props.clone(),
            clients: AtomicUsize::new(0),
            conns: Mutex::default(),
            generation: AtomicU64::new(0),
            unload_after,
        });
        lock(&self.inner.live).insert(id, live.clone());
        let added = async { SystemAbilityManagerProxy::new(&self.samgr()?).await?.add_system_ability(id, props).await.map_err(SaError::from) }.await;
        if let Err(e) = added {
            // Not registered (policy, id taken): not served either.
            lock(&self.inner.live).remove(&id);
            return Err(e);
        }
        info!("SA {id} published");
        arm_idle(&self.inner, id, &live);
        Ok(())
    }

    /// Loads SA `id` from the makers registered by [`run_profile`].
    async fn load(&self, id: u32) -> Result<(), SaError> {
        if lock(&self.inner.live).contains_key(&id) {
            return Ok(());
        }
        let profile = lock(&self.inner.makers).get(&id).map(|(_, p)| p.clone()).ok_or(SaError::NotHosted(id))?;
        // OpenHarmony's `depend`: start only once the SAs this one needs
        // are registered, within `depend-time-out`.
        let deadline = tokio::time::Instant::now() + profile.depend_timeout;
        for dep in &profile.depend {
            loop {
                let samgr = self.samgr()?;
                if SystemAbilityManagerProxy::new(&samgr).await?.check_system_ability(*dep).await? {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(SaError::DependencyMissing { id, dep: *dep, waited: profile.depend_timeout });
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let made = match lock(&self.inner.makers).get(&id) {
            Some((make, _)) => make(),
            None => return Err(SaError::NotHosted(id)),
        };
        let p = made.map_err(|source| SaError::StartFailed { id, source })?;
        let props = SaProps {
            distributed: profile.distributed,
            dump_level: profile.dump_level,
            capability: profile.capability.clone(),
            permission: profile.permission.clone(),
        };
        self.add(id, p, props, profile.unload_after).await
    }

    /// Sets how many client connections this host serves at once (see
    /// [`HostLimits`]); connections already served stay.
    pub fn set_limits(&self, limits: HostLimits) {
        *lock(&self.inner.limits) = limits;
    }

    /// Resolves when a host made by [`run_profile`] holds no SA any more.
    pub async fn emptied(&self) {
        self.inner.empty.notified().await
    }
}

/// Starts the idle timer of SA `id` if it has no client.
fn arm_idle(inner: &Arc<Inner>, id: u32, live: &Arc<Live>) {
    let Some(delay) = live.unload_after else { return };
    if live.clients.load(Ordering::SeqCst) != 0 {
        return;
    }
    let gen = live.generation.load(Ordering::SeqCst);
    let (weak, live) = (Arc::downgrade(inner), live.clone());
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        if live.clients.load(Ordering::SeqCst) != 0 || live.generation.load(Ordering::SeqCst) != gen {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let samgr = lock(&inner.samgr).clone();
        let Some(samgr) = samgr else { return };
        debug!("SA {id}: idle for {delay:?}, asking samgr to unload it");
        // samgr serialises the unload with its Gets and calls our Stop,
        // which asks on_idle and re-checks the client count.
        let r = async { SystemAbilityManagerProxy::new(&samgr).await?.unload_system_ability(id).await }.await;
        if let Err(e) = r {
            debug!("SA {id}: unload not done: {e}");
            // Still idle and still ours: try again after another delay.
            if lock(&inner.live).get(&id).is_some_and(|l| Arc::ptr_eq(l, &live)) {
                arm_idle(&inner, id, &live);
            }
        }
    });
}

/// Keeps the host registered: when samgr's connection closes (samgr
/// died), dial again until it is back, and add every SA again.
async fn supervise(weak: std::sync::Weak<Inner>, mut conn: zbus::Connection) {
    loop {
        accord_ipc::closed(&conn).await;
        let mut delay = Duration::from_millis(20);
        conn = loop {
            let Some(inner) = weak.upgrade() else { return };
            let host = SaHost { inner };
            *lock(&host.inner.samgr) = None;
            match reregister(&host).await {
                Ok(c) => break c,
                Err(e) => {
                    debug!("samgr is not back yet: {e}");
                    drop(host);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        };
    }
}

async fn reregister(host: &SaHost) -> Result<zbus::Connection, SaError> {
    let conn = host.dial().await?;
    let proxy = SystemAbilityManagerProxy::new(&conn).await?;
    if let Some(name) = &host.inner.process {
        // Refused, its profile's SAs will be too; the others may not be.
        if let Err(e) = proxy.add_system_process(name).await {
            if accord_ipc::is_dead(&e) {
                return Err(e.into());
            }
            warn!("samgr refused process {name} again: {e}");
        }
    }
    // Each SA on its own: one refused id does not keep the rest out. A
    // refused SA is withdrawn here too (its clients hung up): samgr no
    // longer lists it.
    let live: Vec<(u32, SaProps)> = lock(&host.inner.live).iter().map(|(id, l)| (*id, l.props.clone())).collect();
    for (id, props) in live {
        match proxy.add_system_ability(id, props).await {
            Ok(()) => {}
            Err(e) if accord_ipc::is_dead(&e) => return Err(e.into()),
            Err(e) => {
                warn!("samgr refused SA {id} again: {e}; it is withdrawn");
                if let Some(l) = lock(&host.inner.live).remove(&id) {
                    l.hang_up();
                    l.sa.on_stop();
                }
            }
        }
    }
    *lock(&host.inner.samgr) = Some(conn.clone());
    info!("registered again with samgr ({} SAs)", lock(&host.inner.live).len());
    Ok(conn)
}

/// One client connection's hold on an SA: its socket duplicate and its
/// place in the client count, released on drop (so also when serving the
/// connection panics), arming the idle timer for the last one.
struct ClientSlot {
    id: u32,
    uid: u32,
    conn_no: u64,
    live: Arc<Live>,
    host: std::sync::Weak<Inner>,
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        lock(&self.live.conns).remove(&self.conn_no);
        let inner = self.host.upgrade();
        if let Some(inner) = &inner {
            let mut n = lock(&inner.conn_count);
            n.total = n.total.saturating_sub(1);
            if let Some(c) = n.per_uid.get_mut(&self.uid) {
                *c -= 1;
                if *c == 0 {
                    n.per_uid.remove(&self.uid);
                }
            }
        }
        if self.live.clients.fetch_sub(1, Ordering::SeqCst) == 1 {
            if let Some(inner) = inner {
                arm_idle(&inner, self.id, &self.live);
            }
        }
    }
}

impl Inner {
    /// Takes a client slot for `uid`, or says which bound refuses it.
    fn admit(&self, uid: u32, pid: i32, id: u32) -> fdo::Result<()> {
        let limits = *lock(&self.limits);
        let mut n = lock(&self.conn_count);
        let mine = n.per_uid.get(&uid).copied().unwrap_or(0);
        let why = if n.total >= limits.connections {
            format!("this host serves {} clients, its limit", limits.connections)
        } else if uid != 0 && mine >= limits.per_uid {
            format!("uid {uid} holds {} connections to this host, its share", limits.per_uid)
        } else {
            n.total += 1;
            *n.per_uid.entry(uid).or_insert(0) += 1;
            return Ok(());
        };
        warn!("SA {id}: refused pid {pid} (uid {uid}): {why}");
        Err(fdo::Error::LimitsExceeded(why))
    }
}

/// The host side, served on the host's connection to samgr.
struct HostIface {
    host: std::sync::Weak<Inner>,
}

impl HostIface {
    fn inner(&self) -> fdo::Result<Arc<Inner>> {
        self.host.upgrade().ok_or_else(|| fdo::Error::Failed("host is shutting down".into()))
    }
}

fn io_err(e: impl std::fmt::Display) -> fdo::Error {
    fdo::Error::IOError(e.to_string())
}

#[zbus::interface(name = "org.accord.SystemAbilityHost")]
impl HostIface {
    fn connect(&self, id: u32, fd: zvariant::OwnedFd, uid: u32, gid: u32, pid: i32, groups: Vec<u32>) -> fdo::Result<()> {
        let inner = self.inner()?;
        let live = lock(&inner.live).get(&id).cloned().ok_or_else(|| fdo::Error::ServiceUnknown(format!("this process hosts no SA {id}")))?;
        inner.admit(uid, pid, id)?;
        let conn_no = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
        live.clients.fetch_add(1, Ordering::SeqCst);
        live.generation.fetch_add(1, Ordering::SeqCst);
        // Released however this ends: an error below, or the serving's
        // end (a panic inside it included).
        let slot = ClientSlot { id, uid, conn_no, live: live.clone(), host: Arc::downgrade(&inner) };
        let fd: std::os::fd::OwnedFd = fd.into();
        let dup = fd.try_clone().map_err(io_err)?;
        let stream = accord_ipc::stream_from_fd(fd).map_err(io_err)?;
        lock(&live.conns).insert(conn_no, dup);
        let caller = Caller { identity: Identity { uid, gid, pid }, groups: groups.into(), policy: inner.policy.clone() };
        let serving = live.sa.serve(stream, caller);
        tokio::spawn(async move {
            let _slot = slot;
            match serving.await {
                Ok(()) => {}
                // A client that died or hung up before the handshake ended.
                Err(SaError::Ipc(IpcError::Zbus(zbus::Error::InputOutput(e)))) => debug!("SA {id}: pid {pid} hung up during the handshake: {e}"),
                // A budget of this process's: the client is cut off.
                Err(SaError::Remote(RemoteError::Limit(why))) => warn!("SA {id}: hung up on pid {pid} (uid {uid}): {why}"),
                Err(e) => warn!("SA {id}: connection of pid {pid} ended: {e}"),
            }
        });
        Ok(())
    }

    async fn load(&self, id: u32) -> fdo::Result<()> {
        let host = SaHost { inner: self.inner()? };
        host.load(id).await.map_err(|e| fdo::Error::Failed(e.to_string()))
    }

    fn stop(&self, id: u32, force: bool) -> fdo::Result<(bool, bool)> {
        let inner = self.inner()?;
        let mut live = lock(&inner.live);
        let Some(sa) = live.get(&id).cloned() else { return Ok((true, false)) };
        if !force && (sa.clients.load(Ordering::SeqCst) != 0 || !sa.sa.on_idle()) {
            debug!("SA {id}: stays (clients or on_idle refused)");
            return Ok((false, false));
        }
        live.remove(&id);
        let exiting = live.is_empty() && inner.exit_when_empty;
        drop(live);
        // Gone means gone: no connection handed out for it is answered
        // once samgr hears that it stopped.
        sa.hang_up();
        sa.sa.on_stop();
        info!("SA {id} stopped{}", if exiting { "; the process exits" } else { "" });
        if exiting {
            // Let the reply go out first.
            let weak = Arc::downgrade(&inner);
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                if let Some(inner) = weak.upgrade() {
                    // A permit: it reaches `emptied()` whenever it waits.
                    inner.empty.notify_one();
                }
            });
        }
        Ok((true, exiting))
    }

    fn dump(&self, id: u32, args: Vec<String>) -> fdo::Result<String> {
        let inner = self.inner()?;
        let sa = lock(&inner.live).get(&id).cloned().ok_or_else(|| fdo::Error::ServiceUnknown(format!("this process hosts no SA {id}")))?;
        Ok(sa.sa.on_dump(&args))
    }
}

/// Runs one SA in this process until the process is killed: connects to
/// samgr (the default socket, or `SAMGR_SOCKET`) and publishes `sa` as
/// `id`. Returns only on error.
pub async fn run<T: SystemAbility>(id: u32, sa: T) -> Result<(), SaError> {
    let host = SaHost::connect(&crate::samgr_socket()).await?;
    host.publish(id, sa, None).await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// [`run`] for a remote object (a typed interface's
/// `into_remote()`): publishes it as `id` and serves until killed.
pub async fn run_remote(id: u32, obj: Arc<dyn RemoteObject>) -> Result<(), SaError> {
    let host = SaHost::connect(&crate::samgr_socket()).await?;
    host.publish_remote(id, obj, None).await?;
    std::future::pending::<()>().await;
    Ok(())
}

/// Runs the SAs of a profile (`sa_main <profile>`): `makers` says how to
/// make each SA id this binary knows. Publishes the `run-on-create` SAs
/// and those samgr asks for, loads more when asked, unloads idle ones,
/// and returns when the process holds no SA any more.
pub async fn run_profile(profile: &Profile, makers: Vec<(u32, Maker)>) -> Result<(), SaError> {
    run_profile_at(&crate::samgr_socket(), profile, makers).await
}

/// [`run_profile`] with samgr at `socket`.
pub async fn run_profile_at(socket: &Path, profile: &Profile, makers: Vec<(u32, Maker)>) -> Result<(), SaError> {
    let host = SaHost::start(socket, Some(profile.process.clone()), true).await?;
    {
        let mut m = lock(&host.inner.makers);
        for (id, make) in makers {
            match profile.ability(id) {
                Some(sa) => {
                    m.insert(id, (make, sa.clone()));
                }
                None => debug!("SA {id} is not in profile {}: not hosted", profile.process),
            }
        }
        for sa in &profile.abilities {
            if !m.contains_key(&sa.id) {
                warn!("profile {} lists SA {} but this binary cannot make it", profile.process, sa.id);
            }
        }
    }
    let emptied = host.emptied();
    tokio::pin!(emptied);
    let wanted = SystemAbilityManagerProxy::new(&host.samgr()?).await?.add_system_process(&profile.process).await?;
    let mut to_load: Vec<u32> = profile.abilities.iter().filter(|a| a.run_on_create).map(|a| a.id).collect();
    for id in wanted {
        if !to_load.contains(&id) {
            to_load.push(id);
        }
    }
    for id in to_load {
        if let Err(e) = host.load(id).await {
            warn!("{e}");
            let report = async { SystemAbilityManagerProxy::new(&host.samgr()?).await?.report_load_failure(id, &e.to_string()).await.map_err(SaError::from) };
            if let Err(e) = report.await {
                debug!("cannot tell samgr: {e}");
            }
        }
    }
    if lock(&host.inner.live).is_empty() {
        info!("process {}: no SA to host; exiting", profile.process);
        return Ok(());
    }
    emptied.await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_permission_granted_to_a_group_reaches_its_supplementary_members() {
        let policy = Arc::new(Policy::parse(r#"{"permissions": {"ohos.permission.X": {"gids": [1007]}}}"#, "t").unwrap());
        let caller = |groups: &[u32]| Caller { identity: Identity { uid: 2000, gid: 2000, pid: 1 }, groups: groups.into(), policy: policy.clone() };
        assert!(caller(&[5, 1007]).check_permission("ohos.permission.X").is_ok());
        let e = caller(&[5]).check_permission("ohos.permission.X").unwrap_err().to_string();
        assert!(e.contains("uid 2000 lacks ohos.permission.X"), "{e}");
    }
}
