//! `ueventd`: who owns the device nodes and sysfs attributes, and with what
//! mode, from OpenHarmony's `ueventd.config` files; at start for what is
//! already there (the cold boot) and then as the kernel's uevents announce
//! devices. The kernel's devtmpfs makes every node root's, mode 0600: without
//! this, a service running under its own uid (the power manager reading
//! `/dev/input/event*`, the compositor opening `/dev/dri/card0`) cannot open
//! anything.
//!
//! It is the init binary run under the name `ueventd` (a link), as a service
//! of init, as root. There is no udevd: nothing else on the system listens
//! for device events to set permissions.
//!
//! # The configuration (OpenHarmony's format)
//! `/etc/ueventd.config`, then `/vendor/etc/ueventd.config`; lines are read in
//! that order and, for a path that several lines match, the last one counts.
//! `#` starts a comment.
//! ```text
//! [device]
//! # <device node> <mode> <uid> <gid> [<parameter>]
//! /dev/input/event* 0660 root input
//! /dev/rtc0 0660 system system startup.dev.rtc0
//! [sysfs]
//! # <sysfs device path> <attribute> <mode> <uid> <gid>
//! /sys/devices/platform/*/power wakeup 0664 root powerctrl
//! [firmware]
//! /lib/firmware
//! ```
//! - Paths may hold `*` (any run of characters within one path component)
//!   and `?` (one character).
//! - Modes are octal, at most 0777: a device node has no use for set-id bits.
//! - Owners are names from `/etc/passwd` and `/etc/group`, or numbers.
//! - The optional parameter of a `[device]` line is set to `added` when such a
//!   node is there (at the cold boot or when the kernel adds it) and to
//!   `removed` when the kernel removes it, so a cfg's job can wait for a
//!   device with `param:<name>=added`.
//! - No symbolic link is followed anywhere in a path: a `[sysfs]` line names
//!   a device's real directory under `/sys/devices`, not a `/sys/class`
//!   link to it.
//! - `[firmware]` lines are read and logged as not carried out: the kernel
//!   loads firmware itself from `/lib/firmware`.
//! - A line that is wrong is skipped with a warning naming the file and the
//!   line; the other lines still apply.
//!
//! # What it trusts
//! Only messages the kernel sent (netlink port id 0); only device names that
//! stay under `/dev` (no `..`, not absolute); only character and block
//! devices for `[device]` lines, only regular files for `[sysfs]` lines,
//! never following a symbolic link. When the socket overflows (ENOBUFS: a
//! burst of events lost), every rule is applied again, as at the cold boot.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use tracing::{debug, info, warn};

use accord_param::path_matches;

use crate::users::Users;

/// The configuration files, read in this order.
pub const CONFIG_FILES: &[&str] = &["/etc/ueventd.config", "/vendor/etc/ueventd.config"];

/// The boot event ueventd sets once the cold boot is applied: services
/// that need devices can wait for it, and the boot does.
pub const READY_EVENT: &str = "bootevent.ueventd.ready";

/// At most this many paths come from expanding one pattern at the cold boot
/// (a pattern like `/sys/devices/*/*/*` could otherwise walk all of sysfs).
pub const MAX_EXPANDED: usize = 4096;

/// Biggest uevent read; the kernel's are at most 2 KiB of variables.
const MAX_MESSAGE: usize = 8192;

/// A `[device]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRule {
    /// `/dev/...`, possibly with `*` and `?`.
    pub pattern: String,
    /// Permission bits, at most 0o777.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// Set to `added` / `removed` as such a node comes and goes.
    pub parameter: Option<String>,
    /// `file:line`, for messages.
    pub origin: String,
}

/// A `[sysfs]` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysfsRule {
    /// `/sys/...`: a device's directory, possibly with `*` and `?`.
    pub pattern: String,
    /// The attribute file in it (one component).
    pub attr: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub origin: String,
}

/// Every rule, in the order read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    pub devices: Vec<DeviceRule>,
    pub sysfs: Vec<SysfsRule>,
}

/// A line that was skipped or not carried out, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// `file:line`.
    pub origin: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.origin, self.what)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Device,
    Sysfs,
    Firmware,
}

fn parse_mode(s: &str) -> Result<u32, String> {
    let m = u32::from_str_radix(s, 8).map_err(|_| format!("mode {s:?} is not an octal number"))?;
    if m > 0o777 {
        return Err(format!("mode {s} is more than 0777 (set-id and sticky bits have no use here)"));
    }
    Ok(m)
}

