//! System abilities: the interfaces between samgr, SA host processes and
//! clients, and the SDK to publish and get an SA.
//!
//! A client never talks to an SA through samgr: `GetSystemAbility` makes a
//! socket pair, hands one end to the SA's host (with the caller's identity
//! as samgr verified it from SO_PEERCRED) and returns the other end to the
//! client, which then speaks D-Bus directly to the SA.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::net::UnixStream;
use zbus::connection::Builder;
use zbus::zvariant;

use crate::{Identity, IpcError};

/// Where init creates samgr's socket.
pub const SAMGR_SOCKET: &str = "/dev/unix/socket/samgr";
pub const SAMGR_PATH: &str = "/org/accord/samgr";
pub const HOST_PATH: &str = "/org/accord/sa_host";

/// samgr's interface, as its clients and SA hosts see it.
#[zbus::proxy(interface = "org.accord.SystemAbilityManager", default_service = "org.accord.samgr", default_path = "/org/accord/samgr")]
pub trait SystemAbilityManager {
    /// Registers the caller's process as the host of SA `id`.
    fn add_system_ability(&self, id: u32) -> zbus::Result<()>;
    /// A connected socket to SA `id`.
    fn get_system_ability(&self, id: u32) -> zbus::Result<zvariant::OwnedFd>;
    /// Whether SA `id` is registered (never loads it).
    fn check_system_ability(&self, id: u32) -> zbus::Result<bool>;
    /// Registered SA ids.
    fn list_system_abilities(&self) -> zbus::Result<Vec<u32>>;
    /// (id, state, host pid, host uid) of every registered SA.
    fn dump_system_abilities(&self) -> zbus::Result<Vec<(u32, String, i32, u32)>>;
    /// Tell the caller's listener when SA `id` is added or removed (at most
    /// 256 subscriptions per caller). An SA already present is reported at once.
    fn subscribe_system_ability(&self, id: u32) -> zbus::Result<()>;
    fn unsubscribe_system_ability(&self, id: u32) -> zbus::Result<()>;
}

/// What samgr calls on a subscriber (served on the client's own connection
/// to samgr, like OpenHarmony's status-change listener object).
#[zbus::proxy(interface = "org.accord.SystemAbilityListener", default_service = "org.accord.client", default_path = "/org/accord/sa_listener")]
pub trait SystemAbilityListener {
    #[zbus(no_reply)]
    fn on_add_system_ability(&self, id: u32) -> zbus::Result<()>;
    #[zbus(no_reply)]
    fn on_remove_system_ability(&self, id: u32) -> zbus::Result<()>;
}

pub const LISTENER_PATH: &str = "/org/accord/sa_listener";

/// A change in the registry, as a subscriber sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaEvent {
    Added(u32),
    Removed(u32),
}

struct ListenerIface {
    tx: tokio::sync::mpsc::UnboundedSender<SaEvent>,
}

#[zbus::interface(name = "org.accord.SystemAbilityListener")]
impl ListenerIface {
    fn on_add_system_ability(&self, id: u32) {
        let _ = self.tx.send(SaEvent::Added(id));
    }
    fn on_remove_system_ability(&self, id: u32) {
        let _ = self.tx.send(SaEvent::Removed(id));
    }
}

/// What samgr calls on an SA host process.
#[zbus::proxy(interface = "org.accord.SystemAbilityHost", default_service = "org.accord.sa", default_path = "/org/accord/sa_host")]
pub trait SystemAbilityHost {
    /// Serve SA `id` on `fd` for the caller samgr verified.
    fn connect(&self, id: u32, fd: zvariant::OwnedFd, uid: u32, gid: u32, pid: i32) -> zbus::Result<()>;
}

type Factory = Box<dyn Fn(UnixStream, Identity) + Send + Sync>;

/// The host side, served on the host's connection to samgr.
struct HostIface {
    factories: Arc<Mutex<HashMap<u32, Factory>>>,
}

