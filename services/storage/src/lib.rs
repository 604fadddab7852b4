//! Storage: OpenHarmony's storage manager (SA 5003, `storage_manager`) and
//! storage daemon (SA 5002, `storage_daemon`). This crate owns:
//!
//! - the data partition at boot ([`data`]): checked with e2fsck, formatted
//!   when blank, mounted on `/data`, never replaced by an empty one when
//!   damaged; the per-user directories of user 100;
//! - volumes ([`Volume`]): the data partition (EMULATED) and every other
//!   block device (EXTERNAL), found at start in sysfs and as they come and
//!   go through the kernel's uevents ([`uevent`]), checked and mounted
//!   under [`EXTERNAL_ROOT`]`/<id>`, unmounted, formatted ([`fs`]);
//! - the two system abilities and their typed interfaces:
//!   [`StorageDaemon`] ([`daemon`]; root with only the capabilities that
//!   mounting and making directories take; it answers the storage
//!   manager's uid and root only) and [`StorageManager`] ([`manager`]; its
//!   own uid, no capabilities: the one every client talks to, which checks
//!   permissions and passes privileged work to the daemon);
//! - the `storage` console tool ([`cli`]).
//!
//! The split is OpenHarmony's: what a client can reach runs without
//! privilege; what needs `CAP_SYS_ADMIN` answers one uid.

pub mod cli;
pub mod daemon;
pub mod data;
pub mod fs;
pub mod manager;
pub mod uevent;

use accord_safwk::typed::Listener;
use accord_safwk::{interface, Caller};
use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// SA id of the storage manager (OpenHarmony's `STORAGE_MANAGER_MANAGER_ID`).
pub const ID: u32 = 5003;
/// SA id of the storage daemon (OpenHarmony's `STORAGE_MANAGER_DAEMON_ID`).
pub const DAEMON_ID: u32 = 5002;
/// The storage manager's uid (OpenHarmony's `storage_manager`, 1090): the
/// only one, with root, that the daemon answers.
pub const MANAGER_UID: u32 = 1090;
/// The group that may write external volumes (Android's and OpenHarmony's
/// `media_rw`).
pub const MEDIA_RW_GID: u32 = 1023;
/// Where external volumes are mounted: `<EXTERNAL_ROOT>/<volume id>`.
pub const EXTERNAL_ROOT: &str = "/mnt/data/external";
/// The id of the data partition's volume.
pub const DATA_VOLUME: &str = "data";
/// Permission to mount and unmount (OpenHarmony's name).
pub const PERM_MOUNT: &str = "ohos.permission.MOUNT_UNMOUNT_MANAGER";
/// Permission to format (OpenHarmony's name).
pub const PERM_FORMAT: &str = "ohos.permission.MOUNT_FORMAT_MANAGER";
/// Most volume subscriptions one uid holds at the manager.
pub const MAX_SUBS_PER_UID: usize = 4;
/// Most volume subscriptions the manager holds for uids other than root
/// and system (which have only their per-uid share).
pub const MAX_SUBS: usize = 64;
/// Changes waiting for one subscriber before newer ones are dropped (and
/// counted in the next one's `lost`).
pub const MAX_PENDING: usize = 32;
/// Most volumes tracked at once (block devices past it are ignored, and
/// logged).
pub const MAX_VOLUMES: usize = 64;

/// A volume's type (OpenHarmony's `VolumeType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum VolumeType {
    /// The data partition, the device's own storage.
    Emulated,
    /// A removable or extra disk.
    External,
}

/// A volume's state (OpenHarmony's `VolumeState`, plus DAMAGED).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum VolumeState {
    Unmounted,
    /// Its filesystem is being checked (before a mount).
    Checking,
    Mounted,
    /// Being unmounted to be taken out.
    Ejecting,
    /// Gone while it was not mounted.
    Removed,
    /// Gone while it was mounted (its mount was detached).
    BadRemoval,
    /// Its filesystem cannot be checked, repaired or mounted.
    Damaged,
}

