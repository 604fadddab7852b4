//! The data partition at boot: checked, mounted, and its per-user
//! directories made (OpenHarmony's storage daemon does this for the
//! `required` partitions and `PrepareUserDirs`). init runs it in its `fs`
//! job, before anything reads `/data`:
//!
//! ```text
//! syncexec /system/bin/storage_daemon prepare-data /dev/vda /data
//! ```
//!
//! The recovery path (ARCHITECTURE.md, "The data partition"):
//!
//! | the disk holds                | what happens                                       | state    |
//! |-------------------------------|----------------------------------------------------|----------|
//! | zeros at the start, a backup superblock further on | rebuilt with `e2fsck -b`; mounted | MOUNTED |
//! | only zeros (first boot)       | `mke2fs -t ext4`, then mounted                     | MOUNTED  |
//! | ext4, clean                   | `e2fsck -p`, mounted                               | MOUNTED  |
//! | ext4 with errors              | `e2fsck -p`, then `e2fsck -f -y` if needed; mounted | MOUNTED  |
//! | ext4 beyond repair            | not mounted, said on the console and in the log    | DAMAGED  |
//! | no superblock, not blank      | `e2fsck -f -y -b` from a backup superblock; mounted | MOUNTED  |
//! | anything else (not blank)     | never formatted (it may be someone's data)         | DAMAGED  |
//!
//! A DAMAGED `/data` is never replaced by an empty one: the system boots
//! with an empty read-only tmpfs there (so every write fails with EROFS
//! instead of landing in RAM), the console says what
//! happened and how to start over (`storage format data`, which is
//! allowed only then, and a reboot).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::fs::{self, CheckOutcome, Content, Tools};
use crate::VolumeState;

/// Where the outcome is left for the running storage daemon (a tmpfs).
pub const DATA_STATE: &str = "/run/storage/data.json";
/// How long the mount waits for the kernel to know ext4.
const FS_TYPE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);
/// The user whose directories are made at boot (OpenHarmony's first user).
pub const DEFAULT_USER: u32 = 100;

/// What the boot step did with the data partition.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataOutcome {
    /// The block device (`/dev/vda`).
    pub device: String,
    /// Where it is (or would be) mounted.
    pub mount_point: String,
    /// MOUNTED or DAMAGED.
    pub state: VolumeState,
    /// The filesystem's uuid ("" if none was found).
    pub uuid: String,
    /// What was done, in words (shown by `storage volumes`).
    pub detail: String,
    /// Milliseconds the check (and format, on first boot) took.
    pub check_ms: u64,
    /// Milliseconds from start to mounted (check included).
    pub total_ms: u64,
}

/// Checks `dev`, formats it if blank, mounts it on `mnt` (ext4, nosuid,
/// nodev, noatime): see the module doc's table. Never fails: a problem is
/// a DAMAGED outcome naming it.
pub fn prepare(tools: &Tools, dev: &Path, mnt: &Path) -> DataOutcome {
    let start = Instant::now();
    let mut out = DataOutcome {
        device: dev.display().to_string(),
        mount_point: mnt.display().to_string(),
        state: VolumeState::Damaged,
        uuid: String::new(),
        detail: String::new(),
        check_ms: 0,
        total_ms: 0,
    };
    let done = |mut out: DataOutcome| {
        if out.state != VolumeState::Mounted {
            // Nothing may land in the root filesystem's /data (RAM, gone
            // at the next boot) as if it were stored: an empty read-only
            // tmpfs makes every write there fail, loudly.
            use nix::mount::MsFlags;
            match nix::mount::mount(
                Some("tmpfs"),
                mnt,
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("size=4k,mode=0755"),
            ) {
                Ok(()) => out.detail.push_str(&format!("; {} is an empty read-only tmpfs meanwhile", mnt.display())),
                Err(e) => out.detail.push_str(&format!("; {} could not be made read-only ({e})", mnt.display())),
            }
        }
        out.total_ms = start.elapsed().as_millis() as u64;
        out
    };
    let content = match fs::probe(dev) {
        Ok(c) => c,
        Err(e) => {
            out.detail = format!("cannot read {}: {e}", dev.display());
            return done(out);
        }
    };
    let step = Instant::now();
    let how = match &content {
        // Zeros where the superblock belongs: a new disk, or one whose
        // start was wiped; a backup superblock tells them apart.
        Content::Blank => match fs::check_ext_backup(tools, dev) {
            CheckOutcome::Clean | CheckOutcome::Repaired { .. } => "its start was zeroed: the filesystem was rebuilt from a backup superblock".to_owned(),
            CheckOutcome::Failed { .. } => {
                if let Err(e) = fs::format(tools, dev, "ext4", "data") {
                    out.detail = format!("blank disk, and formatting it failed: {e}");
                    return done(out);
                }
                "blank disk (first boot): formatted as ext4".to_owned()
            }
        },
        Content::Ext { .. } => match fs::check_ext(tools, dev) {
            CheckOutcome::Clean => "checked: clean".to_owned(),
            CheckOutcome::Repaired { how } => format!("checked: errors repaired ({how})"),
            CheckOutcome::Failed { why } => {
                out.check_ms = step.elapsed().as_millis() as u64;
                out.detail = format!("the filesystem is damaged beyond repair: {why}");
                return done(out);
            }
        },
        // No superblock where it should be, but not blank: a damaged
        // primary superblock is what e2fsck's backup copies are for.
        // e2fsck writes nothing to a disk where it finds no ext4.
        Content::Unknown => match fs::check_ext_backup(tools, dev) {
            CheckOutcome::Clean => "checked: clean".to_owned(),
            CheckOutcome::Repaired { how } => format!("checked: superblock repaired from a backup ({how})"),
            CheckOutcome::Failed { why } => {
                out.check_ms = step.elapsed().as_millis() as u64;
                out.detail = format!(
                    "{} holds no ext4 filesystem (and {why}) and is not blank: not formatted (it may hold data); to start over: storage format data, then reboot",
                    dev.display()
                );
                return done(out);
            }
        },
        Content::Fat { .. } => {
            out.detail = format!(
                "{} holds no ext4 filesystem and is not blank: not formatted (it may hold data); to start over: storage format data, then reboot",
                dev.display()
            );
            return done(out);
        }
    };
    out.check_ms = step.elapsed().as_millis() as u64;
    if let Ok(Content::Ext { uuid, .. }) = fs::probe(dev) {
        out.uuid = uuid;
    }
    use nix::mount::MsFlags;
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOATIME;
    // The ext4 module may still be loading.
    let known = fs::wait_fs_type("ext4", FS_TYPE_WAIT);
    if let Err(e) = nix::mount::mount(Some(dev), mnt, Some("ext4"), flags, None::<&str>) {
        let why = if known { String::new() } else { format!(" (the kernel has no ext4 after {} s: is its module in the image?)", FS_TYPE_WAIT.as_secs()) };
        out.detail = format!("{how}; mounting it on {} failed: {e}{why}", mnt.display());
        return done(out);
    }
    out.state = VolumeState::Mounted;
    out.detail = how;
    done(out)
}

