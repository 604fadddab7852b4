//! Early boot, before any cfg is read: the kernel's pseudo filesystems, a
//! console on stdio, and the basic process environment.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{umask, Mode};
use tracing::warn;

struct EarlyMount {
    fstype: &'static str,
    target: &'static str,
    flags: MsFlags,
    data: Option<&'static str>,
}

fn early_mounts() -> [EarlyMount; 9] {
    let nosuid_nodev_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    [
        EarlyMount { fstype: "proc", target: "/proc", flags: nosuid_nodev_noexec, data: None },
        EarlyMount { fstype: "sysfs", target: "/sys", flags: nosuid_nodev_noexec, data: None },
        EarlyMount { fstype: "devtmpfs", target: "/dev", flags: MsFlags::MS_NOSUID, data: Some("mode=0755") },
        EarlyMount { fstype: "devpts", target: "/dev/pts", flags: MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC, data: Some("gid=5,mode=0620,ptmxmode=0666") },
        // Sockets live on their own small tmpfs, not on devtmpfs, which is
        // one instance shared by every mount of it.
        EarlyMount {
            fstype: "tmpfs",
            target: "/dev/unix",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: Some("mode=0755,size=1m"),
        },
        // The shared parameter table (read-only for everyone but init).
        EarlyMount {
            fstype: "tmpfs",
            target: "/dev/__parameters__",
            flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            data: Some("mode=0755,size=2m"),
        },
        EarlyMount { fstype: "tmpfs", target: "/dev/shm", flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data: Some("mode=1777") },
        EarlyMount { fstype: "tmpfs", target: "/run", flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data: Some("mode=0755") },
        EarlyMount { fstype: "tmpfs", target: "/tmp", flags: MsFlags::MS_NOSUID | MsFlags::MS_NODEV, data: Some("mode=1777") },
    ]
}

/// Problems found during early boot, reported once logging is up.
#[derive(Debug, Default)]
pub struct EarlyReport {
    pub problems: Vec<String>,
}

/// Mounts the pseudo filesystems and makes sure fds 0, 1 and 2 are open.
/// Runs before logging exists, so it collects problems instead of logging.
pub fn setup() -> EarlyReport {
    let mut report = EarlyReport::default();
    umask(Mode::from_bits_truncate(0o022));
    std::env::set_var("PATH", "/bin:/sbin:/usr/bin:/usr/sbin:/system/bin:/vendor/bin");
    std::env::set_var("HOME", "/");
    for m in early_mounts() {
        let target = Path::new(m.target);
        if let Err(e) = std::fs::create_dir_all(target) {
            report.problems.push(format!("cannot create {}: {e}", m.target));
            continue;
        }
        if let Err(e) = mount(Some(m.fstype), target, Some(m.fstype), m.flags, m.data) {
            report.problems.push(format!("mount {} on {} failed: {e}", m.fstype, m.target));
        }
    }
    for d in ["/dev/unix", "/dev/unix/socket"] {
        let _ = std::fs::create_dir_all(d);
    }
    ensure_stdio(&mut report);
    report
}

fn fd_is_open(fd: i32) -> bool {
    nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
}

/// The kernel opens /dev/console for init only when the initramfs has the
/// node; ours gets it from devtmpfs, so open it now if stdio is missing.
fn ensure_stdio(report: &mut EarlyReport) {
    if (0..3).all(fd_is_open) {
        return;
    }
    match OpenOptions::new().read(true).write(true).open("/dev/console") {
        Ok(console) => {
            for fd in 0..3 {
                if !fd_is_open(fd) {
                    // SAFETY-free: dup2 onto a closed descriptor number.
                    if let Err(e) = nix::unistd::dup2(console.as_raw_fd(), fd) {
                        report.problems.push(format!("dup2 console to fd {fd}: {e}"));
                    }
                }
            }
        }
        Err(e) => report.problems.push(format!("cannot open /dev/console: {e}")),
    }
}

/// Logs what early boot could not do.
pub fn log_report(report: &EarlyReport) {
    for p in &report.problems {
        warn!("early boot: {p}");
    }
}