impl VolumeState {
    /// OpenHarmony's spelling (`storage volumes` prints it).
    pub fn name(self) -> &'static str {
        match self {
            VolumeState::Unmounted => "UNMOUNTED",
            VolumeState::Checking => "CHECKING",
            VolumeState::Mounted => "MOUNTED",
            VolumeState::Ejecting => "EJECTING",
            VolumeState::Removed => "REMOVED",
            VolumeState::BadRemoval => "BAD_REMOVAL",
            VolumeState::Damaged => "DAMAGED",
        }
    }
}

impl VolumeType {
    pub fn name(self) -> &'static str {
        match self {
            VolumeType::Emulated => "EMULATED",
            VolumeType::External => "EXTERNAL",
        }
    }
}

/// A volume (OpenHarmony's `VolumeExternal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Type)]
pub struct Volume {
    /// [`DATA_VOLUME`], or `vol-<major>-<minor>` of its block device.
    pub id: String,
    pub kind: VolumeType,
    pub state: VolumeState,
    /// The block device (`/dev/vdb`).
    pub device: String,
    /// `ext4`, `vfat`, or "" (none found).
    pub fs_type: String,
    pub fs_uuid: String,
    pub label: String,
    /// Where it is mounted ("" when it is not).
    pub path: String,
    /// Bytes: the filesystem's size when mounted, else the device's.
    pub total_bytes: u64,
    /// Bytes free to an unprivileged user (0 when not mounted).
    pub free_bytes: u64,
    /// The last check, mount or failure, in words.
    pub detail: String,
    /// The daemon's change number: it grows with every change of its
    /// table (and a restarted daemon goes on above its predecessor: it
    /// starts at the microseconds since boot), so of two reports of a
    /// volume the one with the higher `seq` is newer. A listener ignores a change whose `seq` is not above the
    /// last it applied for that volume (after a loss it reads the volumes
    /// again, and what was queued before is then older).
    pub seq: u64,
}

/// The storage SAs' errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum StorageError {
    #[error("no volume {0:?}")]
    NoSuchVolume(String),
    /// The caller lacks the permission named.
    #[error("uid {uid} lacks {permission}")]
    PermissionDenied { uid: u32, permission: String },
    /// The operation does not fit the volume's state.
    #[error("volume {id} is {state}: {why}")]
    WrongState { id: String, state: String, why: String },
    /// Something holds files open on it.
    #[error("volume {0} is busy (files are open on it)")]
    Busy(String),
    /// A filesystem type Accord does not check, mount or make.
    #[error("{0}")]
    Unsupported(String),
    /// A check, mount or format failed: what the tool or kernel said.
    #[error("{0}")]
    Failed(String),
    /// Too many subscriptions (see [`MAX_SUBS_PER_UID`]).
    #[error("too many subscriptions: {0}")]
    TooMany(String),
    /// The storage daemon cannot be reached.
    #[error("the storage daemon (SA 5002) cannot be reached: {0}")]
    Daemon(String),
}

/// The storage daemon (SA [`DAEMON_ID`]): the privileged half. Only the
/// storage manager's uid and root may call it.
#[interface(name = "ohos.storage.StorageDaemon")]
pub trait StorageDaemon {
    /// Every volume, by id.
    fn volumes(&self, caller: &Caller) -> Result<Vec<Volume>, StorageError>;
    /// The table as of change number `.0` (no change is missing from it
    /// and none above `.0` is in it): what the manager reads after it
    /// (re)subscribes or lost changes.
    fn table(&self, caller: &Caller) -> Result<(u64, Vec<Volume>), StorageError>;
    /// Checks and mounts an external volume (UNMOUNTED or DAMAGED).
    fn mount(&self, caller: &Caller, id: &str) -> Result<Volume, StorageError>;
    /// Unmounts a volume; `eject`: as for taking it out (EJECTING while it
    /// goes). The data partition is never unmounted.
    fn unmount(&self, caller: &Caller, id: &str, eject: bool) -> Result<Volume, StorageError>;
    /// Makes a new `fs_type` filesystem on an unmounted external volume
    /// (everything on it is lost), or on a DAMAGED data partition.
    fn format(&self, caller: &Caller, id: &str, fs_type: &str) -> Result<Volume, StorageError>;
    /// Calls `listener` with every volume change from now on (one
    /// subscription, the newest, is kept: the manager's).
    fn subscribe(&self, caller: &Caller, listener: Listener<VolumeListenerProxy>) -> Result<(), StorageError>;
}

