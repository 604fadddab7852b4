//! What several of samgr's tests share: a system ability that does
//! nothing but answer, its proxy, and a wait for a peer's hang-up.

// Each test binary uses a part of this.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use accord_safwk::{Caller, SystemAbility};

/// An SA whose interface answers `ping` with 7 and `groups` with the
/// caller's supplementary groups, as samgr told the host.
pub struct Nop;

pub struct NopIface {
    caller: Caller,
}

#[zbus::interface(name = "org.accord.test.Nop")]
impl NopIface {
    fn ping(&self) -> u32 {
        7
    }
    /// The caller's supplementary groups, as the SA was told them.
    fn groups(&self) -> Vec<u32> {
        self.caller.groups().to_vec()
    }
}

impl SystemAbility for Nop {
    type Interface = NopIface;
    const PATH: &'static str = "/org/accord/test/Nop";
    fn connect(self: &Arc<Self>, caller: Caller) -> NopIface {
        NopIface { caller }
    }
}

#[zbus::proxy(interface = "org.accord.test.Nop", default_service = "org.accord.test", default_path = "/org/accord/test/Nop")]
pub trait NopClient {
    fn ping(&self) -> zbus::Result<u32>;
    fn groups(&self) -> zbus::Result<Vec<u32>>;
}

/// Reads until EOF (or reset); false if 30 s pass first.
pub fn closed_by_peer(c: &mut UnixStream) -> bool {
    let end = Instant::now() + Duration::from_secs(30);
    c.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let mut b = vec![0u8; 64 << 10];
    while Instant::now() < end {
        match c.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut | std::io::ErrorKind::Interrupted) => {}
            Err(_) => return true,
        }
    }
    false
}

/// samgr in this process on a socket any uid may reach, under
/// `policy_json` (named `name` in messages) and `limits`.
pub fn open_samgr(policy_json: &str, name: &str, limits: accord_samgr::Limits) -> (tempfile::TempDir, std::path::PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let policy = accord_safwk::policy::Policy::parse(policy_json, name).unwrap();
    let registry = accord_samgr::Registry::new(policy, Vec::new(), Arc::new(accord_samgr::InitStarter)).with_limits(limits);
    tokio::spawn(accord_samgr::serve(listener, registry));
    (dir, sock)
}

/// This test binary as `uid` (and gid), running helper test `helper`
/// with `sock` in ACCORD_ATTACK_SOCK; the caller sets stdio and spawns.
pub fn as_uid(uid: u32, helper: &str, sock: &std::path::Path) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", helper, "--nocapture", "--test-threads=1"]).env("ACCORD_ATTACK_SOCK", sock).uid(uid).gid(uid);
    c
}

/// Waits (at most 30 s) until samgr lists exactly `want`, ids and states
/// sorted as samgr lists them; panics with `what` and the last list.
pub async fn until_listed(client: &accord_safwk::Samgr, want: &[(u32, String)], what: &str) {
    let end = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let now = client.list().await.unwrap();
        if now == want {
            return;
        }
        assert!(tokio::time::Instant::now() < end, "{what}: {now:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
