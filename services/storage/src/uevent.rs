//! Block devices coming and going: the kernel's uevents on a
//! `NETLINK_KOBJECT_UEVENT` socket (there is no udevd), and the devices
//! already there at start, from sysfs.
//!
//! Only messages the kernel sent are taken (the sender's netlink port id,
//! which the kernel fills in, is 0); anything else on the socket is
//! dropped and counted.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Biggest uevent read (the kernel's are at most 2 KiB of variables).
const MAX_MESSAGE: usize = 8192;

/// A block device event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockEvent {
    /// `add`, `remove`, `change`, …
    pub action: String,
    /// The device's name (`vdb`, `sda1`).
    pub name: String,
    /// `disk` or `partition`.
    pub devtype: String,
    pub major: u32,
    pub minor: u32,
}

/// Parses one uevent message (`action@devpath\0KEY=VALUE\0…`); `None` for
/// events not about block devices, or malformed ones.
pub fn parse(msg: &[u8]) -> Option<BlockEvent> {
    let mut parts = msg.split(|&b| b == 0);
    let head = std::str::from_utf8(parts.next()?).ok()?;
    if !head.contains('@') {
        // libudev's re-broadcasts start "libudev"; only the kernel's count.
        return None;
    }
    let vars: HashMap<&str, &str> = parts.filter_map(|p| std::str::from_utf8(p).ok()).filter_map(|kv| kv.split_once('=')).collect();
    if vars.get("SUBSYSTEM") != Some(&"block") {
        return None;
    }
    let name = *vars.get("DEVNAME")?;
    // A device name is one path component (`DEVNAME` may carry a
    // directory for some devices; block devices here have none).
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    Some(BlockEvent {
        action: (*vars.get("ACTION")?).to_owned(),
        name: name.to_owned(),
        devtype: vars.get("DEVTYPE").copied().unwrap_or("disk").to_owned(),
        major: vars.get("MAJOR")?.parse().ok()?,
        minor: vars.get("MINOR")?.parse().ok()?,
    })
}

/// A socket bound to the kernel's uevent multicast group.
pub struct Socket {
    fd: OwnedFd,
    /// Messages dropped: not from the kernel, or not parsed.
    pub dropped: u64,
}

impl Socket {
    /// Opens and binds it (any uid may listen).
    ///
    /// # Errors
    /// The kernel refused the socket or the bind.
    pub fn open() -> std::io::Result<Socket> {
        // SAFETY: plain socket calls on a descriptor this function owns.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_KOBJECT_UEVENT);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            // Room for a burst (a disk with many partitions).
            let size: libc::c_int = 1 << 20;
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            );
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as u16;
            addr.nl_groups = 1;
            if libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as u32) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Socket { fd, dropped: 0 })
        }
    }

    /// Waits for the next block device event from the kernel.
    ///
    /// # Errors
    /// The socket failed (ENOBUFS: events were lost; rescan sysfs).
    pub fn next_event(&mut self) -> std::io::Result<BlockEvent> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            // SAFETY: recvfrom into a buffer and address this frame owns.
            let (n, from) = unsafe {
                let mut addr: libc::sockaddr_nl = std::mem::zeroed();
                let mut len = std::mem::size_of::<libc::sockaddr_nl>() as u32;
                let n = libc::recvfrom(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0, (&mut addr as *mut libc::sockaddr_nl).cast(), &mut len);
                (n, addr.nl_pid)
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if from != 0 {
                self.dropped += 1;
                continue;
            }
            if let Some(ev) = parse(&buf[..n as usize]) {
                return Ok(ev);
            }
        }
    }
}

/// A block device present now, from sysfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// Its sysfs directory (`/sys/class/block/<name>`).
    pub sys: PathBuf,
    pub is_partition: bool,
    /// A disk whose partitions are listed (the disk itself is no volume).
    pub has_partitions: bool,
}

/// Names never volumes: memory and loop devices, optical drives.
pub fn ignored(name: &str) -> bool {
    ["loop", "ram", "zram", "sr", "dm-", "md", "nbd"].iter().any(|p| name.starts_with(p))
}

