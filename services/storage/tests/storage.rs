//! The storage manager (SA 5003) and daemon (SA 5002) through the real
//! samgr, on a fake sysfs tree and image files standing in for block
//! devices (mounting needs a real kernel device: the QEMU test,
//! `tests/systest/src/bin/storage-test.rs`, covers it). Every bound is
//! attacked from threads running as uids 2000 and 2001, the identity
//! samgr takes from the kernel.

mod common;

use accord_safwk::typed::Listener;
use accord_safwk::Samgr;
use accord_storage::{StorageDaemonProxy, StorageError, StorageManagerProxy, VolumeListener, VolumeState, VolumeType, DAEMON_ID, ID};
use common::{as_uid, join, manager, sa_err, setup, Seen, DEADLINE};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn volumes_format_and_refusals_through_samgr() {
    let w = setup().await;
    let m = manager(&w.sock).await;
    let vols = m.volumes().await.unwrap();
    let ids: Vec<(&str, VolumeType, VolumeState)> = vols.iter().map(|v| (v.id.as_str(), v.kind, v.state)).collect();
    assert_eq!(ids, [("data", VolumeType::Emulated, VolumeState::Mounted), ("vol-253-16", VolumeType::External, VolumeState::Unmounted)], "{vols:?}");
    assert_eq!(vols[1].total_bytes, 32 << 20);
    assert!(vols[1].detail.contains("blank"), "{:?}", vols[1]);

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe(Listener::new(Seen(tx).into_remote())).await.unwrap();

    // A blank volume is not mounted; formatted, it holds vfat.
    assert!(matches!(sa_err(m.mount("vol-253-16").await), StorageError::Unsupported(e) if e.contains("format it")));
    let v = m.format("vol-253-16", "vfat").await.unwrap();
    assert_eq!((v.state, v.fs_type.as_str(), v.detail.as_str()), (VolumeState::Unmounted, "vfat", "formatted as vfat"));
    assert!(matches!(accord_storage::fs::probe(&w.dev.join("vdb")).unwrap(), accord_storage::fs::Content::Fat { .. }));
    let seen = loop {
        let (v, _) = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
        if v.fs_type == "vfat" {
            break v;
        }
    };
    assert_eq!(seen.id, "vol-253-16");
    // A regular file is no block device: the check passes, the mount
    // fails, and the volume is DAMAGED with the kernel's word.
    match sa_err(m.mount("vol-253-16").await) {
        StorageError::Failed(e) => assert!(e.contains("mounting"), "{e}"),
        e => panic!("{e:?}"),
    }
    let v = m.volumes().await.unwrap().into_iter().find(|v| v.id == "vol-253-16").unwrap();
    assert_eq!(v.state, VolumeState::Damaged);

    // What the state does not allow, and names that are not volumes.
    assert!(matches!(sa_err(m.format("data", "ext4").await), StorageError::WrongState { .. }));
    assert!(matches!(sa_err(m.mount("data").await), StorageError::WrongState { .. }));
    assert!(matches!(sa_err(m.unmount("data", false).await), StorageError::WrongState { .. }));
    assert!(matches!(sa_err(m.unmount("vol-253-16", true).await), StorageError::WrongState { .. }));
    assert!(matches!(sa_err(m.format("vol-253-16", "ntfs").await), StorageError::Unsupported(_)));
    for bad in ["vol-9-9", "../data", ""] {
        assert!(matches!(sa_err(m.mount(bad).await), StorageError::NoSuchVolume(_)), "{bad}");
    }
    // The loop device is no volume.
    assert!(!m.volumes().await.unwrap().iter().any(|v| v.device.ends_with("loop0")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uids_are_refused_what_they_may_not_do() {
    let w = setup().await;
    let before = std::fs::read(w.dev.join("vdb")).unwrap();
    // uid 2000: lists, may neither format nor mount, cannot reach the daemon.
    let r = join(as_uid(2000, &w.sock, async |s: Samgr| {
        let m = s.get_proxy::<StorageManagerProxy>(ID).await.unwrap();
        let listed = m.volumes().await.unwrap().len();
        let format = sa_err(m.format("vol-253-16", "ext4").await);
        let mount = sa_err(m.mount("vol-253-16").await);
        let daemon = s.get_proxy::<StorageDaemonProxy>(DAEMON_ID).await.is_err();
        (listed, format, mount, daemon)
    }))
    .await;
    assert_eq!(r.0, 2);
    assert!(matches!(&r.1, StorageError::PermissionDenied { uid: 2000, permission } if permission == accord_storage::PERM_FORMAT), "{:?}", r.1);
    assert!(matches!(&r.2, StorageError::PermissionDenied { uid: 2000, permission } if permission == accord_storage::PERM_MOUNT), "{:?}", r.2);
    assert!(r.3, "samgr handed uid 2000 the daemon");
    // uid 2001 reaches the daemon through samgr: the daemon refuses it.
    let r = join(as_uid(2001, &w.sock, async |s: Samgr| {
        let d = s.get_proxy::<StorageDaemonProxy>(DAEMON_ID).await.unwrap();
        (sa_err(d.volumes().await), sa_err(d.format("vol-253-16", "ext4").await))
    }))
    .await;
    for e in [r.0, r.1] {
        assert!(matches!(&e, StorageError::PermissionDenied { uid: 2001, .. }), "{e:?}");
    }
    assert_eq!(std::fs::read(w.dev.join("vdb")).unwrap(), before, "a refused format wrote to the disk");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_holds_at_most_its_share_of_subscriptions() {
    let w = setup().await;
    let r = join(as_uid(2000, &w.sock, async |s: Samgr| {
        let m = s.get_proxy::<StorageManagerProxy>(ID).await.unwrap();
        let mut ids = Vec::new();
        let mut keep = Vec::new();
        for _ in 0..accord_storage::MAX_SUBS_PER_UID {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            keep.push(rx);
            ids.push(m.subscribe(Listener::new(Seen(tx).into_remote())).await.unwrap());
        }
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        let over = sa_err(m.subscribe(Listener::new(Seen(tx).into_remote())).await);
        // Another uid's id is not ours to end; ours is, and frees a place.
        let other = m.unsubscribe(9999).await.unwrap();
        let mine = m.unsubscribe(ids[0]).await.unwrap();
        let (tx, _rx2) = tokio::sync::mpsc::unbounded_channel();
        let again = m.subscribe(Listener::new(Seen(tx).into_remote())).await.is_ok();
        (over, other, mine, again)
    }))
    .await;
    assert!(matches!(r.0, StorageError::TooMany(_)), "{:?}", r.0);
    assert!(!r.1 && r.2 && r.3, "{r:?}");
    // Root's place is its own: uid 2000's share does not touch it.
    let m = manager(&w.sock).await;
    let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe(Listener::new(Seen(tx).into_remote())).await.unwrap();
}

#[test]
fn user_directories_have_their_modes() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // One already there with a wrong mode is fixed.
    std::fs::create_dir_all(dir.path().join("service/el1/100")).unwrap();
    std::fs::set_permissions(dir.path().join("service/el1/100"), std::fs::Permissions::from_mode(0o777)).unwrap();
    accord_storage::data::prepare_user_dirs(dir.path(), 100).unwrap();
    for d in ["app/el1/100/base", "app/el1/100/database", "app/el2/100/base", "app/el2/100/database", "app/el2/100/log", "service/el1/100", "service/el2/100"] {
        let mode = std::fs::metadata(dir.path().join(d)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o711, "{d}");
    }
    // A file where a directory goes is named.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app"), "").unwrap();
    let e = accord_storage::data::prepare_user_dirs(dir.path(), 100).unwrap_err();
    assert!(e.contains("app"), "{e}");
}
