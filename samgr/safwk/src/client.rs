//! The client side of the SDK: a handle on samgr that survives samgr
//! restarts, typed proxies on SAs, death notification, load/unload and
//! subscriptions.

use std::collections::BTreeSet;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tokio::net::UnixStream;
use tokio::sync::broadcast;
use zbus::connection::Builder;

use accord_ipc::is_dead;

use crate::{ProcessInfo, SaError, SaInfo, SystemAbilityManagerProxy, LISTENER_PATH};

/// Something that happened in samgr's registry, as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SaEvent {
    /// A subscribed SA was added.
    Added(u32),
    /// A subscribed SA was removed (unloaded, or its process died).
    Removed(u32),
    /// A load this client asked for finished.
    Loaded(u32),
    LoadFailed(u32, String),
}

struct ListenerIface {
    tx: broadcast::Sender<SaEvent>,
}

#[zbus::interface(name = "org.accord.SystemAbilityListener")]
impl ListenerIface {
    fn on_add_system_ability(&self, id: u32) {
        let _ = self.tx.send(SaEvent::Added(id));
    }
    fn on_remove_system_ability(&self, id: u32) {
        let _ = self.tx.send(SaEvent::Removed(id));
    }
    fn on_load_system_ability_success(&self, id: u32) {
        let _ = self.tx.send(SaEvent::Loaded(id));
    }
    fn on_load_system_ability_fail(&self, id: u32, reason: String) {
        let _ = self.tx.send(SaEvent::LoadFailed(id, reason));
    }
}

/// A typed proxy on an SA over a direct connection, and the means to know
/// when the SA is gone. Derefs to the proxy.
pub struct Remote<P> {
    proxy: P,
    conn: zbus::Connection,
}

impl<P> Remote<P> {
    /// Resolves when the SA's end of the connection closed: its process
    /// died or it was unloaded. Calls made after that fail at once
    /// ([`SaError::is_dead`]); get the SA again to go on.
    pub async fn died(&self) {
        accord_ipc::closed(&self.conn).await
    }

    pub fn connection(&self) -> &zbus::Connection {
        &self.conn
    }
}

impl<P> std::ops::Deref for Remote<P> {
    type Target = P;
    fn deref(&self) -> &P {
        &self.proxy
    }
}

/// A client's handle on samgr. It dials again (and subscribes again) when
/// samgr restarted, so a client never sees samgr's death.
pub struct Samgr {
    socket: PathBuf,
    proxy: tokio::sync::Mutex<Option<SystemAbilityManagerProxy<'static>>>,
    subscribed: Mutex<BTreeSet<u32>>,
    events: broadcast::Sender<SaEvent>,
    /// Subscription events, for [`Samgr::next_event`].
    mine: tokio::sync::Mutex<broadcast::Receiver<SaEvent>>,
}

impl Samgr {
    pub async fn connect(socket: &Path) -> Result<Samgr, SaError> {
        let (events, mine) = broadcast::channel(1024);
        let s = Samgr {
            socket: socket.to_owned(),
            proxy: tokio::sync::Mutex::new(None),
            subscribed: Mutex::default(),
            events,
            mine: tokio::sync::Mutex::new(mine),
        };
        s.proxy(false).await?;
        Ok(s)
    }