fn owner(users: &Users, s: &str, group: bool) -> Result<u32, String> {
    // -1 (4294967295) would mean "leave the owner as it is" to chown.
    let id = if group { users.gid_str(s) } else { users.uid_str(s) }.filter(|&id| id != u32::MAX);
    id.ok_or_else(|| format!("no {} {s:?} (not a number, not in /etc/{})", if group { "group" } else { "user" }, if group { "group" } else { "passwd" }))
}

/// Whether `p` is an absolute path under `root` (`/dev` or `/sys`) with no
/// `.` or `..` components.
fn clean_under(p: &str, root: &str) -> bool {
    let path = Path::new(p);
    path.starts_with(root) && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))) && p.len() > root.len() + 1
}

/// Reads one configuration file's text into `rules`; `file` names it in
/// the problems returned (one per skipped or not-carried-out line).
pub fn parse_into(rules: &mut Rules, text: &str, file: &str, users: &Users) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut section = Section::None;
    for (n, raw) in text.lines().enumerate() {
        let origin = format!("{file}:{}", n + 1);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut problem = |what: String| problems.push(Problem { origin: origin.clone(), what });
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = match name.trim() {
                "device" => Section::Device,
                "sysfs" => Section::Sysfs,
                "firmware" => Section::Firmware,
                other => {
                    problem(format!("unknown section [{other}] (known: [device], [sysfs], [firmware]); its lines are skipped"));
                    Section::None
                }
            };
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match section {
            Section::None => problem(format!("{line:?} is outside a known section; skipped")),
            Section::Firmware => problem(format!("firmware directory {line:?} not carried out: the kernel loads firmware itself from /lib/firmware")),
            Section::Device => {
                let parsed = (|| {
                    if f.len() < 4 || f.len() > 5 {
                        return Err(format!("want <device node> <mode> <uid> <gid> [<parameter>], got {} field(s)", f.len()));
                    }
                    if !clean_under(f[0], "/dev") {
                        return Err(format!("{:?} is not a path under /dev (without . or ..)", f[0]));
                    }
                    Ok(DeviceRule {
                        pattern: f[0].to_owned(),
                        mode: parse_mode(f[1])?,
                        uid: owner(users, f[2], false)?,
                        gid: owner(users, f[3], true)?,
                        parameter: f.get(4).map(|p| (*p).to_owned()),
                        origin: origin.clone(),
                    })
                })();
                match parsed {
                    Ok(r) => rules.devices.push(r),
                    Err(e) => problem(format!("{e}; line skipped")),
                }
            }
            Section::Sysfs => {
                let parsed = (|| {
                    if f.len() != 5 {
                        return Err(format!("want <sysfs path> <attribute> <mode> <uid> <gid>, got {} field(s)", f.len()));
                    }
                    if !clean_under(f[0], "/sys") {
                        return Err(format!("{:?} is not a path under /sys (without . or ..)", f[0]));
                    }
                    if f[1].contains('/') || f[1] == "." || f[1] == ".." {
                        return Err(format!("attribute {:?} must be one file name", f[1]));
                    }
                    Ok(SysfsRule {
                        pattern: f[0].to_owned(),
                        attr: f[1].to_owned(),
                        mode: parse_mode(f[2])?,
                        uid: owner(users, f[3], false)?,
                        gid: owner(users, f[4], true)?,
                        origin: origin.clone(),
                    })
                })();
                match parsed {
                    Ok(r) => rules.sysfs.push(r),
                    Err(e) => problem(format!("{e}; line skipped")),
                }
            }
        }
    }
    problems
}

/// The existing paths a pattern names, read from the file system with
/// `/dev` or `/sys` replaced by `root`; at most [`MAX_EXPANDED`], in order.
pub fn expand(pattern: &str, prefix: &str, root: &Path) -> Vec<PathBuf> {
    let rest = pattern.strip_prefix(prefix).unwrap_or(pattern).trim_start_matches('/');
    let mut found = vec![root.to_path_buf()];
    for comp in rest.split('/').filter(|c| !c.is_empty()) {
        let mut next = Vec::new();
        for dir in &found {
            if comp.contains(['*', '?']) {
                let Ok(entries) = std::fs::read_dir(dir) else { continue };
                let mut names: Vec<_> = entries.filter_map(Result::ok).map(|e| e.file_name()).collect();
                names.sort();
                for n in names {
                    if let Some(s) = n.to_str() {
                        if path_matches(comp, s) && next.len() < MAX_EXPANDED {
                            next.push(dir.join(s));
                        }
                    }
                }
            } else {
                let p = dir.join(comp);
                if std::fs::symlink_metadata(&p).is_ok() {
                    next.push(p);
                }
            }
        }
        found = next;
        if found.is_empty() {
            break;
        }
    }
    found
}

/// Where device nodes and sysfs are: `/dev` and `/sys`, or a test's trees.
#[derive(Debug, Clone)]
pub struct Roots {
    pub dev: PathBuf,
    pub sys: PathBuf,
}

