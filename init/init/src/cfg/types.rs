//! The typed form of OpenHarmony-format cfg files, after validation.
//!
//! Everything here is plain data: the parser in `parse.rs` builds it, the
//! runtime reads it. Names follow OpenHarmony's `init.cfg` fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// Every command word init's jobs know (`runtime/commands.rs` carries them
/// out or reports why not). A cfg naming another word gets a warning with
/// its file and line when it is loaded, and an error when the job runs.
pub const COMMANDS: &[&str] = &[
    "start",
    "stop",
    "termservice",
    "reset",
    "stopAllServices",
    "mkdir",
    "chmod",
    "chmoddir",
    "chown",
    "mount",
    "mount_fstab",
    "umount",
    "write",
    "copy",
    "rm",
    "rmdir",
    "symlink",
    "mknode",
    "export",
    "hostname",
    "domainname",
    "insmod",
    "modprobe",
    "setparam",
    "trigger",
    "exec",
    "syncexec",
    "sleep",
    "wait",
    "load_persist_params",
    "load_param",
    "setrlimit",
    "sync",
    "reboot",
    "ifup",
    "setloglevel",
    "bootchart",
    "bootevent",
    "init_global_key",
    "init_main_user",
    "mkswap",
    "swapon",
    "restorecon",
    "loadSelinuxPolicy",
    "load_access_token_id",
    "mksandbox",
];

/// One command line of a job, e.g. `mkdir /data/log 0775 root system`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cmd {
    /// The command word (`mkdir`, `start`, ...). Unknown words are kept and
    /// reported as a warning when the job runs.
    pub name: String,
    /// The rest of the line, split on ASCII whitespace. `${param}` is
    /// expanded at run time, not at parse time.
    pub args: Vec<String>,
    /// Where the command came from, for error messages:
    /// `file:line: jobs[i].cmds[j]`.
    pub origin: String,
}

/// A job: a named list of commands, optionally gated by a condition.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Job {
    pub name: String,
    /// The raw condition expression (see `condition.rs`), if any.
    pub condition: Option<String>,
    pub cmds: Vec<Cmd>,
}

/// `critical` field: `1`/`0` or `[enable, count, seconds]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Critical {
    pub enabled: bool,
    /// Crashes within `period_secs` that trigger a panic reboot.
    pub count: u32,
    pub period_secs: u32,
}

impl Default for Critical {
    fn default() -> Self {
        Critical { enabled: false, count: 4, period_secs: 240 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StartMode {
    /// Started right after the `init` job.
    Boot,
    /// Started after the `boot` job (the default).
    #[default]
    Normal,
    /// Started only by a `start` command, `ohos.ctl.start` or a socket.
    Condition,
}

/// A user or group as written in the cfg: a name (resolved against
/// /etc/passwd and /etc/group when the service starts) or a number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    Name(String),
    Id(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketType {
    Stream,
    Dgram,
    SeqPacket,
}

/// A socket init creates for a service: `/dev/unix/socket/<name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SocketSpec {
    pub name: String,
    pub sock_type: SocketType,
    /// File mode of the socket node, e.g. 0o660.
    pub permissions: u32,
    pub uid: Option<Ident>,
    pub gid: Option<Ident>,
    /// `option` flags, e.g. `SOCKET_OPTION_PASSCRED`.
    pub passcred: bool,
}

/// Lifecycle hooks: each names a job to run at that point.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceJobs {
    pub on_boot: Option<String>,
    pub pre_start: Option<String>,
    pub on_start: Option<String>,
    pub on_stop: Option<String>,
    pub on_restart: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub name: String,
    /// argv; `path[0]` is the executable. Never empty after validation.
    pub path: Vec<String>,
    pub uid: Option<Ident>,
    /// Primary gid first, then supplementary groups.
    pub gid: Vec<Ident>,
    pub once: bool,
    /// nice value, -20..=19.
    pub importance: i32,
    /// Capability names as in `CAP_NET_ADMIN` or `NET_ADMIN`; `None` means
    /// the field was absent (no capability change), `Some(empty)` drops all.
    pub caps: Option<Vec<String>>,
    pub critical: Critical,
    pub cpucore: Vec<u32>,
    pub start_mode: StartMode,
    pub ondemand: bool,
    pub disabled: bool,
    pub console: bool,
    pub sockets: Vec<SocketSpec>,
    /// Files to write the pid into.
    pub writepid: Vec<String>,
    /// Extra environment variables, `(name, value)`.
    pub env: Vec<(String, String)>,
    pub jobs: ServiceJobs,
    /// Boot event names this service will set (`bootevent.<x>`).
    pub bootevents: Vec<String>,
    /// `period`: restart interval in seconds for periodic services, if any.
    pub period_secs: Option<u32>,
    /// File the service came from.
    pub origin: PathBuf,
}

/// Everything read from all cfg files, merged.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// Jobs by name; commands of same-named jobs from several files are
    /// appended in file order (each file's `condition`, if any, is kept only
    /// from the first file that declares one).
    pub jobs: BTreeMap<String, Job>,
    /// Services in declaration order. A later file declaring a service with
    /// an existing name replaces it (with a warning).
    pub services: Vec<Service>,
}