    /// The current proxy; a fresh connection when `redial` or none yet.
    async fn proxy(&self, redial: bool) -> Result<SystemAbilityManagerProxy<'static>, SaError> {
        let mut cur = self.proxy.lock().await;
        if let (Some(p), false) = (cur.as_ref(), redial) {
            return Ok(p.clone());
        }
        let stream = UnixStream::connect(&self.socket).await?;
        let conn = Builder::unix_stream(stream).p2p().serve_at(LISTENER_PATH, ListenerIface { tx: self.events.clone() })?.build().await?;
        let p = SystemAbilityManagerProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await?;
        let subs: Vec<u32> = self.subscribed.lock().map(|s| s.iter().copied().collect()).unwrap_or_default();
        for id in subs {
            p.subscribe_system_ability(id).await?;
        }
        *cur = Some(p.clone());
        Ok(p)
    }

    /// Runs `f` on samgr's proxy; if samgr died since the last call, dials
    /// the new samgr (waiting up to 2 s for it) and runs `f` again.
    async fn call<T, F, Fut>(&self, f: F) -> Result<T, SaError>
    where
        F: Fn(SystemAbilityManagerProxy<'static>) -> Fut,
        Fut: std::future::Future<Output = zbus::Result<T>>,
    {
        let p = self.proxy(false).await?;
        match f(p).await {
            Err(e) if is_dead(&e) => {}
            r => return Ok(r?),
        }
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            match self.proxy(true).await {
                Ok(p) => return Ok(f(p).await?),
                Err(e) if tokio::time::Instant::now() >= deadline => return Err(e),
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
            }
        }
    }

    /// The socket samgr hands out for SA `id`, before any handshake (for
    /// a client that speaks the wire itself: `RemoteProxy::connect` or
    /// `accord_ipc::connect` on it is what the other gets do).
    pub async fn get_socket(&self, id: u32) -> Result<UnixStream, SaError> {
        let fd: OwnedFd = self.call(|p| async move { p.get_system_ability(id).await }).await?.into();
        Ok(accord_ipc::stream_from_fd(fd)?)
    }

    /// A direct D-Bus connection to SA `id` (samgr is not on its path),
    /// loading the SA first if it is on demand.
    pub async fn get_connection(&self, id: u32) -> Result<zbus::Connection, SaError> {
        Ok(accord_ipc::connect(self.get_socket(id).await?).await?)
    }

    /// A typed proxy (`FooProxy`, made by `#[zbus::proxy]`) on SA `id`.
    pub async fn get<P>(&self, id: u32) -> Result<Remote<P>, SaError>
    where
        P: From<zbus::Proxy<'static>> + zbus::proxy::Defaults,
    {
        let conn = self.get_connection(id).await?;
        let proxy = zbus::proxy::Builder::<P>::new(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await?;
        Ok(Remote { proxy, conn })
    }

    /// A client of SA `id` published as a remote object
    /// ([`crate::SaHost::publish_remote`]): the fast path.
    pub async fn get_remote(&self, id: u32) -> Result<accord_ipc::remote::RemoteProxy, SaError> {
        Ok(accord_ipc::remote::RemoteProxy::connect(self.get_socket(id).await?).await?)
    }

    /// A typed proxy (made by [`crate::interface`]) on SA `id`, on the
    /// fast path.
    pub async fn get_proxy<P: crate::typed::TypedProxy>(&self, id: u32) -> Result<P, SaError> {
        Ok(P::from_remote(self.get_remote(id).await?))
    }

    /// Whether SA `id` is registered now (never loads it).
    pub async fn check(&self, id: u32) -> Result<bool, SaError> {
        self.call(|p| async move { p.check_system_ability(id).await }).await
    }

    /// (id, state) of every SA samgr knows.
    pub async fn list(&self) -> Result<Vec<(u32, String)>, SaError> {
        self.call(|p| async move { p.list_system_abilities().await }).await
    }

    pub async fn dump(&self) -> Result<Vec<SaInfo>, SaError> {
        self.call(|p| async move { p.dump_system_abilities().await }).await
    }

    pub async fn running_processes(&self) -> Result<Vec<ProcessInfo>, SaError> {
        self.call(|p| async move { p.get_running_system_process().await }).await
    }

    /// The dump of SA `id` (`hidumper -s id -a args`).
    pub async fn dump_sa(&self, id: u32, args: Vec<String>) -> Result<String, SaError> {
        self.call(|p| {
            let args = args.clone();
            async move { p.dump_system_ability(id, args).await }
        })
        .await
    }

    /// Loads SA `id` and waits for samgr's success or failure notice.
    pub async fn load(&self, id: u32) -> Result<(), SaError> {
        let mut rx = self.events.subscribe();
        self.call(|p| async move { p.load_system_ability(id).await }).await?;
        loop {
            match rx.recv().await {
                Ok(SaEvent::Loaded(x)) if x == id => return Ok(()),
                Ok(SaEvent::LoadFailed(x, reason)) if x == id => return Err(SaError::LoadFailed { id, reason }),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return Err(SaError::SamgrGone),
            }
        }
    }

    pub async fn unload(&self, id: u32) -> Result<(), SaError> {
        self.call(|p| async move { p.unload_system_ability(id).await }).await
    }

    /// Subscribes to additions and removals of SA `id`; see [`Samgr::next_event`].
    pub async fn subscribe(&self, id: u32) -> Result<(), SaError> {
        self.call(|p| async move { p.subscribe_system_ability(id).await }).await?;
        if let Ok(mut s) = self.subscribed.lock() {
            s.insert(id);
        }
        Ok(())
    }

    pub async fn unsubscribe(&self, id: u32) -> Result<(), SaError> {
        if let Ok(mut s) = self.subscribed.lock() {
            s.remove(&id);
        }
        self.call(|p| async move { p.unsubscribe_system_ability(id).await }).await
    }

    /// The next addition or removal among this client's subscriptions.
    pub async fn next_event(&self) -> Option<SaEvent> {
        let mut rx = self.mine.lock().await;
        loop {
            match rx.recv().await {
                Ok(e @ (SaEvent::Added(_) | SaEvent::Removed(_))) => return Some(e),
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

static GLOBAL: tokio::sync::OnceCell<Samgr> = tokio::sync::OnceCell::const_new();

/// This process's samgr handle, dialled on first use.
async fn global() -> Result<&'static Samgr, SaError> {
    GLOBAL.get_or_try_init(|| async { Samgr::connect(&crate::samgr_socket()).await }).await
}

/// A typed proxy on SA `id` through this process's samgr handle (the
/// default socket, or `SAMGR_SOCKET`): `sa::get::<FooProxy>(ID).await?`.
/// The handle belongs to the first tokio runtime that calls this.
pub async fn get<P>(id: u32) -> Result<Remote<P>, SaError>
where
    P: From<zbus::Proxy<'static>> + zbus::proxy::Defaults,
{
    let samgr = global().await?;
    samgr.get(id).await
}

/// A typed proxy (made by [`crate::interface`]) on SA `id` through this
/// process's samgr handle (as [`get`]): `get_proxy::<FooProxy>(ID).await?`.
pub async fn get_proxy<P: crate::typed::TypedProxy>(id: u32) -> Result<P, SaError> {
    let samgr = global().await?;
    samgr.get_proxy(id).await
}
