//! The cfg command vocabulary (`mkdir`, `mount`, `start`, ...), run by jobs.
//! Every failure is an error string naming what failed; the job goes on
//! with its next command.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tracing::{error, info, warn};

use super::{Init, PowerCmd};
use crate::cfg::Cmd;

type CmdResult = Result<(), String>;

fn parse_mode(s: &str) -> Result<u32, String> {
    match u32::from_str_radix(s, 8) {
        Ok(m) if m <= 0o7777 => Ok(m),
        _ => Err(format!("bad mode {s:?} (octal 0..=7777 expected)")),
    }
}

/// Longest `sleep`, in seconds (a boot command blocks the loop meanwhile).
pub const MAX_SLEEP_SECS: f64 = 30.0;
/// Longest `wait` timeout, in seconds.
pub const MAX_WAIT_SECS: f64 = 60.0;

/// A duration in seconds from a cfg argument: a finite, non-negative number
/// of at most `max` seconds. `nan`, `inf`, negative or larger values are
/// errors naming the argument (OpenHarmony's `sleep`/`wait` take integers;
/// fractions are accepted here).
fn parse_secs(what: &str, s: &str, max: f64) -> Result<Duration, String> {
    let v: f64 = s.parse().map_err(|_| format!("{what} {s:?} is not a number of seconds"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("{what} {s:?} must be a finite number of seconds >= 0"));
    }
    if v > max {
        return Err(format!("{what} {s:?} is more than the limit of {max} s"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn need(args: &[String], n: usize, usage: &str) -> CmdResult {
    if args.len() < n {
        Err(format!("usage: {usage}"))
    } else {
        Ok(())
    }
}

/// Mount flags by their `mount` command names.
fn mount_flag(word: &str) -> Option<MsFlags> {
    Some(match word {
        "ro" | "rdonly" => MsFlags::MS_RDONLY,
        "rw" => MsFlags::empty(),
        "nosuid" => MsFlags::MS_NOSUID,
        "nodev" => MsFlags::MS_NODEV,
        "noexec" => MsFlags::MS_NOEXEC,
        "noatime" => MsFlags::MS_NOATIME,
        "nodiratime" => MsFlags::MS_NODIRATIME,
        "relatime" => MsFlags::MS_RELATIME,
        "sync" => MsFlags::MS_SYNCHRONOUS,
        "remount" => MsFlags::MS_REMOUNT,
        "bind" => MsFlags::MS_BIND,
        "rec" => MsFlags::MS_REC,
        "private" => MsFlags::MS_PRIVATE,
        "slave" => MsFlags::MS_SLAVE,
        "shared" => MsFlags::MS_SHARED,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "defaults" => MsFlags::empty(),
        _ => return None,
    })
}

fn rlimit_resource(name: &str) -> Option<nix::sys::resource::Resource> {
    use nix::sys::resource::Resource::*;
    let n = name.strip_prefix("RLIMIT_").unwrap_or(name);
    Some(match n {
        "CPU" => RLIMIT_CPU,
        "FSIZE" => RLIMIT_FSIZE,
        "DATA" => RLIMIT_DATA,
        "STACK" => RLIMIT_STACK,
        "CORE" => RLIMIT_CORE,
        "RSS" => RLIMIT_RSS,
        "NPROC" => RLIMIT_NPROC,
        "NOFILE" => RLIMIT_NOFILE,
        "MEMLOCK" => RLIMIT_MEMLOCK,
        "AS" => RLIMIT_AS,
        "LOCKS" => RLIMIT_LOCKS,
        "SIGPENDING" => RLIMIT_SIGPENDING,
        "MSGQUEUE" => RLIMIT_MSGQUEUE,
        "NICE" => RLIMIT_NICE,
        "RTPRIO" => RLIMIT_RTPRIO,
        "RTTIME" => RLIMIT_RTTIME,
        _ => return None,
    })
}

fn parse_limit(s: &str) -> Result<u64, String> {
    match s {
        "unlimited" | "-1" | "RLIM_INFINITY" => Ok(libc::RLIM_INFINITY),
        _ => s.parse().map_err(|_| format!("bad limit {s:?}")),
    }
}

impl Init {
    /// Expands `${name}` from parameters in one argument (unset: "").
    fn expand(&self, arg: &str) -> String {
        let params = &self.params;
        crate::cfg::expand(arg, &|n| params.get(n).map(str::to_owned), &mut Vec::new())
    }

    pub(super) fn run_cmd(&mut self, cmd: &Cmd) -> CmdResult {
        let args: Vec<String> = cmd.args.iter().map(|a| self.expand(a)).collect();
        let a = &args;
        match cmd.name.as_str() {
            "start" => {
                need(a, 1, "start <service>")?;
                let idx = self.service_index(&a[0]).ok_or_else(|| format!("no service named {:?}", a[0]))?;
                self.start_service(idx);
                Ok(())
            }
            // `termservice` is OpenHarmony's other spelling of a stop.
            "stop" | "termservice" => {
                need(a, 1, "stop <service>")?;
                let idx = self.service_index(&a[0]).ok_or_else(|| format!("no service named {:?}", a[0]))?;
                self.stop_service(idx, Self::CONTROL_STOP_GRACE);
                Ok(())
            }
            "reset" => {
                need(a, 1, "reset <service>")?;
                let idx = self.service_index(&a[0]).ok_or_else(|| format!("no service named {:?}", a[0]))?;
                if self.services[idx].pid.is_some() {
                    self.stop_service(idx, Self::CONTROL_STOP_GRACE);
                } else {
                    self.start_service(idx);
                }
                Ok(())
            }
            "stopAllServices" => {
                for idx in (0..self.services.len()).rev() {
                    self.stop_service(idx, Self::CONTROL_STOP_GRACE);
                }
                Ok(())
            }
            "mkdir" => {
                need(a, 1, "mkdir <path> [mode] [owner] [group]")?;
                let path = Path::new(&a[0]);
                match std::fs::create_dir(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(format!("mkdir {}: {e}", a[0])),
                }
                if let Some(m) = a.get(1) {
                    let mode = parse_mode(m)?;
                    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|e| format!("chmod {}: {e}", a[0]))?;
                }
                if a.len() >= 3 {
                    self.chown(&a[2], a.get(3).map(String::as_str), &a[0])?;
                }
                Ok(())
            }
            "chmod" => {
                need(a, 2, "chmod <mode> <path>")?;
                let mode = parse_mode(&a[0])?;
                std::fs::set_permissions(&a[1], std::fs::Permissions::from_mode(mode)).map_err(|e| format!("chmod {}: {e}", a[1]))
            }
            "chown" => {
                need(a, 3, "chown <owner> <group> <path>")?;
                self.chown(&a[0], Some(&a[1]), &a[2])
            }
            "mount" => self.cmd_mount(a),
            "umount" => {
                need(a, 1, "umount <path> [MNT_FORCE]")?;
                let force = match a.get(1).map(String::as_str) {
                    None => false,
                    Some("MNT_FORCE") => true,
                    Some(other) => return Err(format!("umount: unknown flag {other:?} (MNT_FORCE expected)")),
                };
                match umount2(a[0].as_str(), MntFlags::empty()) {
                    Ok(()) => Ok(()),
                    // OpenHarmony's reboot job: a busy /data is forced.
                    Err(_) if force => umount2(a[0].as_str(), MntFlags::MNT_FORCE).map_err(|e| format!("umount {} (forced): {e}", a[0])),
                    Err(e) => Err(format!("umount {}: {e}", a[0])),
                }
            }
            "write" => {
                need(a, 2, "write <path> <content>")?;
                std::fs::write(&a[0], a[1..].join(" ")).map_err(|e| format!("write {}: {e}", a[0]))
            }
            "copy" => {
                need(a, 2, "copy <from> <to>")?;
                std::fs::copy(&a[0], &a[1]).map(|_| ()).map_err(|e| format!("copy {} {}: {e}", a[0], a[1]))
            }
            "rm" => {
                need(a, 1, "rm <path>")?;
                std::fs::remove_file(&a[0]).map_err(|e| format!("rm {}: {e}", a[0]))
            }
            "rmdir" => {
                need(a, 1, "rmdir <path>")?;
                std::fs::remove_dir(&a[0]).map_err(|e| format!("rmdir {}: {e}", a[0]))
            }
            "symlink" => {
                need(a, 2, "symlink <target> <link>")?;
                match std::os::unix::fs::symlink(&a[0], &a[1]) {
                    Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(format!("symlink {} {}: {e}", a[0], a[1])),
                    _ => Ok(()),
                }
            }
            "mknode" => {
                need(a, 5, "mknode <path> b|c <mode> <major> <minor>")?;
                let kind = match a[1].as_str() {
                    "b" => nix::sys::stat::SFlag::S_IFBLK,
                    "c" => nix::sys::stat::SFlag::S_IFCHR,
                    other => return Err(format!("mknode: type {other:?} is not b or c")),
                };
                let mode = parse_mode(&a[2])?;
                let major: u64 = a[3].parse().map_err(|_| format!("bad major {:?}", a[3]))?;
                let minor: u64 = a[4].parse().map_err(|_| format!("bad minor {:?}", a[4]))?;
                nix::sys::stat::mknod(a[0].as_str(), kind, nix::sys::stat::Mode::from_bits_truncate(mode), nix::sys::stat::makedev(major, minor))
                    .map_err(|e| format!("mknode {}: {e}", a[0]))
            }
            "export" => {
                need(a, 2, "export <name> <value>")?;
                let value = a[1..].join(" ");
                if a[0].is_empty() || a[0].contains(['=', '\0']) || value.contains('\0') {
                    return Err(format!("export: {:?} is not a valid variable name (or the value holds NUL)", a[0]));
                }
                std::env::set_var(&a[0], value);
                Ok(())
            }
            "hostname" => {
                need(a, 1, "hostname <name>")?;
                nix::unistd::sethostname(&a[0]).map_err(|e| format!("hostname: {e}"))
            }
            "domainname" => {
                need(a, 1, "domainname <name>")?;
                std::fs::write("/proc/sys/kernel/domainname", &a[0]).map_err(|e| format!("domainname: {e}"))
            }
            "insmod" => {
                need(a, 1, "insmod <file.ko> [options]")?;
                // OpenHarmony's form: insmod <file> [-f] [options].
                let force = a.get(1).is_some_and(|o| o == "-f");
                let opts = a[if force { 2 } else { 1 }..].join(" ");
                crate::kmod::insmod_with(Path::new(&a[0]), &opts, force).map_err(|e| e.to_string())
            }
            "modprobe" => {
                need(a, 1, "modprobe <module> [options]")?;
                let dep = crate::kmod::ModDep::load(&crate::kmod::module_dir()).map_err(|e| e.to_string())?;
                crate::kmod::modprobe(&dep, &a[0], &a[1..].join(" "), &mut Default::default()).map_err(|e| e.to_string())
            }
            "setparam" => {
                need(a, 2, "setparam <name> <value>")?;
                self.set_param(&a[0], &a[1..].join(" ")).map_err(|e| e.to_string())
            }
            "trigger" => {
                need(a, 1, "trigger <job>")?;
                if !self.cfg.jobs.contains_key(&a[0]) {
                    return Err(format!("no job named {:?}", a[0]));
                }
                self.run_job(&a[0].clone());
                Ok(())
            }
            "exec" | "syncexec" => {
                need(a, 1, "exec <path> [args...]")?;
                self.exec_command(a, cmd.name == "syncexec")
            }
            "sleep" => {
                need(a, 1, "sleep <seconds>")?;
                // The loop keeps serving while the job sleeps.
                self.wait_serving(parse_secs("sleep:", &a[0], MAX_SLEEP_SECS)?, |_| false).map(|_| ())
            }
            "wait" => {
                need(a, 1, "wait <path> [timeout seconds]")?;
                let timeout = match a.get(1) {
                    Some(s) => parse_secs("wait: timeout", s, MAX_WAIT_SECS)?,
                    None => Duration::from_secs(5),
                };
                let path = Path::new(&a[0]);
                if self.wait_serving(timeout, |_| path.exists())? {
                    Ok(())
                } else {
                    Err(format!("{} did not appear within {} s", a[0], timeout.as_secs_f64()))
                }
            }
            "load_persist_params" => {
                self.load_persist();
                Ok(())
            }
            "load_param" => {
                need(a, 1, "load_param <file> [onlyadd]")?;
                let only_add = a.get(1).is_some_and(|s| s == "onlyadd");
                self.load_param_file(Path::new(&a[0]), only_add);
                Ok(())
            }
            "setrlimit" => {
                need(a, 3, "setrlimit <resource> <cur> <max>")?;
                let r = rlimit_resource(&a[0]).ok_or_else(|| format!("unknown resource {:?}", a[0]))?;
                let (cur, max) = (parse_limit(&a[1])?, parse_limit(&a[2])?);
                if r == nix::sys::resource::Resource::RLIMIT_NOFILE {
                    // init keeps its own (raised) limit for its clients; the
                    // services it starts from now on get this one.
                    if cur > max {
                        return Err(format!("setrlimit: soft limit {cur} above hard limit {max}"));
                    }
                    crate::spawn::set_service_nofile(cur, max);
                    return Ok(());
                }
                nix::sys::resource::setrlimit(r, cur, max).map_err(|e| format!("setrlimit: {e}"))
            }
            "sync" => {
                nix::unistd::sync();
                Ok(())
            }
            "reboot" => {
                let arg = a.first().map(|m| format!("reboot,{m}")).unwrap_or_else(|| "reboot".into());
                let pc = PowerCmd::parse(&arg).ok_or_else(|| format!("unknown reboot mode {:?}", a.first()))?;
                self.begin_shutdown(pc, "reboot command");
                Ok(())
            }
            "ifup" => {
                need(a, 1, "ifup <interface>")?;
                ifup(&a[0])
            }
            "mount_fstab" => {
                need(a, 1, "mount_fstab <fstab file>")?;
                self.mount_fstab(Path::new(&a[0]))
            }
            "chmoddir" => {
                need(a, 2, "chmoddir <mode> <directory>")?;
                chmod_tree(Path::new(&a[1]), parse_mode(&a[0])?)
            }
            // Accepted by OpenHarmony's init but not carried out here: each is
            // an error in the log naming the command, never a silent success.
            "setloglevel" => Err("not supported: init logs at the level ACCORD_LOG_LEVEL sets at boot".into()),
            "bootchart" => {
                Err("bootchart is not supported on Accord; init writes a boot trace instead (bootevent.boot.completed, /data/log/startup/bootup.trace)".into())
            }
            "bootevent" => Err("bootevent is handled by init itself (services' \"bootevents\" field); the command does nothing here".into()),
            "init_global_key" | "init_main_user" => Err("file encryption (fscrypt) is not supported on Accord; skipped".into()),
            "mkswap" | "swapon" => Err("swap is not supported on Accord; skipped".into()),
            "restorecon" | "loadSelinuxPolicy" | "load_access_token_id" | "mksandbox" => {
                Err("SELinux, access tokens and sandboxes are not supported on Accord; skipped".into())
            }
            // Test hook: lets the namespace tests prove that a panicking
            // command leaves no state behind. Not compiled into release
            // builds (the image's init).
            #[cfg(debug_assertions)]
            "__accord_test_panic" => panic!("__accord_test_panic at {}", cmd.origin),
            other => Err(format!("unknown command {other:?}")),
        }
    }

    fn chown(&self, owner: &str, group: Option<&str>, path: &str) -> CmdResult {
        let uid = self.users.uid_str(owner).ok_or_else(|| format!("unknown user {owner:?}"))?;
        let gid = match group {
            Some(g) => Some(self.users.gid_str(g).ok_or_else(|| format!("unknown group {g:?}"))?),
            None => None,
        };
        nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), gid.map(nix::unistd::Gid::from_raw)).map_err(|e| format!("chown {path}: {e}"))
    }

    /// `mount <type> <device> <target> [flags...] [data]`.
    fn cmd_mount(&mut self, a: &[String]) -> CmdResult {
        need(a, 3, "mount <type> <device> <target> [flags...] [data]")?;
        let (fstype, dev, target) = (&a[0], &a[1], &a[2]);
        let mut flags = MsFlags::empty();
        let mut data: Vec<&str> = Vec::new();
        for w in &a[3..] {
            match mount_flag(w) {
                Some(f) => flags |= f,
                None => data.push(w),
            }
        }
        self.mount_one(fstype, dev, target, flags, &data.join(","))
    }

    /// Mounts one filesystem (the `mount` command and each `mount_fstab`
    /// line). A type the kernel lacks is waited for only while a module
    /// loader still runs (bounded by [`FS_TYPE_WAIT`]); otherwise it fails
    /// at once with ENODEV.
    fn mount_one(&mut self, fstype: &str, dev: &str, target: &str, flags: MsFlags, data: &str) -> CmdResult {
        let _ = std::fs::create_dir_all(target);
        if !flags.intersects(MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_MOVE) && !fs_type_listed(fstype) {
            // Only a running module loader can still register the type; the
            // loop serves (and reaps the loaders) while we wait.
            let ready = self.wait_serving(FS_TYPE_WAIT, |me| fs_type_listed(fstype) || !me.module_loaders_running())?;
            if !fs_type_listed(fstype) {
                return Err(if ready {
                    format!("mount {fstype} {dev} on {target}: the kernel has no filesystem type {fstype:?} and no module loader is running (ENODEV)")
                } else {
                    format!(
                        "mount {fstype} {dev} on {target}: filesystem type {fstype:?} did not register within {} s of module loading (ENODEV)",
                        FS_TYPE_WAIT.as_secs()
                    )
                });
            }
        }
        let data_opt = if data.is_empty() { None } else { Some(data) };
        mount(Some(dev), target, Some(fstype), flags, data_opt).map_err(|e| format!("mount {fstype} {dev} on {target}: {e}"))?;
        info!("mounted {dev} ({fstype}) on {target}");
        Ok(())
    }

    /// `mount_fstab <file>`: mounts every entry of an OpenHarmony fstab in
    /// order. An entry that fails is an error naming file and line; with
    /// `nofail` a warning. `wait` waits (bounded) for a `/dev` source to
    /// appear; `check` (fsck) and the other fs_mgr flags are not carried out
    /// and say so.
    fn mount_fstab(&mut self, file: &Path) -> CmdResult {
        let text = std::fs::read_to_string(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        let (entries, diags) = crate::cfg::fstab::parse_fstab(&text, file);
        let mut failed = diags.iter().filter(|d| d.severity == crate::cfg::Severity::Error).count();
        for d in diags {
            warn!("{d}");
        }
        for e in &entries {
            let at = format!("{}:{}", file.display(), e.line);
            for f in &e.fs_mgr_flags {
                if !["wait", "required", "nofail"].contains(&f.as_str()) {
                    warn!("{at}: fs_mgr flag {f:?} is not carried out on Accord");
                }
            }
            if e.has_flag("wait") && e.source.starts_with("/dev/") {
                let dev = Path::new(&e.source);
                self.wait_serving(FSTAB_WAIT, |_| dev.exists())?;
            }
            let mut flags = MsFlags::empty();
            let mut data = Vec::new();
            for o in &e.options {
                match mount_flag(o) {
                    Some(f) => flags |= f,
                    None => data.push(o.as_str()),
                }
            }
            if let Err(err) = self.mount_one(&e.fs_type, &e.source, &e.mount_point, flags, &data.join(",")) {
                if e.has_flag("nofail") {
                    warn!("{at}: {err} (nofail)");
                } else {
                    error!("{at}: {err}{}", if e.has_flag("required") { " (a required partition)" } else { "" });
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            return Err(format!("{failed} of the entries in {} failed (see above)", file.display()));
        }
        info!("mounted the {} entries of {}", entries.len(), file.display());
        Ok(())
    }

    /// Whether one of the module loaders init forked is still alive (not
    /// yet a zombie), i.e. a filesystem type may still register.
    fn module_loaders_running(&self) -> bool {
        self.helpers.iter().filter(|(_, h)| h.name.starts_with("module loader")).any(|(pid, _)| process_alive(*pid))
    }
}

/// Longest wait for an fstab entry's device with the `wait` flag.
pub const FSTAB_WAIT: Duration = Duration::from_secs(5);
/// Most entries `chmoddir` changes (a bound on PID 1's time).
pub const CHMODDIR_MAX_ENTRIES: usize = 100_000;
/// Deepest directory `chmoddir` descends into.
pub const CHMODDIR_MAX_DEPTH: usize = 32;

/// `chmoddir <mode> <dir>`: sets `mode` on a directory and everything
/// below it, never following symbolic links. Bounded by
/// [`CHMODDIR_MAX_ENTRIES`] and [`CHMODDIR_MAX_DEPTH`].
fn chmod_tree(root: &Path, mode: u32) -> CmdResult {
    let meta = std::fs::symlink_metadata(root).map_err(|e| format!("chmoddir {}: {e}", root.display()))?;
    if !meta.is_dir() {
        return Err(format!("chmoddir {}: not a directory", root.display()));
    }
    let mut stack = vec![(root.to_path_buf(), 0usize)];
    let mut done = 0usize;
    let mut errors = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        if let Err(e) = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)) {
            warn!("chmoddir: {}: {e}", dir.display());
            errors += 1;
        }
        done += 1;
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) => {
                warn!("chmoddir: {}: {e}", dir.display());
                errors += 1;
                continue;
            }
        };
        for ent in rd.flatten() {
            if done >= CHMODDIR_MAX_ENTRIES {
                return Err(format!("chmoddir {}: more than {CHMODDIR_MAX_ENTRIES} entries; stopped", root.display()));
            }
            let Ok(ft) = ent.file_type() else { continue };
            let p = ent.path();
            if ft.is_symlink() {
                continue;
            }
            if ft.is_dir() {
                if depth + 1 > CHMODDIR_MAX_DEPTH {
                    warn!("chmoddir: {}: deeper than {CHMODDIR_MAX_DEPTH} levels; not descended", p.display());
                    errors += 1;
                    continue;
                }
                stack.push((p, depth + 1));
            } else {
                if let Err(e) = std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)) {
                    warn!("chmoddir: {}: {e}", p.display());
                    errors += 1;
                }
                done += 1;
            }
        }
    }
    if errors > 0 {
        return Err(format!("chmoddir {}: {errors} entries could not be changed (see above)", root.display()));
    }
    Ok(())
}

