//! System abilities: the interfaces between samgr, SA host processes and
//! clients, and the SDK to write and to use an SA.
//!
//! A client never talks to an SA through samgr: `GetSystemAbility` makes a
//! socket pair, hands one end to the SA's host (with the caller's identity
//! as samgr verified it from SO_PEERCRED) and returns the other end to the
//! client, which then speaks D-Bus directly to the SA.
//!
//! - Writing an SA: implement [`SystemAbility`] and [`run`] it (or
//!   [`SaHost::publish`] several); see `ipc/examples/counter_sa.rs`.
//! - Using an SA: [`get`]`::<FooProxy>(id)` gives a typed proxy
//!   ([`Remote`]) whose [`Remote::died`] tells when the SA went away.

mod client;
mod host;

pub use client::{get, Remote, SaEvent, Samgr};
pub use host::{run, run_profile, run_profile_at, Caller, Maker, Published, SaHost, SystemAbility};

use serde::{Deserialize, Serialize};
use zbus::zvariant::{self, Type};

/// Where init creates samgr's socket.
pub const SAMGR_SOCKET: &str = "/dev/unix/socket/samgr";
pub const SAMGR_PATH: &str = "/org/accord/samgr";
pub const HOST_PATH: &str = "/org/accord/sa_host";
pub const LISTENER_PATH: &str = "/org/accord/sa_listener";
/// Highest SA id (OpenHarmony's limit); 0 is samgr itself.
pub const MAX_SA_ID: u32 = 0x00FF_FFFF;
/// Most subscriptions one connection may hold (OpenHarmony's limit).
pub const MAX_SUBSCRIPTIONS: usize = 256;
/// How long `GetSystemAbility` waits for an on-demand SA to load.
pub const LOAD_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(4);

/// The socket clients use: `SAMGR_SOCKET` from the environment if set
/// (tests, tools run from outside the device), else [`SAMGR_SOCKET`].
pub fn samgr_socket() -> std::path::PathBuf {
    std::env::var_os("SAMGR_SOCKET").map(std::path::PathBuf::from).unwrap_or_else(|| SAMGR_SOCKET.into())
}

/// What a host says about an SA when it adds it (OpenHarmony's
/// `SAExtraProp`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SaProps {
    pub distributed: bool,
    pub dump_level: u32,
    pub capability: String,
    pub permission: String,
}

/// One row of `hidumper -ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct SaInfo {
    pub id: u32,
    /// NOT_LOADED, LOADING, LOADED, UNLOADING.
    pub state: String,
    /// The process hosting it ("" when none is known).
    pub process: String,
    pub pid: i32,
    pub uid: u32,
}

/// A running SA host process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ProcessInfo {
    pub name: String,
    pub pid: i32,
    pub uid: u32,
}

/// samgr's interface, as its clients and SA hosts see it.
#[zbus::proxy(interface = "org.accord.SystemAbilityManager", default_service = "org.accord.samgr", default_path = "/org/accord/samgr")]
pub trait SystemAbilityManager {
    /// Registers the caller's process as the host of SA `id`.
    fn add_system_ability(&self, id: u32, props: SaProps) -> zbus::Result<()>;
    /// Withdraws SA `id` (its host, or root).
    fn remove_system_ability(&self, id: u32) -> zbus::Result<()>;
    /// A connected socket to SA `id`, loading it first if it is on demand.
    fn get_system_ability(&self, id: u32) -> zbus::Result<zvariant::OwnedFd>;
    /// Whether SA `id` is registered (never loads it).
    fn check_system_ability(&self, id: u32) -> zbus::Result<bool>;
    /// (id, state) of every SA samgr knows: registered or in a profile.
    fn list_system_abilities(&self) -> zbus::Result<Vec<(u32, String)>>;
    fn dump_system_abilities(&self) -> zbus::Result<Vec<SaInfo>>;
    /// Starts loading SA `id` and returns; the caller's listener hears
    /// `OnLoadSystemAbilitySuccess` or `OnLoadSystemAbilityFail`.
    fn load_system_ability(&self, id: u32) -> zbus::Result<()>;
    /// Asks SA `id` to unload (its `on_idle` may refuse).
    fn unload_system_ability(&self, id: u32) -> zbus::Result<()>;
    /// Tell the caller's listener when SA `id` is added or removed (at most
    /// 256 subscriptions per caller). An SA already present is reported at once.
    fn subscribe_system_ability(&self, id: u32) -> zbus::Result<()>;
    fn unsubscribe_system_ability(&self, id: u32) -> zbus::Result<()>;
    /// Processes hosting SAs now.
    fn get_running_system_process(&self) -> zbus::Result<Vec<ProcessInfo>>;
    /// An SA host announces the process (profile) it runs; the answer is
    /// the ids samgr wants loaded in it now.
    fn add_system_process(&self, name: &str) -> zbus::Result<Vec<u32>>;
    /// A host could not load SA `id` that samgr asked for: `reason` goes
    /// to everyone waiting for it.
    fn report_load_failure(&self, id: u32, reason: &str) -> zbus::Result<()>;
    /// Runs SA `id`'s dump with `args` (hidumper -s).
    fn dump_system_ability(&self, id: u32, args: Vec<String>) -> zbus::Result<String>;
}

/// What samgr calls on a subscriber (served on the client's own connection
/// to samgr, like OpenHarmony's status-change listener object).
#[zbus::proxy(interface = "org.accord.SystemAbilityListener", default_service = "org.accord.client", default_path = "/org/accord/sa_listener")]
pub trait SystemAbilityListener {
    #[zbus(no_reply)]
    fn on_add_system_ability(&self, id: u32) -> zbus::Result<()>;
    #[zbus(no_reply)]
    fn on_remove_system_ability(&self, id: u32) -> zbus::Result<()>;
    #[zbus(no_reply)]
    fn on_load_system_ability_success(&self, id: u32) -> zbus::Result<()>;
    #[zbus(no_reply)]
    fn on_load_system_ability_fail(&self, id: u32, reason: &str) -> zbus::Result<()>;
}

/// What samgr calls on an SA host process.
#[zbus::proxy(interface = "org.accord.SystemAbilityHost", default_service = "org.accord.sa", default_path = "/org/accord/sa_host")]
pub trait SystemAbilityHost {
    /// Serve SA `id` on `fd` for the caller samgr verified: its uid, gid,
    /// pid and supplementary groups, all from the kernel (SO_PEERCRED,
    /// SO_PEERGROUPS of the caller's connection to samgr).
    fn connect(&self, id: u32, fd: zvariant::OwnedFd, uid: u32, gid: u32, pid: i32, groups: Vec<u32>) -> zbus::Result<()>;
    /// Start SA `id` in this (running) process.
    fn load(&self, id: u32) -> zbus::Result<()>;
    /// Stop SA `id` if it has no client and its `on_idle` agrees (always
    /// when `force`). Answers (stopped, the process is exiting).
    fn stop(&self, id: u32, force: bool) -> zbus::Result<(bool, bool)>;
    fn dump(&self, id: u32, args: Vec<String>) -> zbus::Result<String>;
}

/// Whether a call failed because the other side is gone (its process died
/// or closed the connection): get the SA again to recover.
pub fn is_dead(e: &zbus::Error) -> bool {
    use std::io::ErrorKind::*;
    match e {
        zbus::Error::InputOutput(io) => matches!(io.kind(), BrokenPipe | ConnectionReset | ConnectionAborted | UnexpectedEof | NotConnected),
        _ => false,
    }
}
