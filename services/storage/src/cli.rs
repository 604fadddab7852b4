//! `storage`: volumes from the console (the image links it to the
//! multi-call `sa_main`), through the storage manager (SA 5003).
//!
//! ```text
//! storage volumes              every volume: id, type, state, device, fs, sizes, path
//! storage df                   the mounted ones: size, used, free, use%
//! storage mount <id>           checks and mounts it (under /mnt/data/external/<id>)
//! storage unmount <id>         unmounts it
//! storage eject <id>           unmounts it to take it out
//! storage format <id> [ext4|vfat]   makes a new filesystem (default vfat; data: ext4)
//! storage watch                each volume change (until interrupted)
//! ```
//! `SAMGR_SOCKET` overrides samgr's socket path. Exit status 2 for usage,
//! 1 for a refused or failed operation (what the manager said on stderr).
//!
//! The same binary, as `storage_daemon prepare-data <dev> <mnt>`, is the
//! boot step of [`crate::data`].

use std::io::Write;

use accord_safwk::typed::{CallError, Listener};
use accord_safwk::Samgr;
use anyhow::{Context, Result};

use crate::{StorageError, StorageManagerProxy, Volume, VolumeListener, VolumeState, ID};

const USAGE: &str =
    "usage: storage volumes | storage df | storage mount ID | storage unmount ID | storage eject ID | storage format ID [ext4|vfat] | storage watch";

fn why(e: CallError<StorageError>) -> anyhow::Error {
    match e {
        CallError::Sa(e) => anyhow::anyhow!("{e}"),
        CallError::Ipc(e) => anyhow::anyhow!("storage manager (SA {ID}): {e}"),
    }
}

enum Cmd<'a> {
    Volumes,
    Df,
    Mount(&'a str),
    Unmount(&'a str, bool),
    Format(&'a str, &'a str),
    Watch,
}

fn parse<'a>(rest: &[&'a str]) -> Option<Cmd<'a>> {
    Some(match *rest {
        ["volumes"] | ["list"] => Cmd::Volumes,
        ["df"] => Cmd::Df,
        ["mount", id] => Cmd::Mount(id),
        ["unmount" | "umount", id] => Cmd::Unmount(id, false),
        ["eject", id] => Cmd::Unmount(id, true),
        ["format", id] => Cmd::Format(id, if id == crate::DATA_VOLUME { "ext4" } else { "vfat" }),
        ["format", id, fs] => Cmd::Format(id, fs),
        ["watch"] => Cmd::Watch,
        _ => return None,
    })
}

/// One line of `storage df`.
fn df_line(v: &Volume) -> String {
    let used = v.total_bytes.saturating_sub(v.free_bytes);
    let pct = if v.total_bytes == 0 { 0 } else { (used * 100).div_ceil(v.total_bytes) };
    format!("{:<12} {:>10} {:>10} {:>10} {:>4}%  {}", v.id, crate::human(v.total_bytes), crate::human(used), crate::human(v.free_bytes), pct, v.path)
}

fn said(v: &Volume) -> String {
    format!(
        "{} {}{}{}",
        v.id,
        v.state.name(),
        if v.path.is_empty() { String::new() } else { format!(" on {}", v.path) },
        if v.detail.is_empty() { String::new() } else { format!(" ({})", v.detail) }
    )
}

/// Runs `storage` with `args` (`args[0]` is the program name).
pub fn main(args: Vec<String>) -> Result<()> {
    let rest: Vec<&str> = args.iter().skip(1).map(String::as_str).collect();
    let Some(cmd) = parse(&rest) else {
        eprintln!("{USAGE}");
        std::process::exit(2);
    };
    accord_safwk::with_samgr(async |samgr: Samgr| -> Result<()> {
        // A mount checks the filesystem first; a format of a big disk
        // takes a while.
        let sm =
            samgr.get_proxy::<StorageManagerProxy>(ID).await.with_context(|| format!("storage manager (SA {ID})"))?.with_timeout(crate::manager::OP_DEADLINE);
        let mut out = std::io::stdout().lock();
        match cmd {
            Cmd::Volumes => write!(out, "{}", crate::table(&sm.volumes().await.map_err(why)?))?,
            Cmd::Df => {
                writeln!(out, "{:<12} {:>10} {:>10} {:>10} {:>5}  PATH", "ID", "SIZE", "USED", "FREE", "USE%")?;
                for v in sm.volumes().await.map_err(why)?.iter().filter(|v| v.state == VolumeState::Mounted) {
                    writeln!(out, "{}", df_line(v))?;
                }
            }
            Cmd::Mount(id) => writeln!(out, "{}", said(&sm.mount(id).await.map_err(why)?))?,
            Cmd::Unmount(id, eject) => writeln!(out, "{}", said(&sm.unmount(id, eject).await.map_err(why)?))?,
            Cmd::Format(id, fs) => writeln!(out, "{}", said(&sm.format(id, fs).await.map_err(why)?))?,
            Cmd::Watch => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                sm.subscribe(Listener::new(Printer(tx).into_remote())).await.map_err(why)?;
                eprintln!("storage: watching volumes");
                loop {
                    tokio::select! {
                        note = rx.recv() => {
                            let Some((v, lost)) = note else { break };
                            if lost > 0 {
                                writeln!(out, "lost {lost}")?;
                            }
                            writeln!(out, "{}", said(&v))?;
                            out.flush()?;
                        }
                        () = sm.died() => anyhow::bail!("the storage manager (SA {ID}) went away"),
                    }
                }
            }
        }
        out.flush()?;
        Ok(())
    })
}

struct Printer(tokio::sync::mpsc::UnboundedSender<(Volume, u32)>);

impl VolumeListener for Printer {
    fn on_volume_change(&self, volume: Volume, lost: u32) {
        let _ = self.0.send((volume, lost));
    }
}

/// `storage_daemon prepare-data <dev> <mnt>` (the boot step).
pub fn daemon_main(args: Vec<String>) -> Result<()> {
    tracing_subscriber::fmt().with_target(false).without_time().with_ansi(false).with_writer(std::io::stderr).init();
    match args.get(1).map(String::as_str) {
        Some("prepare-data") => crate::data::main(&args[2..]),
        _ => {
            eprintln!("usage: storage_daemon prepare-data DEVICE MOUNT_POINT (the daemon itself runs as sa_main /system/profile/storage_daemon.json)");
            std::process::exit(2);
        }
    }
}