/// Longest wait for a filesystem type while modules still load: the
/// loaders end on their own, this only bounds a stuck one (a CPU-starved
/// TCG guest was seen to need more than 5 s for ext4's chain).
pub const FS_TYPE_WAIT: Duration = Duration::from_secs(60);

/// Whether `/proc/filesystems` lists `fstype` (true when it cannot be read,
/// so the mount itself reports the error).
fn fs_type_listed(fstype: &str) -> bool {
    std::fs::read_to_string("/proc/filesystems").map(|t| t.lines().any(|l| l.split_whitespace().last() == Some(fstype))).unwrap_or(true)
}

/// A child that has not exited yet (exited but unreaped children are
/// zombies: state `Z`).
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next()).is_some_and(|st| st != "Z" && st != "X"),
        Err(_) => false,
    }
}

/// Brings a network interface up (SIOCSIFFLAGS with IFF_UP).
fn ifup(name: &str) -> CmdResult {
    let sock =
        nix::sys::socket::socket(nix::sys::socket::AddressFamily::Inet, nix::sys::socket::SockType::Datagram, nix::sys::socket::SockFlag::SOCK_CLOEXEC, None)
            .map_err(|e| format!("ifup: socket: {e}"))?;
    // SAFETY: ifreq is plain data; the ioctls read/write it.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        let bytes = name.as_bytes();
        if bytes.len() >= req.ifr_name.len() {
            return Err(format!("ifup: interface name {name:?} too long"));
        }
        for (i, b) in bytes.iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        use std::os::fd::AsRawFd;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req) < 0 {
            return Err(format!("ifup {name}: {}", std::io::Error::last_os_error()));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &req) < 0 {
            return Err(format!("ifup {name}: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
