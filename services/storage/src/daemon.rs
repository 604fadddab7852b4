//! The storage daemon (SA 5002): the volume table, the uevent listener,
//! and the privileged work (checking, mounting, unmounting, formatting).
//!
//! It runs as root with only `CAP_SYS_ADMIN` (mount), `CAP_DAC_OVERRIDE`
//! and `CAP_DAC_READ_SEARCH` (reading block devices and making mount
//! points), `CAP_CHOWN` and `CAP_FOWNER` (see `storage_daemon.cfg`), and
//! answers only [`MANAGER_UID`] and root ([`StorageError::PermissionDenied`]
//! otherwise; samgr's policy already hands its handle to those only).
//!
//! Mount, unmount and format take turns (one at a time); reading the
//! table never waits for them. A volume that disappears while a check or
//! mount of it runs is not brought back: its entry's generation tells.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use accord_safwk::typed::Listener;
use accord_safwk::Caller;

use crate::data::DataOutcome;
use crate::fs::{self, CheckOutcome, Content, Tools};
use crate::uevent::{self, BlockDevice};
use crate::{StorageDaemon, StorageError, Volume, VolumeListenerProxy, VolumeState, VolumeType, DATA_VOLUME, MAX_PENDING, MAX_VOLUMES, MEDIA_RW_GID};

/// Where the daemon finds and puts things (the image's paths by default;
/// tests point them elsewhere).
#[derive(Debug, Clone)]
pub struct Config {
    pub tools: Tools,
    /// `/sys/class/block`.
    pub class_block: PathBuf,
    /// `/dev`.
    pub dev_dir: PathBuf,
    /// [`crate::EXTERNAL_ROOT`].
    pub external_root: PathBuf,
    /// [`crate::data::DATA_STATE`].
    pub data_state: PathBuf,
    /// The uid besides root that may call (the storage manager's).
    pub manager_uid: u32,
    /// Listen to uevents (off in tests without a kernel to send them).
    pub uevents: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            tools: Tools::default(),
            class_block: "/sys/class/block".into(),
            dev_dir: "/dev".into(),
            external_root: crate::EXTERNAL_ROOT.into(),
            data_state: crate::data::DATA_STATE.into(),
            manager_uid: crate::MANAGER_UID,
            uevents: true,
        }
    }
}

struct Entry {
    vol: Volume,
    /// The block device's numbers (major, minor).
    devnum: (u32, u32),
    /// The block device's name (`vdb`), "" for the data partition.
    name: String,
    gen: u64,
}

/// The subscriber (the storage manager): its queue and what it dropped.
struct Subscriber {
    tx: tokio::sync::mpsc::Sender<Volume>,
    lost: Arc<AtomicU32>,
}

/// The storage daemon: see the module doc.
pub struct Daemon {
    cfg: Config,
    table: Mutex<BTreeMap<String, Entry>>,
    /// The change number ([`Volume::seq`]): raised only with `table`
    /// held, so a read of both under it is consistent.
    seq: AtomicU64,
    /// Mount, unmount and format take turns.
    ops: Mutex<()>,
    next_gen: AtomicU64,
    /// The data partition's device name (`vda`): never an external volume.
    /// Unknown (no boot outcome, nothing on /data), the daemon mounts and
    /// formats nothing: it cannot tell the data disk from a stick.
    data_dev: Option<String>,
    subscriber: Mutex<Option<Subscriber>>,
    rt: tokio::runtime::Handle,
}

/// Microseconds since boot (CLOCK_BOOTTIME): where a daemon's change
/// numbers start, so a restarted daemon's are above its predecessor's
/// (which made far fewer than one change a microsecond).
fn boot_micros() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec this frame owns.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) } != 0 {
        return 0;
    }
    (ts.tv_sec as u64).saturating_mul(1_000_000).saturating_add(ts.tv_nsec as u64 / 1000)
}

fn wrong(v: &Volume, why: &str) -> StorageError {
    StorageError::WrongState { id: v.id.clone(), state: v.state.name().into(), why: why.into() }
}

