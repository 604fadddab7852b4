//! The storage manager (SA 5003): the volume table as clients see it,
//! permissions, and volume change callbacks. It runs as its own uid
//! ([`crate::MANAGER_UID`]) with no capabilities; what needs privilege it
//! asks of the storage daemon (SA 5002), to which it stays subscribed
//! (again after the daemon restarts).
//!
//! Reads (`volumes`, the dump) answer from the table the daemon's changes
//! keep, with sizes read now; mount, unmount and format wait for the
//! daemon, up to [`OP_DEADLINE`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_safwk::subscribers::{Bounds, SubscribeError, Subscribers};
use accord_safwk::typed::{CallError, Listener};
use accord_safwk::{Caller, Samgr};

use crate::{
    StorageDaemonProxy, StorageError, StorageManager, Volume, VolumeListener, VolumeListenerProxy, VolumeState, DAEMON_ID, MAX_PENDING, MAX_SUBS,
    MAX_SUBS_PER_UID, PERM_FORMAT, PERM_MOUNT,
};

/// Longest a mount, unmount or format may take (a check or format of a
/// big disk is slow).
pub const OP_DEADLINE: Duration = Duration::from_secs(600);
/// How often the manager reads the daemon's whole table besides its
/// change notifications.
pub const RECONCILE: Duration = Duration::from_secs(30);
/// How long a call waits for the manager to link to the daemon.
pub const LINK_WAIT: Duration = Duration::from_secs(15);

struct Shared {
    /// Whether the manager is subscribed to the daemon and has its table.
    linked: tokio::sync::watch::Sender<bool>,
    view: Mutex<View>,
    daemon: Mutex<Option<StorageDaemonProxy>>,
    subs: Arc<Subscribers<Volume>>,
    /// Told when a change was lost on the way from the daemon: read the
    /// whole table again.
    refresh: tokio::sync::Notify,
}

/// Most ids of gone volumes remembered (with the change that removed
/// them, so an older report does not bring them back).
const MAX_GONE: usize = 256;

/// The manager's copy of the daemon's table.
#[derive(Default)]
struct View {
    vols: BTreeMap<String, Volume>,
    /// Volumes that left, with the change number that said so.
    gone: BTreeMap<String, u64>,
}

impl View {
    /// Takes `v` if it is newer than what is known of its volume.
    fn take(&mut self, v: &Volume) -> bool {
        let known = self.vols.get(&v.id).map(|k| k.seq).or_else(|| self.gone.get(&v.id).copied()).unwrap_or(0);
        if v.seq <= known {
            return false;
        }
        if matches!(v.state, VolumeState::Removed | VolumeState::BadRemoval) {
            self.vols.remove(&v.id);
            self.gone.insert(v.id.clone(), v.seq);
            if self.gone.len() > MAX_GONE {
                if let Some(oldest) = self.gone.iter().min_by_key(|(_, s)| **s).map(|(id, _)| id.clone()) {
                    self.gone.remove(&oldest);
                }
            }
        } else {
            self.gone.remove(&v.id);
            self.vols.insert(v.id.clone(), v.clone());
        }
        true
    }
}

impl Shared {
    /// A change from the daemon (or an operation's reply): into the table
    /// and out to the subscribers if it is newer than what is known.
    fn apply(&self, v: Volume) {
        if !accord_safwk::lock(&self.view).take(&v) {
            return;
        }
        self.tell(&v);
    }

    fn tell(&self, v: &Volume) {
        self.subs.send(v);
    }

    /// The daemon's whole table as of change `seq`: what is newer is
    /// taken; a volume it lacks that nothing newer mentions has left.
    fn reload(&self, seq: u64, all: Vec<Volume>) {
        let mut told = Vec::new();
        {
            let mut view = accord_safwk::lock(&self.view);
            let present: std::collections::BTreeSet<String> = all.iter().map(|v| v.id.clone()).collect();
            for v in all {
                if view.take(&v) {
                    told.push(v);
                }
            }
            let left: Vec<Volume> = view.vols.values().filter(|v| !present.contains(&v.id) && v.seq <= seq).cloned().collect();
            for mut v in left {
                v.state = VolumeState::Removed;
                v.path.clear();
                v.detail = "removed".into();
                v.seq = seq;
                view.vols.remove(&v.id);
                view.gone.insert(v.id.clone(), seq);
                told.push(v);
            }
        }
        for v in &told {
            self.tell(v);
        }
    }
}

