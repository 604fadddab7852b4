//! Accord's SA framework: OpenHarmony's safwk (system ability framework)
//! and the parts of samgr that SA processes share with it.
//!
//! Owns what a system ability is and how it meets samgr: the D-Bus
//! interfaces between samgr, SA host processes and clients; the SDK to
//! write an SA ([`SystemAbility`], [`RemoteObject`], [`SaHost`],
//! OpenHarmony's `LocalAbilityManager`) and to use one ([`Samgr`],
//! [`get`], OpenHarmony's `SystemAbilityManagerClient`); SA profiles
//! ([`profile`], OpenHarmony's `/system/profile/*.json`) and samgr's
//! access policy ([`policy`]). The wire under it (connections, verified
//! identity, blobs, the remote-object codec) is `accord-ipc`; samgr
//! itself (the registry) is `accord-samgr`, which builds on this crate.
//!
//! A client never talks to an SA through samgr: `GetSystemAbility` makes a
//! socket pair, hands one end to the SA's host (with the caller's identity
//! as samgr verified it from SO_PEERCRED) and returns the other end to the
//! client, which then speaks D-Bus directly to the SA.
//!
//! - Writing an SA: implement [`SystemAbility`] and [`run`] it (or
//!   [`SaHost::publish`] several); see `samgr/safwk/examples/counter_sa.rs`.
//! - Using an SA: [`get`]`::<FooProxy>(id)` gives a typed proxy
//!   ([`Remote`]) whose [`Remote::died`] tells when the SA went away.
//! - Errors: every call returns [`SaError`]; [`SaError::is_dead`] says
//!   the SA (or samgr) is gone and getting it again is the way on.

mod budgeted;
mod client;
mod host;
pub mod policy;
pub mod profile;
pub mod subscribers;
pub mod typed;

pub use accord_safwk_macros::interface;

pub use accord_ipc::{is_dead, lock, Identity};
pub use client::{get, get_proxy, Remote, SaEvent, Samgr};
pub use host::{
    run, run_profile, run_profile_at, run_remote, serve_remote, set_host_policy, Caller, HostLimits, Maker, Published, RemoteObject, SaHost, SystemAbility,
    MAX_HOST_CONNECTIONS, MAX_HOST_CONNECTIONS_PER_UID,
};

use accord_ipc::remote::RemoteError;
use accord_ipc::IpcError;
use thiserror::Error;

/// Why an SA failed to start: whatever its `on_start` or maker says.
pub type StartError = Box<dyn std::error::Error + Send + Sync>;

/// What can go wrong between a process and samgr or an SA.
#[derive(Debug, Error)]
pub enum SaError {
    /// The connection (to samgr, to a host, to an SA) failed, or the
    /// other side answered with a D-Bus error (refusals by samgr's policy
    /// come as `org.freedesktop.DBus.Error.AccessDenied`).
    #[error(transparent)]
    Ipc(#[from] IpcError),
    /// A call on the remote-object fast path failed.
    #[error(transparent)]
    Remote(#[from] RemoteError),
    /// samgr reported that loading SA `id` failed, with its host's reason.
    #[error("SA {id} failed to load: {reason}")]
    LoadFailed { id: u32, reason: String },
    /// The SA's `on_start` (or its maker) refused to start it.
    #[error("SA {id} failed to start: {source}")]
    StartFailed {
        id: u32,
        #[source]
        source: StartError,
    },
    /// This process has no maker for SA `id` (not in its profile, or not
    /// in the binary).
    #[error("this process cannot host SA {0}")]
    NotHosted(u32),
    /// A `depend` of SA `id`'s profile was not registered in time.
    #[error("SA {id} needs SA {dep}, which did not appear within {} ms", waited.as_millis())]
    DependencyMissing { id: u32, dep: u32, waited: std::time::Duration },
    /// The connection to samgr is gone (and could not be dialled again).
    #[error("samgr is not connected")]
    SamgrGone,
}

impl SaError {
    /// The SA (or samgr) is gone: its process died, it was unloaded, or
    /// the connection was hung up. Get the SA again to go on.
    pub fn is_dead(&self) -> bool {
        match self {
            SaError::Ipc(e) => e.is_dead(),
            SaError::Remote(e) => e.is_dead(),
            SaError::SamgrGone => true,
            _ => false,
        }
    }

    /// The D-Bus error name of a refusal or failure the other side
    /// answered with (e.g. `org.freedesktop.DBus.Error.AccessDenied`).
    pub fn dbus_name(&self) -> Option<String> {
        match self {
            SaError::Ipc(IpcError::Zbus(zbus::Error::MethodError(name, _, _))) => Some(name.to_string()),
            SaError::Ipc(IpcError::Zbus(zbus::Error::FDO(e))) => Some(zbus::DBusError::name(e.as_ref()).to_string()),
            SaError::Remote(RemoteError::Remote { name, .. }) => Some(name.clone()),
            _ => None,
        }
    }
}

impl From<zbus::Error> for SaError {
    fn from(e: zbus::Error) -> SaError {
        SaError::Ipc(IpcError::Zbus(e))
    }
}

impl From<std::io::Error> for SaError {
    fn from(e: std::io::Error) -> SaError {
        SaError::Ipc(IpcError::Io(e))
    }
}

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

/// For the SA tools (`power-shell`, `kv`, `storage`, `snapshot_display`):
/// runs `f` with samgr reached at [`samgr_socket`], on a one-thread
/// runtime made for it. Not reaching samgr is an error naming the socket.
///
/// # Errors
/// The runtime could not be made, samgr could not be reached, or `f`'s.
pub fn with_samgr<T, E: From<std::io::Error>>(f: impl AsyncFnOnce(Samgr) -> Result<T, E>) -> Result<T, E> {
    let socket = samgr_socket();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let samgr = Samgr::connect(&socket).await.map_err(|e| std::io::Error::other(format!("cannot reach samgr at {}: {e}", socket.display())))?;
        f(samgr).await
    })
}

/// For the SA tools: the command `parsed` from the command line, or, when
/// it is not one, exits with status 2 after `tool: why` (when there is a
/// why) and `usage` on stderr.
pub fn command_or_usage<C>(tool: &str, usage: &str, parsed: Result<C, String>) -> C {
    match parsed {
        Ok(cmd) => cmd,
        Err(why) => {
            if !why.is_empty() {
                eprintln!("{tool}: {why}");
            }
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// "Gone" survives every layer an error crosses on its way to the
    /// caller; refusals and failures to start are not "gone".
    #[test]
    fn is_dead_survives_the_crate_boundaries() {
        let io = |k| std::io::Error::new(k, "x");
        let zbus_dead = zbus::Error::InputOutput(Arc::new(io(std::io::ErrorKind::BrokenPipe)));
        assert!(SaError::from(zbus_dead).is_dead());
        assert!(SaError::from(io(std::io::ErrorKind::ConnectionReset)).is_dead());
        assert!(SaError::from(RemoteError::Dead).is_dead());
        assert!(SaError::SamgrGone.is_dead());
        let denied = zbus::Error::FDO(Box::new(zbus::fdo::Error::AccessDenied("uid 2000 may not get SA 1".into())));
        let denied = SaError::from(denied);
        assert!(!denied.is_dead());
        assert_eq!(denied.dbus_name().as_deref(), Some("org.freedesktop.DBus.Error.AccessDenied"));
        assert!(!SaError::LoadFailed { id: 1, reason: "no".into() }.is_dead());
        assert!(!SaError::StartFailed { id: 1, source: "no".into() }.is_dead());
        assert!(!SaError::from(io(std::io::ErrorKind::PermissionDenied)).is_dead());
    }
}