impl Daemon {
    /// The daemon over `cfg`: reads the boot step's outcome for the data
    /// partition, finds the block devices present (mounting the external
    /// ones that hold a filesystem, as they would be on arrival) and, with
    /// `cfg.uevents`, listens for more. Call it inside a tokio runtime.
    ///
    /// # Errors
    /// Not inside a runtime, or the uevent socket cannot be opened.
    pub fn start(cfg: Config) -> Result<Arc<Daemon>, String> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| format!("storage daemon: {e}"))?;
        let data: Option<DataOutcome> = match std::fs::read(&cfg.data_state) {
            Ok(b) => match serde_json::from_slice(&b) {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::error!("{}: {e}; the data partition's state is unknown", cfg.data_state.display());
                    None
                }
            },
            Err(e) => {
                tracing::warn!("{}: {e}; no data partition was prepared at boot", cfg.data_state.display());
                None
            }
        };
        // Without the boot step's word, the disk mounted on /data is the
        // data disk (and a mounted disk is never an external volume).
        let data_dev = data.as_ref().map(|d| d.device.rsplit('/').next().unwrap_or_default().to_owned()).or_else(|| {
            let dev = fs::source_mounted_on(Path::new("/data"))?;
            Some(dev.rsplit('/').next()?.to_owned())
        });
        let daemon = Arc::new(Daemon {
            cfg,
            table: Mutex::default(),
            seq: AtomicU64::new(boot_micros()),
            ops: Mutex::default(),
            next_gen: AtomicU64::new(1),
            data_dev,
            subscriber: Mutex::default(),
            rt,
        });
        if let Some(d) = data {
            let mounted = d.state == VolumeState::Mounted;
            let vol = Volume {
                id: DATA_VOLUME.into(),
                kind: VolumeType::Emulated,
                state: d.state,
                device: d.device.clone(),
                fs_type: if d.uuid.is_empty() { String::new() } else { "ext4".into() },
                fs_uuid: d.uuid.clone(),
                label: String::new(),
                path: if mounted { d.mount_point.clone() } else { String::new() },
                total_bytes: 0,
                free_bytes: 0,
                detail: d.detail.clone(),
                seq: 0,
            };
            let name = d.device.rsplit('/').next().unwrap_or_default().to_owned();
            let devnum = uevent::device(&daemon.cfg.class_block, &name).map_or((0, 0), |b| (b.major, b.minor));
            let mut table = accord_safwk::lock(&daemon.table);
            let mut vol = vol;
            vol.seq = daemon.seq.fetch_add(1, Ordering::Relaxed) + 1;
            table.insert(DATA_VOLUME.into(), Entry { vol, devnum, name, gen: 0 });
        }
        // A uevent socket opened before the scan misses nothing between.
        let sock = if daemon.cfg.uevents { Some(uevent::Socket::open().map_err(|e| format!("uevent socket: {e}"))?) } else { None };
        for dev in uevent::scan(&daemon.cfg.class_block) {
            daemon.added(dev);
        }
        if let Some(sock) = sock {
            let d = daemon.clone();
            std::thread::Builder::new().name("uevents".into()).spawn(move || d.listen(sock)).map_err(|e| format!("uevent thread: {e}"))?;
        }
        Ok(daemon)
    }

    fn listen(self: Arc<Self>, mut sock: uevent::Socket) {
        loop {
            match sock.next_event() {
                Ok(ev) => match ev.action.as_str() {
                    "add" => {
                        if let Some(dev) = uevent::device(&self.cfg.class_block, &ev.name) {
                            self.added(dev);
                        }
                    }
                    "remove" => self.removed(&ev.name),
                    // A card reader's medium comes and goes as a change of
                    // the disk (its size).
                    "change" => match uevent::device(&self.cfg.class_block, &ev.name) {
                        Some(dev) if fs::device_bytes(&dev.sys) == 0 => self.removed(&ev.name),
                        Some(dev) => self.added(dev),
                        None => {}
                    },
                    other => tracing::debug!("uevent {other} for {}: not acted on", ev.name),
                },
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    // Events were lost: the present devices are the truth.
                    tracing::warn!("uevents were lost (the socket overflowed); rescanning");
                    self.rescan();
                }
                Err(e) => {
                    tracing::error!("uevent socket: {e}; hot-plug is not followed any more");
                    return;
                }
            }
        }
    }

    fn rescan(self: &Arc<Self>) {
        let present = uevent::scan(&self.cfg.class_block);
        let gone: Vec<String> = accord_safwk::lock(&self.table)
            .values()
            .filter(|e| e.vol.kind == VolumeType::External && !present.iter().any(|d| d.name == e.name))
            .map(|e| e.name.clone())
            .collect();
        for name in gone {
            self.removed(&name);
        }
        for dev in present {
            self.added(dev);
        }
    }

    /// Whether `dev` is (part of) the data partition's disk.
    fn is_data(&self, dev: &BlockDevice) -> bool {
        self.data_dev.as_deref().is_some_and(|d| dev.name == d || (dev.is_partition && dev.name.starts_with(d)))
    }

    /// A block device appeared (or was there at start): a new EXTERNAL
    /// volume, checked and mounted on another thread if it holds a
    /// filesystem.
    fn added(self: &Arc<Self>, dev: BlockDevice) {
        if uevent::ignored(&dev.name) || dev.has_partitions || self.is_data(&dev) || fs::device_bytes(&dev.sys) == 0 {
            return;
        }
        let id = format!("vol-{}-{}", dev.major, dev.minor);
        // Known already (a rescan, a repeated event): nothing is read.
        if accord_safwk::lock(&self.table).contains_key(&id) {
            return;
        }
        let path = self.cfg.dev_dir.join(&dev.name);
        // Mounted already: on our mount point, it is ours from before a
        // restart (adopted, not checked again); anywhere else, not a
        // volume of ours at all.
        let ours = self.cfg.external_root.join(&id);
        let mounted = fs::mount_point_of(dev.major, dev.minor);
        if let Some(mp) = &mounted {
            if Path::new(mp) != ours {
                tracing::info!("{}: mounted on {mp}, not by the storage daemon: not a volume", path.display());
                return;
            }
        }
        let content = fs::probe(&path);
        let vol = {
            let mut table = accord_safwk::lock(&self.table);
            if table.contains_key(&id) {
                return;
            }
            if table.len() >= MAX_VOLUMES {
                tracing::warn!("{}: not tracked, {MAX_VOLUMES} volumes already", path.display());
                return;
            }
            let (fs_type, fs_uuid, label, detail) = match &content {
                Ok(c @ (Content::Ext { uuid, label, .. } | Content::Fat { uuid, label })) => {
                    (c.fs_type().to_owned(), uuid.clone(), label.clone(), String::new())
                }
                Ok(Content::Blank) => (String::new(), String::new(), String::new(), "blank: no filesystem (format it)".to_owned()),
                Ok(Content::Unknown) => (String::new(), String::new(), String::new(), "no filesystem Accord knows (ext4, vfat)".to_owned()),
                Err(e) => (String::new(), String::new(), String::new(), format!("cannot read {}: {e}", path.display())),
            };
            let adopted = mounted.is_some();
            let vol = Volume {
                id: id.clone(),
                kind: VolumeType::External,
                state: if adopted { VolumeState::Mounted } else { VolumeState::Unmounted },
                device: path.display().to_string(),
                fs_type,
                fs_uuid,
                label,
                path: if adopted { ours.display().to_string() } else { String::new() },
                total_bytes: 0,
                free_bytes: 0,
                detail: if adopted { "mounted (found mounted when the daemon started)".into() } else { detail },
                seq: self.seq.fetch_add(1, Ordering::Relaxed) + 1,
            };
            let gen = self.next_gen.fetch_add(1, Ordering::Relaxed);
            table.insert(id.clone(), Entry { vol: vol.clone(), devnum: (dev.major, dev.minor), name: dev.name.clone(), gen });
            vol
        };
        tracing::info!("volume {id} ({}): appeared, {}", vol.device, if vol.fs_type.is_empty() { "no filesystem" } else { &vol.fs_type });
        self.notify(self.sized(vol.clone()));
        if !vol.fs_type.is_empty() && vol.state == VolumeState::Unmounted && self.data_dev.is_some() {
            let d = self.clone();
            let spawned = std::thread::Builder::new().name(format!("mount {id}")).spawn(move || {
                if let Err(e) = d.do_mount(&id) {
                    tracing::warn!("volume {id}: not mounted on arrival: {e}");
                }
            });
            if let Err(e) = spawned {
                tracing::error!("volume {}: cannot start its mount: {e}", vol.id);
            }
        }
    }

    /// A block device went away: REMOVED, or BAD_REMOVAL if it was
    /// mounted (the mount is detached, so nothing waits on the dead
    /// device); then it leaves the table.
    fn removed(&self, name: &str) {
        let entry = {
            let mut table = accord_safwk::lock(&self.table);
            let Some(id) = table.iter().find(|(_, e)| e.name == name && e.vol.kind == VolumeType::External).map(|(id, _)| id.clone()) else { return };
            let mut e = table.remove(&id);
            if let Some(e) = &mut e {
                e.vol.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            }
            e
        };
        let Some(mut e) = entry else { return };
        if e.vol.path.is_empty() {
            e.vol.state = VolumeState::Removed;
            e.vol.detail = "removed".into();
        } else {
            let path = std::mem::take(&mut e.vol.path);
            let detached = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH);
            let _ = std::fs::remove_dir(&path);
            e.vol.state = VolumeState::BadRemoval;
            e.vol.detail = match detached {
                Ok(()) => format!("removed while mounted on {path} (mount detached; unsaved writes may be lost)"),
                Err(err) => format!("removed while mounted on {path}; detaching failed: {err}"),
            };
        }
        tracing::warn!("volume {} ({}): {} {}", e.vol.id, e.vol.device, e.vol.state.name(), e.vol.detail);
        e.vol.total_bytes = 0;
        e.vol.free_bytes = 0;
        self.notify(e.vol);
    }

    /// The volume with its sizes now.
    fn sized(&self, v: Volume) -> Volume {
        fs::with_sizes(v, &self.cfg.class_block)
    }

    fn notify(&self, v: Volume) {
        let sub = accord_safwk::lock(&self.subscriber);
        if let Some(s) = sub.as_ref() {
            if s.tx.try_send(v).is_err() {
                s.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Changes volume `id` (if it is still the one of generation `gen`)
    /// and tells the subscriber.
    fn update(&self, id: &str, gen: u64, f: impl FnOnce(&mut Volume)) -> Option<Volume> {
        let v = {
            let mut table = accord_safwk::lock(&self.table);
            let e = table.get_mut(id).filter(|e| e.gen == gen)?;
            f(&mut e.vol);
            e.vol.seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
            e.vol.clone()
        };
        let v = self.sized(v);
        self.notify(v.clone());
        Some(v)
    }

    fn entry(&self, id: &str) -> Result<(Volume, u64, (u32, u32)), StorageError> {
        let table = accord_safwk::lock(&self.table);
        let e = table.get(id).ok_or_else(|| StorageError::NoSuchVolume(id.to_owned()))?;
        Ok((e.vol.clone(), e.gen, e.devnum))
    }

    /// Refuses to check, mount or format a device mounted anywhere.
    fn not_mounted(vol: &Volume, devnum: (u32, u32)) -> Result<(), StorageError> {
        match fs::mount_point_of(devnum.0, devnum.1) {
            Some(mp) => Err(wrong(vol, &format!("its device is mounted on {mp}"))),
            None => Ok(()),
        }
    }

    /// Refuses what writes to a disk while the data disk is not known.
    fn data_known(&self) -> Result<(), StorageError> {
        if self.data_dev.is_some() {
            Ok(())
        } else {
            Err(StorageError::Failed(format!(
                "the data disk is not known ({} is missing and nothing is mounted on /data): mounting and formatting are off",
                self.cfg.data_state.display()
            )))
        }
    }

    /// Checks and mounts external volume `id`.
    fn do_mount(&self, id: &str) -> Result<Volume, StorageError> {
        self.data_known()?;
        let _turn = accord_safwk::lock(&self.ops);
        let (vol, gen, devnum) = self.entry(id)?;
        if vol.kind == VolumeType::Emulated {
            return Err(wrong(&vol, "the data partition is mounted at boot only (reboot)"));
        }
        if !matches!(vol.state, VolumeState::Unmounted | VolumeState::Damaged) {
            return Err(wrong(&vol, "only an unmounted or damaged volume is mounted"));
        }
        Self::not_mounted(&vol, devnum)?;
        let dev = PathBuf::from(&vol.device);
        let content = fs::probe(&dev).map_err(|e| StorageError::Failed(format!("cannot read {}: {e}", dev.display())))?;
        if content.fs_type().is_empty() {
            self.update(id, gen, |v| v.detail = "no filesystem Accord knows (ext4, vfat): format it".into());
            return Err(StorageError::Unsupported(format!("{} holds no filesystem Accord mounts (ext4, vfat): format it", dev.display())));
        }
        self.update(id, gen, |v| {
            v.state = VolumeState::Checking;
            v.fs_type = content.fs_type().into();
        });
        let checked = fs::check(&self.cfg.tools, &dev, &content);
        let how = match checked {
            CheckOutcome::Clean => "checked: clean".to_owned(),
            CheckOutcome::Repaired { how } => format!("checked: errors repaired ({how})"),
            CheckOutcome::Failed { why } => {
                self.update(id, gen, |v| {
                    v.state = VolumeState::Damaged;
                    v.detail = why.clone();
                });
                return Err(StorageError::Failed(format!("volume {id}: {why}")));
            }
        };
        if !fs::wait_fs_type(content.fs_type(), std::time::Duration::from_secs(5)) {
            tracing::warn!("the kernel does not list {} (module missing?); trying the mount anyway", content.fs_type());
        }
        let target = self.cfg.external_root.join(id);
        let mounted = std::fs::create_dir_all(&target).map_err(|e| format!("{}: {e}", target.display())).and_then(|()| {
            use nix::mount::MsFlags;
            let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_NOATIME;
            let opts = (content.fs_type() == "vfat").then(|| format!("uid=0,gid={MEDIA_RW_GID},fmask=0113,dmask=0002,iocharset=utf8"));
            nix::mount::mount(Some(&dev), &target, Some(content.fs_type()), flags, opts.as_deref())
                .map_err(|e| format!("mounting {} on {}: {e}", dev.display(), target.display()))
        });
        if let Err(why) = mounted {
            let _ = std::fs::remove_dir(&target);
            self.update(id, gen, |v| {
                v.state = VolumeState::Damaged;
                v.detail = why.clone();
            });
            return Err(StorageError::Failed(why));
        }
        let path = target.display().to_string();
        // A check changes neither (the probe before it is current).
        let (uuid, label) = match content {
            Content::Ext { uuid, label, .. } | Content::Fat { uuid, label } => (uuid, label),
            Content::Blank | Content::Unknown => (String::new(), String::new()),
        };
        match self.update(id, gen, |v| {
            v.state = VolumeState::Mounted;
            v.path = path.clone();
            v.fs_uuid = uuid;
            v.label = label;
            v.detail = how;
        }) {
            Some(v) => {
                tracing::info!("volume {id}: mounted on {path} ({})", v.detail);
                Ok(v)
            }
            None => {
                // It went away while being mounted.
                let _ = nix::mount::umount2(path.as_str(), nix::mount::MntFlags::MNT_DETACH);
                let _ = std::fs::remove_dir(&target);
                Err(StorageError::NoSuchVolume(id.to_owned()))
            }
        }
    }

    fn do_unmount(&self, id: &str, eject: bool) -> Result<Volume, StorageError> {
        let _turn = accord_safwk::lock(&self.ops);
        let (vol, gen, _) = self.entry(id)?;
        if vol.kind == VolumeType::Emulated {
            return Err(wrong(&vol, "the data partition stays mounted while the system runs"));
        }
        if vol.state != VolumeState::Mounted {
            return Err(wrong(&vol, "only a mounted volume is unmounted"));
        }
        if eject {
            self.update(id, gen, |v| v.state = VolumeState::Ejecting);
        }
        match nix::mount::umount2(vol.path.as_str(), nix::mount::MntFlags::empty()) {
            Ok(()) => {}
            Err(e) => {
                self.update(id, gen, |v| v.state = VolumeState::Mounted);
                return Err(if e == nix::errno::Errno::EBUSY {
                    StorageError::Busy(id.to_owned())
                } else {
                    StorageError::Failed(format!("unmounting {}: {e}", vol.path))
                });
            }
        }
        let _ = std::fs::remove_dir(&vol.path);
        tracing::info!("volume {id}: unmounted from {}", vol.path);
        self.update(id, gen, |v| {
            v.state = VolumeState::Unmounted;
            v.path.clear();
            v.detail = if eject { "ejected: safe to remove".into() } else { "unmounted".into() };
        })
        .ok_or_else(|| StorageError::NoSuchVolume(id.to_owned()))
    }

    fn do_format(&self, id: &str, fs_type: &str) -> Result<Volume, StorageError> {
        let _turn = accord_safwk::lock(&self.ops);
        self.data_known()?;
        let (vol, gen, devnum) = self.entry(id)?;
        Self::not_mounted(&vol, devnum)?;
        let label = if vol.kind == VolumeType::Emulated {
            if vol.state != VolumeState::Damaged {
                return Err(wrong(&vol, "the data partition is formatted only when it is damaged"));
            }
            if fs_type != "ext4" {
                return Err(StorageError::Unsupported(format!("the data partition is ext4, not {fs_type:?}")));
            }
            "data"
        } else {
            if !matches!(vol.state, VolumeState::Unmounted | VolumeState::Damaged) {
                return Err(wrong(&vol, "unmount it first"));
            }
            "accord"
        };
        if !fs::FORMATS.contains(&fs_type) {
            return Err(StorageError::Unsupported(format!("cannot format as {fs_type:?}: Accord makes {}", fs::FORMATS.join(", "))));
        }
        // Still the same disk (a stick swapped under the same device
        // name is another volume of the same id).
        if self.entry(id)?.1 != gen {
            return Err(StorageError::NoSuchVolume(id.to_owned()));
        }
        tracing::warn!("volume {id} ({}): formatting as {fs_type}", vol.device);
        fs::format(&self.cfg.tools, Path::new(&vol.device), fs_type, label).map_err(StorageError::Failed)?;
        let (uuid, label) = match fs::probe(Path::new(&vol.device)) {
            Ok(Content::Ext { uuid, label, .. } | Content::Fat { uuid, label }) => (uuid, label),
            _ => (String::new(), String::new()),
        };
        let emulated = vol.kind == VolumeType::Emulated;
        self.update(id, gen, |v| {
            v.state = VolumeState::Unmounted;
            v.fs_type = fs_type.into();
            v.fs_uuid = uuid;
            v.label = label;
            v.detail = if emulated { "formatted as ext4: reboot to mount it on /data".into() } else { format!("formatted as {fs_type}") };
        })
        .ok_or_else(|| StorageError::NoSuchVolume(id.to_owned()))
    }

    fn allow(&self, caller: &Caller) -> Result<(), StorageError> {
        if caller.uid() == 0 || caller.uid() == self.cfg.manager_uid {
            Ok(())
        } else {
            Err(StorageError::PermissionDenied { uid: caller.uid(), permission: "the storage manager's uid".into() })
        }
    }

    /// Every volume, with its sizes now.
    pub fn list(&self) -> Vec<Volume> {
        let vols: Vec<Volume> = accord_safwk::lock(&self.table).values().map(|e| e.vol.clone()).collect();
        vols.into_iter().map(|v| self.sized(v)).collect()
    }
}

impl StorageDaemon for Arc<Daemon> {
    fn volumes(&self, caller: &Caller) -> Result<Vec<Volume>, StorageError> {
        self.allow(caller)?;
        Ok(self.list())
    }

    fn table(&self, caller: &Caller) -> Result<(u64, Vec<Volume>), StorageError> {
        self.allow(caller)?;
        let (seq, vols) = {
            let table = accord_safwk::lock(&self.table);
            (self.seq.load(Ordering::Relaxed), table.values().map(|e| e.vol.clone()).collect::<Vec<_>>())
        };
        Ok((seq, vols.into_iter().map(|v| self.sized(v)).collect()))
    }

    fn mount(&self, caller: &Caller, id: &str) -> Result<Volume, StorageError> {
        self.allow(caller)?;
        self.do_mount(id)
    }

    fn unmount(&self, caller: &Caller, id: &str, eject: bool) -> Result<Volume, StorageError> {
        self.allow(caller)?;
        self.do_unmount(id, eject)
    }

    fn format(&self, caller: &Caller, id: &str, fs_type: &str) -> Result<Volume, StorageError> {
        self.allow(caller)?;
        self.do_format(id, fs_type)
    }

    fn subscribe(&self, caller: &Caller, listener: Listener<VolumeListenerProxy>) -> Result<(), StorageError> {
        self.allow(caller)?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Volume>(MAX_PENDING);
        let lost = Arc::new(AtomicU32::new(0));
        *accord_safwk::lock(&self.subscriber) = Some(Subscriber { tx, lost: lost.clone() });
        self.rt.spawn(async move {
            let proxy = match listener.connect().await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!("volume subscriber: {e}");
                    return;
                }
            };
            while let Some(v) = rx.recv().await {
                let n = lost.swap(0, Ordering::Relaxed);
                let sent = tokio::select! {
                    r = proxy.on_volume_change(v, n) => r,
                    () = proxy.died() => return,
                };
                if let Err(e) = sent {
                    tracing::warn!("volume subscriber: {e}; not told any more");
                    return;
                }
            }
        });
        Ok(())
    }

    fn on_dump(&self, _args: &[String]) -> String {
        format!("storage daemon (SA {}):\n{}", crate::DAEMON_ID, crate::table(&self.list()))
    }
}