/// The storage manager (SA [`ID`]): what clients and the `storage` tool
/// call (OpenHarmony's `IStorageManager` volume part).
#[interface(name = "ohos.storage.StorageManager")]
pub trait StorageManager {
    /// Every volume, with its sizes now.
    fn volumes(&self, caller: &Caller) -> Result<Vec<Volume>, StorageError>;
    /// Checks and mounts a volume ([`PERM_MOUNT`]).
    fn mount(&self, caller: &Caller, id: &str) -> Result<Volume, StorageError>;
    /// Unmounts a volume ([`PERM_MOUNT`]); `eject`: to take it out.
    fn unmount(&self, caller: &Caller, id: &str, eject: bool) -> Result<Volume, StorageError>;
    /// Formats a volume as `fs_type` (`ext4` or `vfat`; [`PERM_FORMAT`]).
    fn format(&self, caller: &Caller, id: &str, fs_type: &str) -> Result<Volume, StorageError>;
    /// Calls `listener` with every volume change (OpenHarmony's volume
    /// state callbacks) until `unsubscribe` or the listener's process
    /// goes; at most [`MAX_SUBS_PER_UID`] per uid.
    fn subscribe(&self, caller: &Caller, listener: Listener<VolumeListenerProxy>) -> Result<u64, StorageError>;
    /// Ends a subscription of the caller's uid; whether it was there.
    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, StorageError>;
}

/// What a volume subscriber implements.
#[interface(name = "ohos.storage.VolumeListener")]
pub trait VolumeListener {
    /// `volume` changed (state, or it appeared; REMOVED and BAD_REMOVAL
    /// say it left). `lost`: newer changes were dropped because the
    /// listener fell behind; when not 0, read the volumes again, and ignore
    /// the changes still queued that are older (a lower `seq`) than what
    /// the read gave.
    fn on_volume_change(&self, volume: Volume, lost: u32);
}

/// The table `storage volumes` and `hidumper -s 5003` print, then a line
/// saying why for each volume that is not mounted.
pub fn table(volumes: &[Volume]) -> String {
    let mut out = format!("{:<12} {:<9} {:<12} {:<10} {:<6} {:>10} {:>10}  {}\n", "ID", "TYPE", "STATE", "DEVICE", "FS", "TOTAL", "FREE", "PATH");
    for v in volumes {
        out.push_str(&format!(
            "{:<12} {:<9} {:<12} {:<10} {:<6} {:>10} {:>10}  {}\n",
            v.id,
            v.kind.name(),
            v.state.name(),
            v.device,
            if v.fs_type.is_empty() { "-" } else { &v.fs_type },
            human(v.total_bytes),
            if v.state == VolumeState::Mounted { human(v.free_bytes) } else { "-".into() },
            if v.path.is_empty() { "-" } else { &v.path },
        ));
    }
    // Why a volume is not mounted, under the table.
    for v in volumes.iter().filter(|v| v.state != VolumeState::Mounted && !v.detail.is_empty()) {
        out.push_str(&format!("  {}: {}\n", v.id, v.detail));
    }
    out
}

/// Bytes in binary units, one decimal (`1.5G`).
pub fn human(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}