/// One directory of a user's tree: path (with `{user}`), mode.
const USER_DIRS: &[(&str, u32)] = &[
    ("app", 0o711),
    ("app/el1", 0o711),
    ("app/el1/{user}", 0o711),
    ("app/el1/{user}/base", 0o711),
    ("app/el1/{user}/database", 0o711),
    ("app/el2", 0o711),
    ("app/el2/{user}", 0o711),
    ("app/el2/{user}/base", 0o711),
    ("app/el2/{user}/database", 0o711),
    ("app/el2/{user}/log", 0o711),
    ("service", 0o711),
    ("service/el1", 0o711),
    ("service/el1/{user}", 0o711),
    ("service/el2", 0o711),
    ("service/el2/{user}", 0o711),
];

/// Makes user `user`'s directory tree under `data` (OpenHarmony's
/// `PrepareUserDirs`: `app/el1..el2/<user>/{base,database}`,
/// `service/el1..el2/<user>`), owned by root with the modes above, fixing
/// the mode of any that exist. el2 is made at boot too: Accord has no lock
/// screen yet, so "after first unlock" is "at boot".
///
/// # Errors
/// A directory cannot be made or its mode set (named in the message).
pub fn prepare_user_dirs(data: &Path, user: u32) -> Result<(), String> {
    for (rel, mode) in USER_DIRS {
        let path = data.join(rel.replace("{user}", &user.to_string()));
        match std::fs::create_dir(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// `storage_daemon prepare-data <device> <mount point>`: [`prepare`], the
/// user directories of [`DEFAULT_USER`], the outcome written to
/// [`DATA_STATE`] and said on the console. Exit status 1 when `/data` is
/// not mounted (init logs it), 0 otherwise.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let [dev, mnt] = args else {
        anyhow::bail!("usage: storage_daemon prepare-data DEVICE MOUNT_POINT");
    };
    let out = prepare(&Tools::default(), Path::new(dev), Path::new(mnt));
    let mut ok = out.state == VolumeState::Mounted;
    let mut line = match out.state {
        VolumeState::Mounted => format!("storage: {mnt}: {dev} {} ({} ms), mounted", out.detail, out.check_ms),
        _ => format!("storage: {mnt}: {dev} is DAMAGED and not mounted: {}", out.detail),
    };
    if ok {
        if let Err(e) = prepare_user_dirs(Path::new(mnt), DEFAULT_USER) {
            line.push_str(&format!("; the directories of user {DEFAULT_USER} could not be made: {e}"));
            ok = false;
        }
    }
    if ok {
        tracing::info!("{line}");
    } else {
        tracing::error!("{line}");
    }
    // The console sees it whatever the log level.
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/console") {
        use std::io::Write;
        let _ = writeln!(c, "{line}");
    }
    let state = Path::new(DATA_STATE);
    if let Some(dir) = state.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let json = serde_json::to_vec(&out)?;
    std::fs::write(state, json).map_err(|e| anyhow::anyhow!("{DATA_STATE}: {e}"))?;
    if !ok {
        std::process::exit(1);
    }
    Ok(())
}