impl Default for Roots {
    fn default() -> Roots {
        Roots { dev: "/dev".into(), sys: "/sys".into() }
    }
}

impl Rules {
    /// Reads the configuration files that exist; a missing file is no
    /// problem, an unreadable one is.
    pub fn load(files: &[&str], users: &Users) -> (Rules, Vec<Problem>) {
        let mut rules = Rules::default();
        let mut problems = Vec::new();
        for f in files {
            match std::fs::read(f) {
                Ok(bytes) => {
                    // A line that is not UTF-8 is skipped, not the file.
                    let mut text = String::with_capacity(bytes.len());
                    for (n, line) in bytes.split(|&b| b == b'\n').enumerate() {
                        match std::str::from_utf8(line) {
                            Ok(line) => text.push_str(line),
                            Err(_) => problems.push(Problem { origin: format!("{f}:{}", n + 1), what: "not UTF-8; line skipped".into() }),
                        }
                        text.push('\n');
                    }
                    problems.extend(parse_into(&mut rules, &text, f, users));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => problems.push(Problem { origin: (*f).to_owned(), what: format!("cannot read it: {e}") }),
            }
        }
        (rules, problems)
    }

    /// The rule for a device node (`/dev/...`): the last that matches.
    pub fn device(&self, node: &str) -> Option<&DeviceRule> {
        self.devices.iter().rev().find(|r| path_matches(&r.pattern, node))
    }

    /// The sysfs rules for a device directory (`/sys/...`), one per
    /// attribute: the last that matches.
    pub fn sysfs_for(&self, dir: &str) -> Vec<&SysfsRule> {
        let mut by_attr: BTreeMap<&str, &SysfsRule> = BTreeMap::new();
        for r in self.sysfs.iter().filter(|r| path_matches(&r.pattern, dir)) {
            by_attr.insert(&r.attr, r);
        }
        by_attr.into_values().collect()
    }
}

/// What applying a rule to a path found.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Owner and mode set.
    Done,
    /// The path is not what the rule is for (not a device node, not a
    /// regular file, a symbolic link): left alone.
    WrongKind,
}

/// Opens `path` as `O_PATH` without following a symbolic link anywhere in
/// it (`RESOLVE_NO_SYMLINKS`: not the last component, not a directory on
/// the way), so the checks and changes below are all on the one inode.
fn open_no_symlinks(path: &Path) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: open_how is plain integers; all zero is valid.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_NO_SYMLINKS;
    // SAFETY: openat2 with a NUL-terminated path and an open_how this
    // function owns; the descriptor returned is owned by the OwnedFd.
    let fd = unsafe { libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, c.as_ptr(), &how as *const libc::open_how, std::mem::size_of::<libc::open_how>()) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor, owned by nothing else.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

