//! Orderly shutdown and reboot: the `reboot` job, services stopped in
//! reverse start order (SIGTERM, then SIGKILL after a grace time), every
//! other process killed, sync, writable filesystems unmounted, reboot(2).

use std::time::{Duration, Instant};

use nix::mount::{umount2, MntFlags, MsFlags};
use nix::sys::reboot::RebootMode;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tracing::{error, info, warn};

use super::{Init, TimerKind};
use crate::trace::boottime_us;

/// Default time services get to exit after SIGTERM.
const STOP_GRACE: Duration = Duration::from_millis(2000);
/// `const.startup.stop_timeout_ms` is cut to this (a minute).
const MAX_STOP_GRACE_MS: u64 = 60_000;

/// Restart modes passed to the kernel with reboot(2) RESTART2 (OpenHarmony's
/// `reboot,<mode>` values that restart into another image). `begetctl`
/// offers the same list.
pub const REBOOT_MODES: &[&str] = &["updater", "flashd", "charge", "bootloader", "recovery", "loader"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PowerCmd {
    /// Restart, optionally into a named mode (updater, flashd, charge...).
    Reboot(Option<String>),
    PowerOff,
    Halt,
    /// A critical service failed; the name is recorded.
    Panic(String),
    Suspend,
}

impl PowerCmd {
    /// Parses `ohos.startup.powerctrl` values: `reboot`, `reboot,shutdown`,
    /// `reboot,updater`, ... `shutdown` and `halt` are accepted alone too.
    pub fn parse(v: &str) -> Option<PowerCmd> {
        let mut it = v.splitn(2, ',');
        let head = it.next()?.trim();
        let mode = it.next().map(|m| m.trim().to_owned()).filter(|m| !m.is_empty());
        match (head, mode.as_deref()) {
            ("reboot", None) => Some(PowerCmd::Reboot(None)),
            ("reboot", Some("shutdown" | "poweroff")) | ("shutdown" | "poweroff", None) => Some(PowerCmd::PowerOff),
            ("reboot", Some("halt")) | ("halt", None) => Some(PowerCmd::Halt),
            ("reboot", Some("panic")) => Some(PowerCmd::Panic("ohos.startup.powerctrl".into())),
            ("reboot", Some("suspend")) => Some(PowerCmd::Suspend),
            ("reboot", Some(m)) if REBOOT_MODES.contains(&m) => Some(PowerCmd::Reboot(Some(m.to_owned()))),
            _ => None,
        }
    }
}

pub struct ShutdownState {
    cmd: PowerCmd,
    started: Instant,
    deadline_passed: bool,
}

impl Init {
    pub(crate) fn begin_shutdown(&mut self, cmd: PowerCmd, why: &str) {
        if cmd == PowerCmd::Suspend {
            info!("suspend requested by {why}");
            if let Err(e) = std::fs::write("/sys/power/state", "mem") {
                warn!("suspend failed: {e}");
            }
            return;
        }
        if self.shutdown.is_some() {
            info!("{why}: shutdown already under way");
            return;
        }
        info!("shutdown ({cmd:?}) requested by {why}");
        self.boot_steps.clear();
        if let PowerCmd::Panic(service) = &cmd {
            self.record_panic(service);
        }
        // The cfg's own `reboot` job first (OpenHarmony runs it on every
        // power command).
        if self.cfg.jobs.contains_key("reboot") {
            self.run_job("reboot");
        }
        self.save_persist();
        self.shutdown = Some(ShutdownState { cmd, started: Instant::now(), deadline_passed: false });
        let grace = self
            .params
            .get("const.startup.stop_timeout_ms")
            .and_then(|v| v.parse::<u64>().ok())
            .map(|ms| Duration::from_millis(ms.min(MAX_STOP_GRACE_MS)))
            .unwrap_or(STOP_GRACE);
        let order: Vec<usize> = self.start_order.iter().rev().copied().collect();
        for idx in order {
            if self.services[idx].pid.is_some() {
                self.stop_service(idx, grace);
            }
        }
        self.add_timer(grace, TimerKind::ShutdownKill);
        // The loop finishes the shutdown after this turn, so the request
        // that asked for it still gets its reply.
    }

    fn record_panic(&mut self, service: &str) {
        let line = format!("service={service} boottime_us={}\n", boottime_us());
        let path = self.paths.panic_record.clone();
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = std::fs::write(&path, &line) {
            warn!("cannot record the panic in {}: {e}", path.display());
        }
        let _ = self.set_param("persist.startup.panic.service", service);
        error!("panic reboot: {}", line.trim_end());
    }

    pub(super) fn shutdown_deadline(&mut self) {
        if let Some(s) = &mut self.shutdown {
            s.deadline_passed = true;
        }
        self.shutdown_progress();
    }

    /// Called after every loop turn while shutting down: finishes once all
    /// services exited or their time ran out.
    pub(super) fn shutdown_progress(&mut self) {
        let Some(s) = &self.shutdown else { return };
        let running: Vec<String> = self.services.iter().filter(|s| s.pid.is_some()).map(|s| s.cfg.name.clone()).collect();
        if !running.is_empty() && !s.deadline_passed {
            return;
        }
        if !running.is_empty() {
            warn!("services still running at the deadline, killed: {}", running.join(", "));
        }
        let cmd = s.cmd.clone();
        let took = s.started.elapsed();
        self.finish_shutdown(cmd, took);
    }

    fn finish_shutdown(&mut self, cmd: PowerCmd, took: Duration) -> ! {
        info!("services stopped in {} ms", took.as_millis());
        // Everything else (orphans, shells' children) goes too.
        let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
        std::thread::sleep(Duration::from_millis(20));
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        self.reap();
        nix::unistd::sync();
        unmount_all();
        nix::unistd::sync();
        let mode = match &cmd {
            PowerCmd::PowerOff => RebootMode::RB_POWER_OFF,
            PowerCmd::Halt => RebootMode::RB_HALT_SYSTEM,
            _ => RebootMode::RB_AUTOBOOT,
        };
        if let PowerCmd::Reboot(Some(m)) = &cmd {
            // The mode goes to the kernel (and the bootloader) as
            // LINUX_REBOOT_CMD_RESTART2's argument, as OpenHarmony does.
            info!("{cmd:?}: calling reboot(2) RESTART2 {m:?} after {} ms", took.as_millis());
            if let Err(e) = reboot_restart2(m) {
                warn!("reboot(2) RESTART2 {m:?} failed: {e}; restarting without a mode");
            }
        }
        info!("{cmd:?}: calling reboot(2) after {} ms", took.as_millis());
        let err = match nix::sys::reboot::reboot(mode) {
            Err(e) => e,
            Ok(infallible) => match infallible {},
        };
        error!("reboot(2) failed: {err}; halting here");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
}

/// reboot(2) with LINUX_REBOOT_CMD_RESTART2 and `mode` as its argument.
/// Returns only on failure.
fn reboot_restart2(mode: &str) -> std::io::Result<()> {
    let arg = std::ffi::CString::new(mode).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: the reboot syscall with the documented magic numbers and a
    // NUL-terminated string that outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_reboot, libc::LINUX_REBOOT_MAGIC1, libc::LINUX_REBOOT_MAGIC2, libc::LINUX_REBOOT_CMD_RESTART2, arg.as_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Unmounts real (writable) filesystems, innermost first; what cannot be
/// unmounted is remounted read-only.
fn unmount_all() {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else { return };
    let virtual_fs = [
        "proc",
        "sysfs",
        "devtmpfs",
        "devpts",
        "tmpfs",
        "rootfs",
        "ramfs",
        "cgroup",
        "cgroup2",
        "securityfs",
        "debugfs",
        "tracefs",
        "pstore",
        "bpf",
        "configfs",
        "mqueue",
        "hugetlbfs",
        "fusectl",
        "binfmt_misc",
        "efivarfs",
        "autofs",
    ];
    let targets: Vec<(String, String)> = mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let _dev = f.next()?;
            let target = f.next()?.replace("\\040", " ");
            let fstype = f.next()?.to_owned();
            Some((target, fstype))
        })
        .filter(|(t, fs)| t != "/" && !virtual_fs.contains(&fs.as_str()))
        .collect();
    for (target, fstype) in targets.iter().rev() {
        match umount2(target.as_str(), MntFlags::empty()) {
            Ok(()) => info!("unmounted {target} ({fstype})"),
            Err(e) => {
                warn!("umount {target}: {e}; remounting read-only");
                let _ = nix::mount::mount(None::<&str>, target.as_str(), None::<&str>, MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, None::<&str>);
                let _ = umount2(target.as_str(), MntFlags::MNT_DETACH);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::PowerCmd;

    #[test]
    fn powerctrl_values() {
        assert_eq!(PowerCmd::parse("reboot"), Some(PowerCmd::Reboot(None)));
        assert_eq!(PowerCmd::parse("reboot,shutdown"), Some(PowerCmd::PowerOff));
        assert_eq!(PowerCmd::parse("reboot,updater"), Some(PowerCmd::Reboot(Some("updater".into()))));
        assert_eq!(PowerCmd::parse("reboot,suspend"), Some(PowerCmd::Suspend));
        assert_eq!(PowerCmd::parse("reboot,nonsense"), None);
        assert_eq!(PowerCmd::parse("dance"), None);
    }
}
