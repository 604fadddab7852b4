//! samgr: the system ability registry.
//!
//! Owns which process hosts which system ability (SA, by id) and hands out
//! direct connections to them: on `GetSystemAbility` it makes a socket
//! pair, gives one end to the SA's host together with the caller's
//! identity (from SO_PEERCRED of the caller's connection to samgr) and
//! returns the other end. Calls never pass through samgr afterwards.
//!
//! This is the first slice of issue 3: add/get/check/list. Profiles,
//! on-demand load, idle unload, subscriptions, death notification and
//! policy come next.

pub mod policy;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use accord_ipc::sa::{SystemAbilityHostProxy, SystemAbilityListenerProxy, SAMGR_PATH};
use accord_ipc::Identity;
use tokio::net::UnixListener;
use tracing::{info, warn};
use zbus::fdo;
use zbus::zvariant;

/// Highest SA id (OpenHarmony's limit); 0 is samgr itself.
pub const MAX_SA_ID: u32 = 0x00FF_FFFF;
/// Most subscriptions one connection may hold (OpenHarmony's limit).
pub const MAX_SUBSCRIPTIONS: usize = 256;

struct Entry {
    host: zbus::Connection,
    /// Which samgr connection registered it (removed when it closes).
    host_conn: u64,
    owner: Identity,
}

#[derive(Default, Clone)]
pub struct Registry {
    inner: Arc<Mutex<BTreeMap<u32, Entry>>>,
    policy: Arc<policy::Policy>,
    subscribers: Arc<Mutex<Subscribers>>,
}

/// SA id → subscribers (samgr connection id, connection).
type Subscribers = BTreeMap<u32, Vec<(u64, zbus::Connection)>>;

#[derive(Clone, Copy)]
enum Change {
    Added,
    Removed,
}

impl Registry {
    /// An empty registry enforcing `policy`.
    pub fn with_policy(policy: policy::Policy) -> Registry {
        Registry { policy: Arc::new(policy), ..Registry::default() }
    }

    fn allow(&self, id: u32, who: &Identity, action: policy::Action) -> fdo::Result<()> {
        self.policy.check(id, who.uid, who.gid, action).map_err(|why| {
            warn!("denied (pid {}): {why}", who.pid);
            fdo::Error::AccessDenied(why)
        })
    }

    /// Tells the subscribers of `id`, without waiting for them (no-reply
    /// calls from a task of their own).
    fn notify(&self, id: u32, change: Change) {
        let targets: Vec<zbus::Connection> = match self.subscribers.lock() {
            Ok(s) => s.get(&id).map(|v| v.iter().map(|(_, c)| c.clone()).collect()).unwrap_or_default(),
            Err(_) => return,
        };
        for conn in targets {
            tokio::spawn(async move {
                let Ok(p) = SystemAbilityListenerProxy::new(&conn).await else { return };
                let _ = match change {
                    Change::Added => p.on_add_system_ability(id).await,
                    Change::Removed => p.on_remove_system_ability(id).await,
                };
            });
        }
    }
}

fn check_id(id: u32) -> fdo::Result<()> {
    if id == 0 || id > MAX_SA_ID {
        return Err(fdo::Error::InvalidArgs(format!("SA id {id} is outside 1..={MAX_SA_ID}")));
    }
    Ok(())
}

fn poisoned<T>(_: T) -> fdo::Error {
    fdo::Error::Failed("samgr registry poisoned".into())
}

/// One client's (or SA host's) view of samgr.
struct SamgrIface {
    registry: Registry,
    conn_id: u64,
}

async fn caller(conn: &zbus::Connection) -> fdo::Result<Identity> {
    accord_ipc::calling_identity(conn).await.map_err(|e| fdo::Error::AccessDenied(format!("no caller identity: {e}")))
}