#[zbus::interface(name = "org.accord.SystemAbilityHost")]
impl HostIface {
    fn connect(&self, id: u32, fd: zvariant::OwnedFd, uid: u32, gid: u32, pid: i32) -> zbus::fdo::Result<()> {
        let fd: OwnedFd = fd.into();
        let std_stream = std::os::unix::net::UnixStream::from(fd);
        std_stream.set_nonblocking(true).map_err(|e| zbus::fdo::Error::IOError(e.to_string()))?;
        let stream = UnixStream::from_std(std_stream).map_err(|e| zbus::fdo::Error::IOError(e.to_string()))?;
        let factories = self.factories.lock().map_err(|_| zbus::fdo::Error::Failed("host state poisoned".into()))?;
        let make = factories.get(&id).ok_or_else(|| zbus::fdo::Error::ServiceUnknown(format!("this process hosts no SA {id}")))?;
        make(stream, Identity { uid, gid, pid });
        Ok(())
    }
}

/// A process that hosts system abilities.
pub struct SaHost {
    samgr: zbus::Connection,
    factories: Arc<Mutex<HashMap<u32, Factory>>>,
}

impl SaHost {
    /// Connects to samgr at `socket`.
    pub async fn connect(socket: &Path) -> Result<SaHost, IpcError> {
        let stream = UnixStream::connect(socket).await?;
        let factories: Arc<Mutex<HashMap<u32, Factory>>> = Arc::default();
        let samgr = Builder::unix_stream(stream).p2p().serve_at(HOST_PATH, HostIface { factories: factories.clone() })?.build().await?;
        Ok(SaHost { samgr, factories })
    }

    /// Publishes SA `id`: each client gets its own instance of the
    /// interface, made by `make` with the caller's verified identity, served
    /// at `path` on a connection of its own.
    pub async fn publish<I, F>(&self, id: u32, path: &'static str, make: F) -> Result<(), IpcError>
    where
        I: zbus::object_server::Interface,
        F: Fn(Identity) -> I + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let factory: Factory = Box::new(move |stream, caller| {
            let make = make.clone();
            tokio::spawn(async move {
                match crate::serve(stream, vec![(path, make(caller))]).await {
                    // The connection lives as long as the client keeps it.
                    Ok(conn) => crate::closed(&conn).await,
                    Err(e) => tracing::warn!("SA {id}: handshake with pid {} failed: {e}", caller.pid),
                }
            });
        });
        if let Ok(mut f) = self.factories.lock() {
            f.insert(id, factory);
        }
        SystemAbilityManagerProxy::new(&self.samgr).await?.add_system_ability(id).await?;
        Ok(())
    }
}

/// A client's handle on samgr.
pub struct Samgr {
    proxy: SystemAbilityManagerProxy<'static>,
    events: tokio::sync::Mutex<tokio::sync::mpsc::UnboundedReceiver<SaEvent>>,
}

impl Samgr {
    pub async fn connect(socket: &Path) -> Result<Samgr, IpcError> {
        let stream = UnixStream::connect(socket).await?;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let conn = Builder::unix_stream(stream).p2p().serve_at(LISTENER_PATH, ListenerIface { tx })?.build().await?;
        Ok(Samgr { proxy: SystemAbilityManagerProxy::new(&conn).await?, events: tokio::sync::Mutex::new(rx) })
    }

    /// Subscribes to additions and removals of SA `id`; see [`Samgr::next_event`].
    pub async fn subscribe(&self, id: u32) -> Result<(), IpcError> {
        Ok(self.proxy.subscribe_system_ability(id).await?)
    }

    pub async fn unsubscribe(&self, id: u32) -> Result<(), IpcError> {
        Ok(self.proxy.unsubscribe_system_ability(id).await?)
    }

    /// The next registry change for this client's subscriptions.
    pub async fn next_event(&self) -> Option<SaEvent> {
        self.events.lock().await.recv().await
    }

    /// A direct D-Bus connection to SA `id` (samgr is not on its path).
    pub async fn get(&self, id: u32) -> Result<zbus::Connection, IpcError> {
        let fd: OwnedFd = self.proxy.get_system_ability(id).await?.into();
        let s = std::os::unix::net::UnixStream::from(fd);
        s.set_nonblocking(true)?;
        crate::connect(UnixStream::from_std(s)?).await
    }

    pub async fn check(&self, id: u32) -> Result<bool, IpcError> {
        Ok(self.proxy.check_system_ability(id).await?)
    }

    pub async fn list(&self) -> Result<Vec<u32>, IpcError> {
        Ok(self.proxy.list_system_abilities().await?)
    }

    /// (id, state, host pid, host uid) of every registered SA.
    pub async fn dump(&self) -> Result<Vec<(u32, String, i32, u32)>, IpcError> {
        Ok(self.proxy.dump_system_abilities().await?)
    }
}