/// The block device `name` as sysfs shows it under `class_block`
/// (`/sys/class/block`).
pub fn device(class_block: &Path, name: &str) -> Option<BlockDevice> {
    let sys = class_block.join(name);
    let dev = std::fs::read_to_string(sys.join("dev")).ok()?;
    let (major, minor) = dev.trim().split_once(':')?;
    let is_partition = sys.join("partition").exists();
    let has_partitions = !is_partition
        && std::fs::read_dir(&sys)
            .map(|d| d.filter_map(Result::ok).any(|e| e.file_name().to_string_lossy().starts_with(name) && e.path().join("partition").exists()))
            .unwrap_or(false);
    Some(BlockDevice { name: name.to_owned(), major: major.parse().ok()?, minor: minor.parse().ok()?, sys, is_partition, has_partitions })
}

/// Every block device present under `class_block`, sorted by name.
pub fn scan(class_block: &Path) -> Vec<BlockDevice> {
    let mut names: Vec<String> = std::fs::read_dir(class_block).map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect()).unwrap_or_default();
    names.sort();
    names.iter().filter(|n| !ignored(n)).filter_map(|n| device(class_block, n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(parts: &[&str]) -> Vec<u8> {
        parts.join("\0").into_bytes()
    }

    #[test]
    fn parses_block_events_and_drops_the_rest() {
        let add = msg(&[
            "add@/devices/pci0000:00/usb2/2-2/host1/target1:0:0/1:0:0:0/block/sdb",
            "ACTION=add",
            "SUBSYSTEM=block",
            "MAJOR=8",
            "MINOR=16",
            "DEVNAME=sdb",
            "DEVTYPE=disk",
            "SEQNUM=1",
        ]);
        assert_eq!(parse(&add), Some(BlockEvent { action: "add".into(), name: "sdb".into(), devtype: "disk".into(), major: 8, minor: 16 }));
        let part = msg(&["add@/x/sdb/sdb1", "ACTION=add", "SUBSYSTEM=block", "MAJOR=8", "MINOR=17", "DEVNAME=/dev/sdb1", "DEVTYPE=partition"]);
        assert_eq!(parse(&part).unwrap().name, "sdb1");
        // Not block, libudev's, malformed, or a name that is a path.
        assert_eq!(parse(&msg(&["add@/x", "ACTION=add", "SUBSYSTEM=net", "DEVNAME=eth0", "MAJOR=1", "MINOR=1"])), None);
        assert_eq!(parse(&msg(&["libudev", "ACTION=add", "SUBSYSTEM=block", "DEVNAME=sdb", "MAJOR=8", "MINOR=16"])), None);
        assert_eq!(parse(&msg(&["add@/x", "ACTION=add", "SUBSYSTEM=block", "DEVNAME=sdb", "MAJOR=eight", "MINOR=16"])), None);
        for bad in ["../etc", "a/b", "", ".hidden"] {
            let m = msg(&["add@/x", "ACTION=add", "SUBSYSTEM=block", &format!("DEVNAME={bad}"), "MAJOR=8", "MINOR=16"]);
            assert_eq!(parse(&m), None, "{bad}");
        }
        assert_eq!(parse(b""), None);
        assert_eq!(parse(&[0xff, 0xfe, b'@', 0]), None);
    }

    #[test]
    fn scans_a_sysfs_tree() {
        let dir = tempfile::tempdir().unwrap();
        let cb = dir.path();
        let dev = |path: &str, num: &str, partition: bool| {
            let d = cb.join(path);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("dev"), format!("{num}\n")).unwrap();
            if partition {
                std::fs::write(d.join("partition"), "1\n").unwrap();
            }
        };
        dev("vda", "253:0", false);
        dev("sda", "8:0", false);
        dev("sda/sda1", "8:1", true);
        dev("sda1", "8:1", true);
        dev("loop0", "7:0", false);
        let found = scan(cb);
        let names: Vec<(&str, bool, bool)> = found.iter().map(|d| (d.name.as_str(), d.is_partition, d.has_partitions)).collect();
        assert_eq!(names, [("sda", false, true), ("sda1", true, false), ("vda", false, false)]);
        assert_eq!((found[1].major, found[1].minor), (8, 1));
    }
}