fn set_owner_mode(path: &Path, uid: u32, gid: u32, mode: u32, want_device: bool) -> std::io::Result<Applied> {
    use std::os::fd::AsRawFd;
    let fd = match open_no_symlinks(path) {
        Ok(fd) => fd,
        // A symbolic link on the way (ELOOP) is not what a rule is for.
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(Applied::WrongKind),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(fd.as_raw_fd())?;
    let kind = st.st_mode & libc::S_IFMT;
    let right = if want_device { kind == libc::S_IFCHR || kind == libc::S_IFBLK } else { kind == libc::S_IFREG };
    if !right {
        return Ok(Applied::WrongKind);
    }
    nix::unistd::fchownat(
        Some(fd.as_raw_fd()),
        "",
        Some(nix::unistd::Uid::from_raw(uid)),
        Some(nix::unistd::Gid::from_raw(gid)),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )?;
    // An O_PATH descriptor has no fchmod; its /proc link names the same
    // inode, whatever is at `path` by now.
    std::fs::set_permissions(format!("/proc/self/fd/{}", fd.as_raw_fd()), std::fs::Permissions::from_mode(mode))?;
    Ok(Applied::Done)
}

/// [`set_owner_mode`] with what happened logged under `shown` (the path as
/// the device sees it) and `origin` (the rule's file:line); whether it was
/// done. A path gone before it is reached is not worth a word.
fn set_logged(path: &Path, shown: &str, (uid, gid, mode): (u32, u32, u32), origin: &str, want_device: bool) -> bool {
    match set_owner_mode(path, uid, gid, mode, want_device) {
        Ok(Applied::Done) => {
            debug!("{shown}: {uid}:{gid} {mode:04o} ({origin})");
            true
        }
        Ok(Applied::WrongKind) => {
            warn!("{shown}: not a {}, left alone ({origin})", if want_device { "device node" } else { "regular file" });
            false
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => {
            warn!("{shown}: cannot set {uid}:{gid} {mode:04o} ({origin}): {e}");
            false
        }
    }
}

/// Sets a parameter (`name`, `value`).
pub type SetParam = Box<dyn FnMut(&str, &str) + Send>;

/// The work ueventd does, apart from its socket: applying rules.
pub struct Ueventd {
    pub rules: Rules,
    pub roots: Roots,
    /// Sets a rule's parameter (`name`, `value`); the real one talks to
    /// init's parameter service.
    pub set_param: SetParam,
}

impl Ueventd {
    fn dev_path(&self, node: &str) -> PathBuf {
        self.roots.dev.join(node.strip_prefix("/dev/").unwrap_or(node))
    }

    fn apply_device(&mut self, node: &str, rule: &DeviceRule) -> bool {
        let done = set_logged(&self.dev_path(node), node, (rule.uid, rule.gid, rule.mode), &rule.origin, true);
        if done {
            if let Some(p) = &rule.parameter {
                (self.set_param)(p, "added");
            }
        }
        done
    }

    fn apply_sysfs(&self, dir: &Path, shown: &str, rule: &SysfsRule) -> bool {
        set_logged(&dir.join(&rule.attr), &format!("{shown}/{}", rule.attr), (rule.uid, rule.gid, rule.mode), &rule.origin, false)
    }

    /// Applies every rule to what is there now; returns how many paths
    /// were set.
    pub fn coldboot(&mut self) -> usize {
        let mut done = 0;
        // Each path once, however many patterns name it.
        let mut nodes = BTreeSet::new();
        for r in &self.rules.devices {
            for p in expand(&r.pattern, "/dev", &self.roots.dev) {
                if let Ok(rel) = p.strip_prefix(&self.roots.dev) {
                    nodes.insert(format!("/dev/{}", rel.display()));
                }
            }
        }
        for node in nodes {
            if let Some(rule) = self.rules.device(&node).cloned() {
                done += usize::from(self.apply_device(&node, &rule));
            }
        }
        let mut dirs = BTreeMap::new();
        for r in &self.rules.sysfs {
            for p in expand(&r.pattern, "/sys", &self.roots.sys) {
                if let Ok(rel) = p.strip_prefix(&self.roots.sys) {
                    dirs.insert(format!("/sys/{}", rel.display()), p.clone());
                }
            }
        }
        for (shown, dir) in dirs {
            for rule in self.rules.sysfs_for(&shown) {
                done += usize::from(self.apply_sysfs(&dir, &shown, rule));
            }
        }
        done
    }

    /// Handles one uevent message (`action@devpath\0KEY=VALUE\0…`);
    /// returns how many paths were set. Malformed or hostile messages
    /// (a device name with `..`) do nothing.
    pub fn handle(&mut self, msg: &[u8]) -> usize {
        let Some(ev) = Event::parse(msg) else { return 0 };
        let mut done = 0;
        match ev.action.as_str() {
            "add" | "change" | "bind" | "online" => {
                if let Some(name) = &ev.devname {
                    let node = format!("/dev/{name}");
                    if let Some(rule) = self.rules.device(&node).cloned() {
                        done += usize::from(self.apply_device(&node, &rule));
                    }
                }
                if ev.action == "add" || ev.action == "change" {
                    let shown = format!("/sys{}", ev.devpath);
                    let dir = self.roots.sys.join(ev.devpath.trim_start_matches('/'));
                    for rule in self.rules.sysfs_for(&shown) {
                        done += usize::from(self.apply_sysfs(&dir, &shown, rule));
                    }
                }
            }
            "remove" => {
                if let Some(name) = &ev.devname {
                    let node = format!("/dev/{name}");
                    if let Some(p) = self.rules.device(&node).and_then(|r| r.parameter.clone()) {
                        (self.set_param)(&p, "removed");
                    }
                }
            }
            _ => {}
        }
        done
    }
}

/// The fields of a uevent that ueventd uses.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    pub action: String,
    /// Under /sys, starting with `/`, without `.` or `..`.
    pub devpath: String,
    /// Relative to /dev, without `.` or `..`.
    pub devname: Option<String>,
}

impl Event {
    /// `None` for a message that is not a kernel uevent, or names a path
    /// that would leave /dev or /sys.
    pub fn parse(msg: &[u8]) -> Option<Event> {
        let mut parts = msg.split(|&b| b == 0);
        let head = std::str::from_utf8(parts.next()?).ok()?;
        // libudev's re-broadcasts start "libudev"; only the kernel's count.
        head.split_once('@')?;
        let mut action = None;
        let mut devpath = None;
        let mut devname = None;
        for kv in parts.filter_map(|p| std::str::from_utf8(p).ok()) {
            match kv.split_once('=') {
                Some(("ACTION", v)) => action = Some(v.to_owned()),
                Some(("DEVPATH", v)) => devpath = Some(v.to_owned()),
                Some(("DEVNAME", v)) => devname = Some(v.strip_prefix("/dev/").unwrap_or(v).to_owned()),
                _ => {}
            }
        }
        let devpath = devpath?;
        if !devpath.starts_with('/') || !Path::new(&devpath).components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))) {
            return None;
        }
        let devname = match devname {
            Some(n) if !n.is_empty() && Path::new(&n).components().all(|c| matches!(c, Component::Normal(_))) => Some(n),
            Some(_) => return None,
            None => None,
        };
        Some(Event { action: action?, devpath, devname })
    }
}