/// What the daemon calls back: changes go into the table and out to the
/// subscribers.
struct Relay(Arc<Shared>);

impl VolumeListener for Relay {
    fn on_volume_change(&self, volume: Volume, lost: u32) {
        if lost > 0 {
            tracing::warn!("{lost} volume changes from the daemon were lost; reading the table again");
            self.0.refresh.notify_one();
        }
        self.0.apply(volume);
    }
}

/// The storage manager: see the module doc.
pub struct Manager {
    shared: Arc<Shared>,
    rt: tokio::runtime::Handle,
    class_block: PathBuf,
}

impl Manager {
    /// The manager, linked to the daemon through samgr at `socket` (in
    /// the background: until the daemon answers, the table is empty and
    /// operations are [`StorageError::Daemon`]). Call it inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// Not inside a runtime.
    pub fn start(socket: PathBuf) -> Result<Manager, String> {
        Manager::start_with(socket, "/sys/class/block".into(), RECONCILE)
    }

    /// [`Manager::start`] reading device sizes under `class_block`
    /// instead of `/sys/class/block` and reading the daemon's whole table
    /// every `reconcile` instead of [`RECONCILE`] (tests).
    ///
    /// # Errors
    /// Not inside a runtime.
    pub fn start_with(socket: PathBuf, class_block: PathBuf, reconcile: Duration) -> Result<Manager, String> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| format!("storage manager: {e}"))?;
        let shared = Arc::new(Shared {
            linked: tokio::sync::watch::Sender::new(false),
            view: Mutex::default(),
            daemon: Mutex::default(),
            subs: Arc::new(Subscribers::new("volume subscriptions", Bounds { per_uid: MAX_SUBS_PER_UID, total: MAX_SUBS, pending: MAX_PENDING })),
            refresh: tokio::sync::Notify::new(),
        });
        rt.spawn(link(socket, shared.clone(), reconcile));
        Ok(Manager { shared, rt, class_block })
    }

    /// Waits (up to [`LINK_WAIT`]) for the link to the daemon: right
    /// after boot a client may come first.
    fn wait_linked(&self) -> Result<(), StorageError> {
        let mut rx = self.shared.linked.subscribe();
        let linked = self.rt.block_on(async { tokio::time::timeout(LINK_WAIT, rx.wait_for(|l| *l)).await.is_ok_and(|r| r.is_ok()) });
        if linked {
            Ok(())
        } else {
            Err(StorageError::Daemon(format!("not linked after {} s", LINK_WAIT.as_secs())))
        }
    }

    fn daemon(&self) -> Result<StorageDaemonProxy, StorageError> {
        self.wait_linked()?;
        accord_safwk::lock(&self.shared.daemon).clone().ok_or_else(|| StorageError::Daemon("not linked".into()))
    }

    /// Runs `op` on the daemon and puts the volume it returns in the table.
    fn op<F, Fut>(&self, op: F) -> Result<Volume, StorageError>
    where
        F: FnOnce(StorageDaemonProxy) -> Fut,
        Fut: std::future::Future<Output = Result<Volume, CallError<StorageError>>>,
    {
        let d = self.daemon()?.with_timeout(OP_DEADLINE);
        match self.rt.block_on(op(d.clone())) {
            Ok(v) => {
                // The daemon told its change on the other connection too;
                // whichever comes second is ignored (its `seq`), so a
                // volume that left meanwhile is not brought back.
                self.shared.apply(v.clone());
                Ok(self.sized(v))
            }
            Err(CallError::Sa(e)) => {
                // A failed operation may have changed the volume (a failed
                // check makes it DAMAGED): the table is read again, so
                // what the caller reads next includes it.
                if let Ok((seq, all)) = self.rt.block_on(d.table()) {
                    self.shared.reload(seq, all);
                }
                Err(e)
            }
            Err(CallError::Ipc(e)) => Err(StorageError::Daemon(e.to_string())),
        }
    }

    fn sized(&self, v: Volume) -> Volume {
        crate::fs::with_sizes(v, &self.class_block)
    }

    fn list(&self) -> Vec<Volume> {
        let vols: Vec<Volume> = accord_safwk::lock(&self.shared.view).vols.values().cloned().collect();
        vols.into_iter().map(|v| self.sized(v)).collect()
    }
}

