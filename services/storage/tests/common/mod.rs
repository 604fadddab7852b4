//! What the storage tests share: samgr with a test policy, a fake machine
//! (sysfs tree, image files for disks, the boot step's outcome) with the
//! real daemon and manager published, and acting as another uid.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use accord_safwk::typed::CallError;
use accord_safwk::{SaHost, Samgr};
use accord_storage::daemon::{Config, Daemon};
use accord_storage::data::DataOutcome;
use accord_storage::manager::Manager;
use accord_storage::{StorageDaemon, StorageError, StorageManager, StorageManagerProxy, Volume, VolumeListener, VolumeState, DAEMON_ID, ID};

pub const DEADLINE: Duration = Duration::from_secs(30);

/// 2000 may use the manager, not the daemon; 2001 may reach the daemon
/// through samgr (so the daemon's own check is what refuses it) and holds
/// the mount permission but not the format one.
pub const POLICY: &str = r#"{
    "rules": [
        {"ids": "5002", "register": {"uids": [0]}, "get": {"uids": [2001]}},
        {"ids": "5003", "register": {"uids": [0]}, "get": {"uids": [2000, 2001]}}
    ],
    "permissions": {"ohos.permission.MOUNT_UNMOUNT_MANAGER": {"uids": [2001]}}
}"#;

pub struct World {
    pub _dir: tempfile::TempDir,
    pub sock: PathBuf,
    pub dev: PathBuf,
    pub _hosts: Vec<SaHost>,
}

/// samgr (with [`POLICY`]) on a socket in `dir` any uid may reach.
pub fn samgr(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let sock = dir.join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let policy = accord_safwk::policy::Policy::parse(POLICY, "test policy").unwrap();
    tokio::spawn(accord_samgr::serve(listener, accord_samgr::Registry::new(policy, Vec::new(), Arc::new(accord_samgr::InitStarter))));
    sock
}

/// A fake machine: a data disk `vda` (mounted at boot, as the boot step
/// says) and a blank 32 MiB `vdb`; samgr on a socket any uid may reach;
/// the daemon and the manager published in this process.
pub async fn setup() -> World {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cb = dir.path().join("class_block");
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(&dev).unwrap();
    for (name, num, mb) in [("vda", "253:0", 64u64), ("vdb", "253:16", 32), ("loop0", "7:0", 1)] {
        std::fs::create_dir_all(cb.join(name)).unwrap();
        std::fs::write(cb.join(name).join("dev"), format!("{num}\n")).unwrap();
        std::fs::write(cb.join(name).join("size"), format!("{}\n", (mb << 20) / 512)).unwrap();
        std::fs::File::create(dev.join(name)).unwrap().set_len(mb << 20).unwrap();
    }
    let state = dir.path().join("data.json");
    let outcome = DataOutcome {
        device: dev.join("vda").display().to_string(),
        mount_point: dir.path().display().to_string(),
        state: VolumeState::Mounted,
        uuid: "0f0e0d0c-0000-4000-8000-000000000000".into(),
        detail: "checked: clean".into(),
        check_ms: 1,
        total_ms: 2,
    };
    std::fs::write(&state, serde_json::to_vec(&outcome).unwrap()).unwrap();
    let sock = samgr(dir.path());
    let cfg = Config {
        class_block: cb.clone(),
        dev_dir: dev.clone(),
        external_root: dir.path().join("external"),
        data_state: state,
        uevents: false,
        ..Config::default()
    };
    let daemon = Daemon::start(cfg).unwrap();
    let h1 = SaHost::connect(&sock).await.unwrap();
    h1.publish_remote(DAEMON_ID, daemon.into_remote(), None).await.unwrap();
    let manager = Manager::start_with(sock.clone(), cb, accord_storage::manager::RECONCILE).unwrap();
    let h2 = SaHost::connect(&sock).await.unwrap();
    h2.publish_remote(ID, manager.into_remote(), None).await.unwrap();
    World { _dir: dir, sock, dev, _hosts: vec![h1, h2] }
}

pub async fn manager(sock: &Path) -> StorageManagerProxy {
    Samgr::connect(sock).await.unwrap().get_proxy::<StorageManagerProxy>(ID).await.unwrap()
}

/// Runs `f` on a thread of its own whose credentials are `uid`/`uid`,
/// on a runtime of its own.
pub fn as_uid<T: Send + 'static>(uid: u32, sock: &Path, f: impl AsyncFnOnce(Samgr) -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let sock = sock.to_owned();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { f(Samgr::connect(&sock).await.unwrap()).await })
    })
}

pub async fn join<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    tokio::time::timeout(DEADLINE, tokio::task::spawn_blocking(move || h.join().unwrap())).await.expect("the uid's thread ended").unwrap()
}

pub fn sa_err<T: std::fmt::Debug>(r: Result<T, CallError<StorageError>>) -> StorageError {
    match r {
        Err(CallError::Sa(e)) => e,
        other => panic!("expected the SA's error, got {other:?}"),
    }
}

pub struct Seen(pub tokio::sync::mpsc::UnboundedSender<(Volume, u32)>);

impl VolumeListener for Seen {
    fn on_volume_change(&self, volume: Volume, lost: u32) {
        let _ = self.0.send((volume, lost));
    }
}