/// A socket bound to the kernel's uevent group.
struct Socket(std::os::fd::OwnedFd);

impl Socket {
    fn open() -> std::io::Result<Socket> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain socket calls on a descriptor this function owns.
        unsafe {
            let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, libc::NETLINK_KOBJECT_UEVENT);
            if fd < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let fd = std::os::fd::OwnedFd::from_raw_fd(fd);
            // Room for a burst (a hub with many devices); FORCE as root.
            let size: libc::c_int = 4 << 20;
            let p = (&size as *const libc::c_int).cast();
            let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            use std::os::fd::AsRawFd;
            if libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, p, len) != 0 {
                libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_RCVBUF, p, len);
            }
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
            addr.nl_groups = 1;
            if libc::bind(fd.as_raw_fd(), (&addr as *const libc::sockaddr_nl).cast(), std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(Socket(fd))
        }
    }

    /// The next message from the kernel: `Ok(None)` for one dropped (not
    /// the kernel's, or truncated).
    fn recv(&self, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
        use std::os::fd::AsRawFd;
        // SAFETY: recvfrom into a buffer and an address this function owns.
        unsafe {
            let mut addr: libc::sockaddr_nl = std::mem::zeroed();
            let mut alen = std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
            let n = libc::recvfrom(
                self.0.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_TRUNC,
                (&mut addr as *mut libc::sockaddr_nl).cast(),
                &mut alen,
            );
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let n = n as usize;
            if addr.nl_pid != 0 || n > buf.len() {
                return Ok(None);
            }
            Ok(Some(n))
        }
    }
}