fn need(caller: &Caller, permission: &str) -> Result<(), StorageError> {
    if caller.has_permission(permission) {
        Ok(())
    } else {
        Err(StorageError::PermissionDenied { uid: caller.uid(), permission: permission.into() })
    }
}

/// Keeps the manager subscribed to the daemon and its table current,
/// again after the daemon goes and comes back.
async fn link(socket: PathBuf, shared: Arc<Shared>, reconcile: Duration) {
    let mut said = false;
    let mut tries = 0u32;
    loop {
        let linked = async {
            let samgr = Samgr::connect(&socket).await.map_err(|e| format!("samgr: {e}"))?;
            let d = samgr.get_proxy::<StorageDaemonProxy>(DAEMON_ID).await.map_err(|e| format!("SA {DAEMON_ID}: {e}"))?;
            d.subscribe(Listener::new(Relay(shared.clone()).into_remote())).await.map_err(|e| format!("subscribing: {e:?}"))?;
            Ok::<_, String>(d)
        };
        let d = match linked.await {
            Ok(d) => d,
            Err(e) => {
                // At boot the daemon is moments away: try often at first.
                tries += 1;
                if tries > 50 && !said {
                    tracing::warn!("storage daemon not reachable yet ({e}); trying every second");
                    said = true;
                }
                tokio::time::sleep(Duration::from_millis(if tries > 50 { 1000 } else { 100 })).await;
                continue;
            }
        };
        said = false;
        tries = 0;
        tracing::info!("linked to the storage daemon");
        *accord_safwk::lock(&shared.daemon) = Some(d.clone());
        loop {
            match d.table().await {
                Ok((seq, all)) => shared.reload(seq, all),
                Err(e) => tracing::warn!("reading the volumes: {e:?}"),
            }
            shared.linked.send_replace(true);
            tokio::select! {
                () = d.died() => break,
                () = shared.refresh.notified() => {}
                // Whatever notification went missing without a trace (a
                // delivery that failed while both sides live), the table
                // is read again now and then: the copy heals, and what it
                // learns is told to the subscribers.
                () = tokio::time::sleep(reconcile) => {}
            }
        }
        tracing::warn!("the storage daemon went away; linking again");
        shared.linked.send_replace(false);
        *accord_safwk::lock(&shared.daemon) = None;
    }
}

impl StorageManager for Manager {
    fn volumes(&self, _caller: &Caller) -> Result<Vec<Volume>, StorageError> {
        self.wait_linked()?;
        Ok(self.list())
    }

    fn mount(&self, caller: &Caller, id: &str) -> Result<Volume, StorageError> {
        need(caller, PERM_MOUNT)?;
        let id = id.to_owned();
        self.op(|d| async move { d.mount(&id).await })
    }

    fn unmount(&self, caller: &Caller, id: &str, eject: bool) -> Result<Volume, StorageError> {
        need(caller, PERM_MOUNT)?;
        let id = id.to_owned();
        self.op(|d| async move { d.unmount(&id, eject).await })
    }

    fn format(&self, caller: &Caller, id: &str, fs_type: &str) -> Result<Volume, StorageError> {
        need(caller, PERM_FORMAT)?;
        let (id, fs_type) = (id.to_owned(), fs_type.to_owned());
        self.op(|d| async move { d.format(&id, &fs_type).await })
    }

    fn subscribe(&self, caller: &Caller, listener: Listener<VolumeListenerProxy>) -> Result<u64, StorageError> {
        self.shared.subs.add(&self.rt, caller, listener, VolumeListenerProxy::remote, |p, v, lost| async move { p.on_volume_change(v, lost).await }).map_err(
            |e| match e {
                SubscribeError::TooMany(m) => StorageError::TooMany(m),
                SubscribeError::Failed(m) => StorageError::Failed(m),
            },
        )
    }

    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, StorageError> {
        Ok(self.shared.subs.remove(caller.uid(), id))
    }

    fn on_dump(&self, _args: &[String]) -> String {
        let linked = if accord_safwk::lock(&self.shared.daemon).is_some() { "linked to the daemon" } else { "NOT linked to the daemon" };
        let subs = self.shared.subs.len();
        format!("storage manager (SA {}): {linked}, subscribers: {subs}\n{}", crate::ID, crate::table(&self.list()))
    }
}