#[zbus::interface(name = "org.accord.SystemAbilityManager")]
impl SamgrIface {
    async fn add_system_ability(&self, id: u32, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<()> {
        check_id(id)?;
        let who = caller(conn).await?;
        self.registry.allow(id, &who, policy::Action::Register)?;
        let mut reg = self.registry.inner.lock().map_err(poisoned)?;
        if let Some(old) = reg.get(&id) {
            if old.owner.pid != who.pid {
                return Err(fdo::Error::FileExists(format!("SA {id} is already registered by pid {}", old.owner.pid)));
            }
        }
        reg.insert(id, Entry { host: conn.clone(), host_conn: self.conn_id, owner: who });
        drop(reg);
        info!("SA {id} added by pid {} (uid {})", who.pid, who.uid);
        self.registry.notify(id, Change::Added);
        Ok(())
    }

    async fn get_system_ability(&self, id: u32, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<zvariant::OwnedFd> {
        check_id(id)?;
        let who = caller(conn).await?;
        self.registry.allow(id, &who, policy::Action::Get)?;
        let host = {
            let reg = self.registry.inner.lock().map_err(poisoned)?;
            reg.get(&id).map(|e| e.host.clone()).ok_or_else(|| fdo::Error::ServiceUnknown(format!("SA {id} is not registered")))?
        };
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(|e| fdo::Error::IOError(e.to_string()))?;
        let proxy = SystemAbilityHostProxy::new(&host).await.map_err(|e| fdo::Error::Failed(e.to_string()))?;
        let fd: std::os::fd::OwnedFd = ours.into();
        proxy.connect(id, fd.into(), who.uid, who.gid, who.pid).await.map_err(|e| {
            warn!("SA {id}: its host refused a connection for pid {}: {e}", who.pid);
            fdo::Error::Failed(format!("SA {id} is unreachable: {e}"))
        })?;
        let fd: std::os::fd::OwnedFd = theirs.into();
        Ok(fd.into())
    }

    fn check_system_ability(&self, id: u32) -> fdo::Result<bool> {
        check_id(id)?;
        Ok(self.registry.inner.lock().map_err(poisoned)?.contains_key(&id))
    }

    fn list_system_abilities(&self) -> fdo::Result<Vec<u32>> {
        Ok(self.registry.inner.lock().map_err(poisoned)?.keys().copied().collect())
    }

    async fn subscribe_system_ability(&self, id: u32, #[zbus(connection)] conn: &zbus::Connection) -> fdo::Result<()> {
        check_id(id)?;
        {
            let mut subs = self.registry.subscribers.lock().map_err(poisoned)?;
            let held = subs.values().map(|v| v.iter().filter(|(c, _)| *c == self.conn_id).count()).sum::<usize>();
            let list = subs.entry(id).or_default();
            if list.iter().any(|(c, _)| *c == self.conn_id) {
                return Ok(());
            }
            if held >= MAX_SUBSCRIPTIONS {
                return Err(fdo::Error::LimitsExceeded(format!("at most {MAX_SUBSCRIPTIONS} subscriptions per caller")));
            }
            list.push((self.conn_id, conn.clone()));
        }
        if self.registry.inner.lock().map_err(poisoned)?.contains_key(&id) {
            let conn = conn.clone();
            tokio::spawn(async move {
                if let Ok(p) = SystemAbilityListenerProxy::new(&conn).await {
                    let _ = p.on_add_system_ability(id).await;
                }
            });
        }
        Ok(())
    }

    fn unsubscribe_system_ability(&self, id: u32) -> fdo::Result<()> {
        let mut subs = self.registry.subscribers.lock().map_err(poisoned)?;
        if let Some(list) = subs.get_mut(&id) {
            list.retain(|(c, _)| *c != self.conn_id);
        }
        Ok(())
    }

    /// (id, state, host pid, host uid) of every registered SA, for
    /// `hidumper -ls`.
    fn dump_system_abilities(&self) -> fdo::Result<Vec<(u32, String, i32, u32)>> {
        let reg = self.registry.inner.lock().map_err(poisoned)?;
        Ok(reg.iter().map(|(id, e)| (*id, "LOADED".to_owned(), e.owner.pid, e.owner.uid)).collect())
    }
}

impl Registry {
    /// Drops every SA registered over connection `conn_id` (its host
    /// process exited or hung up) and its subscriptions; tells the
    /// subscribers of the SAs; returns their ids.
    fn remove_host(&self, conn_id: u64) -> Vec<u32> {
        let Ok(mut reg) = self.inner.lock() else { return Vec::new() };
        let gone: Vec<u32> = reg.iter().filter(|(_, e)| e.host_conn == conn_id).map(|(id, _)| *id).collect();
        for id in &gone {
            reg.remove(id);
        }
        drop(reg);
        if let Ok(mut subs) = self.subscribers.lock() {
            for list in subs.values_mut() {
                list.retain(|(c, _)| *c != conn_id);
            }
        }
        for id in &gone {
            self.notify(*id, Change::Removed);
        }
        gone
    }
}

/// Serves samgr on `listener` until the task is dropped.
pub async fn serve(listener: UnixListener, registry: Registry) {
    let mut next_id = 0u64;
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let registry = registry.clone();
                next_id += 1;
                let conn_id = next_id;
                tokio::spawn(async move {
                    match accord_ipc::serve(stream, vec![(SAMGR_PATH, SamgrIface { registry: registry.clone(), conn_id })]).await {
                        Ok(conn) => {
                            accord_ipc::closed(&conn).await;
                            for id in registry.remove_host(conn_id) {
                                info!("SA {id} removed: its host closed its connection");
                            }
                        }
                        Err(e) => warn!("samgr: a client failed the handshake: {e}"),
                    }
                });
            }
            Err(e) => {
                warn!("samgr: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