/// `ueventd`'s main: never returns unless the socket cannot be made.
pub fn main() -> i32 {
    accord_hilog::init_tracing("ueventd", 0xD002C00);
    let users = Users::load();
    let (rules, problems) = Rules::load(CONFIG_FILES, &users);
    for p in &problems {
        warn!("{p}");
    }
    let mut d = Ueventd {
        rules,
        roots: Roots::default(),
        set_param: Box::new(|name, value| {
            if let Err(e) = accord_param::client::set(name, value) {
                warn!("cannot set {name}={value}: {e}");
            }
        }),
    };
    // The socket first: a device added during the cold boot is not missed.
    let sock = match Socket::open() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for uevents: {e}");
            eprintln!("ueventd: cannot listen for uevents: {e}");
            return 1;
        }
    };
    let n = d.coldboot();
    info!("cold boot: {n} path(s) set from {} device and {} sysfs rule(s)", d.rules.devices.len(), d.rules.sysfs.len());
    if let Err(e) = accord_param::client::set(READY_EVENT, "true") {
        warn!("cannot set {READY_EVENT}: {e}");
    }
    let mut buf = vec![0u8; MAX_MESSAGE];
    let mut dropped: u64 = 0;
    loop {
        match sock.recv(&mut buf) {
            Ok(Some(n)) => {
                d.handle(&buf[..n]);
            }
            Ok(None) => {
                dropped += 1;
                debug!("dropped a message not from the kernel or too long ({dropped} so far)");
            }
            Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                let n = d.coldboot();
                warn!("uevents were lost (the socket overflowed): every rule applied again, {n} path(s) set");
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                warn!("reading uevents: {e}");
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users() -> Users {
        Users::parse("root:x:0:0::/:/bin/sh\nsystem:x:1000:1000::/:/bin/sh\n", "root:x:0:\ninput:x:1004:\nsystem:x:1000:\n")
    }

    #[test]
    fn lines_become_rules_and_wrong_lines_name_their_place() {
        let text = "# top\n[device]\n/dev/input/event* 0660 root input\n/dev/rtc0 660 system 1000 startup.dev.rtc0 # trailing\n\
                    /dev/bad 0668 root root\n/dev/x 04755 root root\n/dev/y 0600 nobody root\n/dev/z 0600 root nogroup\n/etc/passwd 0666 root root\n\
                    /dev/../etc/shadow 0666 root root\n/dev/w 0600 root\n[sysfs]\n/sys/devices/platform/*/power wakeup 0664 root input\n\
                    /sys/devices/x ../../etc 0664 root input\n[firmware]\n/lib/firmware\n[bogus]\nwhatever\n";
        let mut r = Rules::default();
        let p = parse_into(&mut r, text, "/etc/ueventd.config", &users());
        assert_eq!(
            r.devices,
            vec![
                DeviceRule { pattern: "/dev/input/event*".into(), mode: 0o660, uid: 0, gid: 1004, parameter: None, origin: "/etc/ueventd.config:3".into() },
                DeviceRule {
                    pattern: "/dev/rtc0".into(),
                    mode: 0o660,
                    uid: 1000,
                    gid: 1000,
                    parameter: Some("startup.dev.rtc0".into()),
                    origin: "/etc/ueventd.config:4".into()
                },
            ]
        );
        assert_eq!(r.sysfs.len(), 1);
        assert_eq!((r.sysfs[0].attr.as_str(), r.sysfs[0].gid), ("wakeup", 1004));
        let lines: Vec<&str> = p.iter().map(|p| p.origin.rsplit(':').next().unwrap_or("")).collect();
        assert_eq!(lines, ["5", "6", "7", "8", "9", "10", "11", "14", "16", "17", "18"], "{p:#?}");
        let text: Vec<String> = p.iter().map(ToString::to_string).collect();
        assert!(text[0].contains("/etc/ueventd.config:5") && text[0].contains("0668"), "{text:?}");
        assert!(text[2].contains("no user \"nobody\""), "{text:?}");
        assert!(text[5].contains("not a path under /dev"), "{text:?}");
        assert!(text[8].contains("not carried out"), "{text:?}");
        assert!(text[9].contains("unknown section [bogus]"), "{text:?}");
    }

    #[test]
    fn globs_stay_within_a_component() {
        assert!(path_matches("/dev/input/event*", "/dev/input/event0"));
        assert!(path_matches("/dev/input/event*", "/dev/input/event"));
        assert!(!path_matches("/dev/input/event*", "/dev/input/event0/x"));
        assert!(!path_matches("/dev/*", "/dev/input/event0"));
        assert!(path_matches("/dev/tty?", "/dev/tty1"));
        assert!(!path_matches("/dev/tty?", "/dev/tty12"));
        assert!(path_matches("/dev/*/card*", "/dev/dri/card0"));
        assert!(path_matches("/dev/**", "/dev/abc"));
        assert!(!path_matches("/dev/rtc", "/dev/rtc0"));
    }

    #[test]
    fn the_last_matching_line_counts() {
        let mut r = Rules::default();
        let u = users();
        parse_into(&mut r, "[device]\n/dev/input/* 0600 root root\n", "/etc/ueventd.config", &u);
        parse_into(&mut r, "[device]\n/dev/input/event* 0660 root input\n", "/vendor/etc/ueventd.config", &u);
        assert_eq!(r.device("/dev/input/event3").map(|r| r.gid), Some(1004));
        assert_eq!(r.device("/dev/input/mice").map(|r| r.gid), Some(0));
        assert!(r.device("/dev/null").is_none());
    }

    #[test]
    fn hostile_events_name_nothing() {
        let ok = b"add@/devices/virtual/input/input3/event3\0ACTION=add\0DEVPATH=/devices/virtual/input/input3/event3\0SUBSYSTEM=input\0DEVNAME=input/event3\0";
        assert_eq!(
            Event::parse(ok),
            Some(Event { action: "add".into(), devpath: "/devices/virtual/input/input3/event3".into(), devname: Some("input/event3".into()) })
        );
        for bad in [
            &b"libudev\0ACTION=add\0DEVPATH=/devices/x\0"[..],
            b"add@/x\0ACTION=add\0DEVPATH=/devices/../../etc\0",
            b"add@/x\0ACTION=add\0DEVPATH=/devices/x\0DEVNAME=../etc/shadow\0",
            b"add@/x\0ACTION=add\0DEVPATH=/devices/x\0DEVNAME=/etc/shadow\0",
            b"add@/x\0ACTION=add\0DEVNAME=null\0",
            b"add@/x\0DEVPATH=/devices/x\0",
            b"\xff\xfe@\0",
            b"",
        ] {
            assert_eq!(Event::parse(bad), None, "{bad:?}");
        }
    }

    /// On a fake /dev and /sys (real device nodes, made with mknod as
    /// root): the cold boot sets what is there, an event what comes, a
    /// symbolic link or a regular file in /dev is left alone, and the
    /// parameter follows the node.
    #[test]
    fn rules_apply_at_cold_boot_and_on_events() {
        use nix::sys::stat::{mknod, Mode, SFlag};
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mknod needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let dev = t.path().join("dev");
        let sys = t.path().join("sys");
        std::fs::create_dir_all(dev.join("input")).unwrap();
        std::fs::create_dir_all(sys.join("devices/platform/i8042")).unwrap();
        std::fs::write(sys.join("devices/platform/i8042/wakeup"), "disabled\n").unwrap();
        let node = |p: &Path| mknod(p, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), nix::sys::stat::makedev(1, 3)).unwrap();
        node(&dev.join("input/event0"));
        std::os::unix::fs::symlink("/etc/passwd", dev.join("input/event9")).unwrap();
        std::fs::write(dev.join("input/event8"), "").unwrap();
        let mut rules = Rules::default();
        let p = parse_into(
            &mut rules,
            "[device]\n/dev/input/event* 0660 root input ueventd.test.event\n[sysfs]\n/sys/devices/platform/* wakeup 0664 system input\n",
            "test",
            &users(),
        );
        assert!(p.is_empty(), "{p:?}");
        let params = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = params.clone();
        let mut d = Ueventd {
            rules,
            roots: Roots { dev: dev.clone(), sys: sys.clone() },
            set_param: Box::new(move |n, v| seen.lock().unwrap().push(format!("{n}={v}"))),
        };
        let owner_mode = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        let passwd = owner_mode(Path::new("/etc/passwd"));
        let file = owner_mode(&dev.join("input/event8"));
        assert_eq!(d.coldboot(), 2);
        assert_eq!(owner_mode(&dev.join("input/event0")), (0, 1004, 0o660));
        assert_eq!(owner_mode(&sys.join("devices/platform/i8042/wakeup")), (1000, 1004, 0o664));
        assert_eq!(owner_mode(&dev.join("input/event8")), file, "a regular file in /dev is left alone");
        assert_eq!(owner_mode(Path::new("/etc/passwd")), passwd, "a symbolic link is not followed");
        // The kernel adds a node, and a device with the attribute.
        node(&dev.join("input/event1"));
        std::fs::create_dir_all(sys.join("devices/platform/serio1")).unwrap();
        std::fs::write(sys.join("devices/platform/serio1/wakeup"), "disabled\n").unwrap();
        let n = d.handle(b"add@/devices/platform/i8042/serio1/input/input1/event1\0ACTION=add\0DEVPATH=/devices/platform/i8042/serio1/input/input1/event1\0DEVNAME=input/event1\0");
        assert_eq!(n, 1);
        assert_eq!(owner_mode(&dev.join("input/event1")), (0, 1004, 0o660));
        assert_eq!(d.handle(b"add@/devices/platform/serio1\0ACTION=add\0DEVPATH=/devices/platform/serio1\0"), 1);
        assert_eq!(owner_mode(&sys.join("devices/platform/serio1/wakeup")), (1000, 1004, 0o664));
        assert_eq!(d.handle(b"remove@/x\0ACTION=remove\0DEVPATH=/devices/x\0DEVNAME=input/event1\0"), 0);
        assert_eq!(*params.lock().unwrap(), ["ueventd.test.event=added", "ueventd.test.event=added", "ueventd.test.event=removed"]);
        // A name that would leave /dev does nothing.
        assert_eq!(d.handle(b"add@/x\0ACTION=add\0DEVPATH=/devices/x\0DEVNAME=input/../../../etc/passwd\0"), 0);
        assert_eq!(owner_mode(Path::new("/etc/passwd")), passwd);
    }

    /// A symbolic link to a directory in the middle of a path (`/dev/input`
    /// pointing elsewhere, a sysfs device directory pointing elsewhere) is
    /// not followed either: neither at the cold boot nor on an event.
    #[test]
    fn a_symlinked_directory_on_the_way_is_not_followed() {
        use nix::sys::stat::{mknod, Mode, SFlag};
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mknod needs root");
            return;
        }
        let t = tempfile::tempdir().unwrap();
        let (dev, sys, elsewhere) = (t.path().join("dev"), t.path().join("sys"), t.path().join("elsewhere"));
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::create_dir_all(sys.join("devices/platform")).unwrap();
        std::fs::create_dir_all(&elsewhere).unwrap();
        mknod(&elsewhere.join("event0"), SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), nix::sys::stat::makedev(1, 3)).unwrap();
        std::fs::write(elsewhere.join("wakeup"), "").unwrap();
        std::fs::set_permissions(elsewhere.join("wakeup"), std::fs::Permissions::from_mode(0o600)).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dev.join("input")).unwrap();
        std::os::unix::fs::symlink(&elsewhere, sys.join("devices/platform/evil")).unwrap();
        let mut rules = Rules::default();
        let p = parse_into(
            &mut rules,
            "[device]\n/dev/input/event* 0666 root input\n[sysfs]\n/sys/devices/platform/* wakeup 0666 system input\n",
            "test",
            &users(),
        );
        assert!(p.is_empty(), "{p:?}");
        let mut d = Ueventd { rules, roots: Roots { dev, sys }, set_param: Box::new(|_, _| {}) };
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(d.handle(b"add@/x\0ACTION=add\0DEVPATH=/devices/x\0DEVNAME=input/event0\0"), 0);
        assert_eq!(mode(&elsewhere.join("event0")), 0o600, "followed /dev/input, a symbolic link, on an event");
        assert_eq!(d.handle(b"add@/devices/platform/evil\0ACTION=add\0DEVPATH=/devices/platform/evil\0"), 0);
        assert_eq!(mode(&elsewhere.join("wakeup")), 0o600, "followed a symbolic link in /sys on an event");
        assert_eq!(d.coldboot(), 0);
        assert_eq!(mode(&elsewhere.join("event0")), 0o600, "followed /dev/input, a symbolic link, at the cold boot");
        assert_eq!(mode(&elsewhere.join("wakeup")), 0o600, "followed a symbolic link in /sys at the cold boot");
    }

    /// Only the kernel (and root) may send to the uevent group: a process
    /// without privileges cannot make ueventd see a message.
    #[test]
    fn an_unprivileged_process_cannot_send_uevents() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root to drop privileges");
            return;
        }
        // The child drops to nobody and tries to multicast to group 1, and
        // to send to port 0 (the kernel) and to an arbitrary port; its exit
        // status has a bit set for each send that went through. Only
        // async-signal-safe calls after the fork.
        let msg = b"add@/x\0ACTION=add\0DEVPATH=/devices/x\0DEVNAME=null\0";
        // SAFETY: fork in a test; the child makes plain system calls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
        if pid == 0 {
            // SAFETY: system calls on memory this child owns; _exit at the end.
            unsafe {
                if libc::setgroups(0, std::ptr::null()) != 0 || libc::setgid(65534) != 0 || libc::setuid(65534) != 0 {
                    libc::_exit(100);
                }
                let fd = libc::socket(libc::AF_NETLINK, libc::SOCK_DGRAM, libc::NETLINK_KOBJECT_UEVENT);
                if fd < 0 {
                    libc::_exit(101);
                }
                let mut status = 0;
                for (bit, (pid, groups)) in [(0u32, 1u32), (1, 0), (12345, 0)].into_iter().enumerate() {
                    let mut addr: libc::sockaddr_nl = std::mem::zeroed();
                    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
                    addr.nl_pid = pid;
                    addr.nl_groups = groups;
                    let n = libc::sendto(
                        fd,
                        msg.as_ptr().cast(),
                        msg.len(),
                        0,
                        (&addr as *const libc::sockaddr_nl).cast(),
                        std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
                    );
                    if n >= 0 {
                        status |= 1 << bit;
                    }
                }
                libc::_exit(status);
            }
        }
        let status = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None).unwrap();
        assert_eq!(status, nix::sys::wait::WaitStatus::Exited(nix::unistd::Pid::from_raw(pid), 0), "an unprivileged send went through");
    }

    /// A line that is not UTF-8 (here a comment) costs that line, not the
    /// file; -1 is no owner.
    #[test]
    fn a_line_not_utf8_skips_only_that_line() {
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("ueventd.config");
        std::fs::write(&f, b"[device]\n# caf\xe9\n/dev/rtc0 0660 root input\n/dev/x 0600 4294967295 root\n").unwrap();
        let name = f.to_str().unwrap();
        let (rules, problems) = Rules::load(&[name], &users());
        assert_eq!(rules.devices.iter().map(|r| r.pattern.as_str()).collect::<Vec<_>>(), ["/dev/rtc0"], "{problems:?}");
        let origins: Vec<String> = problems.iter().map(|p| p.origin.clone()).collect();
        assert_eq!(origins, [format!("{name}:2"), format!("{name}:4")], "{problems:?}");
    }

    #[test]
    fn a_pattern_expands_to_what_exists() {
        let t = tempfile::tempdir().unwrap();
        for d in ["a/x1/p", "a/x2/p", "a/y1/p", "b/x3"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        let got = expand("/sys/a/x*/p", "/sys", t.path());
        assert_eq!(got, vec![t.path().join("a/x1/p"), t.path().join("a/x2/p")]);
        assert!(expand("/sys/c/*", "/sys", t.path()).is_empty());
        assert_eq!(expand("/sys/b/x3", "/sys", t.path()), vec![t.path().join("b/x3")]);
    }
}
