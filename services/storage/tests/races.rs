//! The volume table stays true under races the review found: changes and
//! replies arriving on two connections, a table read racing a change,
//! changes lost to a slow subscriber, a daemon restarted with volumes
//! mounted, a daemon that cannot tell which disk is the data disk. A
//! stand-in daemon (SA 5002) stages the interleavings the real one allows
//! but a test cannot time; the rest run the real daemon and manager.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_safwk::typed::Listener;
use accord_safwk::{Caller, Identity, SaHost};
use accord_storage::daemon::{Config, Daemon};
use accord_storage::data::DataOutcome;
use accord_storage::manager::Manager;
use accord_storage::{StorageDaemon, StorageError, StorageManager, Volume, VolumeListener, VolumeListenerProxy, VolumeState, VolumeType, DAEMON_ID, ID};
use common::{manager, samgr, setup, Seen, World, DEADLINE};

fn root() -> Caller {
    Caller::new(Identity { uid: 0, gid: 0, pid: 1 })
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(t) = f().await {
            return t;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// A stand-in for the daemon (SA 5002), to drive the manager through an
// interleaving the real daemon allows but a test cannot time.

struct Fake {
    rt: tokio::runtime::Handle,
    /// What the daemon's table holds now.
    truth: Mutex<Vec<Volume>>,
    listener: Mutex<Option<VolumeListenerProxy>>,
    reads: AtomicUsize,
    /// A change that lands while the table is being read (after the
    /// snapshot, before the reply).
    during_read: Mutex<Option<Volume>>,
    /// The change number, as the daemon's.
    seq: AtomicU64,
}

impl Fake {
    /// `v` as the daemon's next change.
    fn stamp(&self, mut v: Volume) -> Volume {
        v.seq = self.seq.fetch_add(1, Ordering::SeqCst) + 1;
        v
    }

    fn listener(&self) -> VolumeListenerProxy {
        accord_safwk::lock(&self.listener).clone().expect("the manager subscribed")
    }
}

fn vol(id: &str, state: VolumeState, path: &str) -> Volume {
    Volume {
        id: id.into(),
        kind: VolumeType::External,
        state,
        device: "/dev/sdq".into(),
        fs_type: "ext4".into(),
        fs_uuid: String::new(),
        label: String::new(),
        path: path.into(),
        total_bytes: 0,
        free_bytes: 0,
        detail: String::new(),
        seq: 0,
    }
}

struct FakeSa(Arc<Fake>);

impl std::ops::Deref for FakeSa {
    type Target = Fake;
    fn deref(&self) -> &Fake {
        &self.0
    }
}

impl StorageDaemon for FakeSa {
    fn volumes(&self, caller: &Caller) -> Result<Vec<Volume>, StorageError> {
        Ok(self.table(caller)?.1)
    }

    fn table(&self, _caller: &Caller) -> Result<(u64, Vec<Volume>), StorageError> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        let snapshot = (self.seq.load(Ordering::SeqCst), accord_safwk::lock(&self.truth).clone());
        let change = accord_safwk::lock(&self.during_read).take();
        if let Some(v) = change {
            // As `Daemon::update` does: the table changes and the
            // subscriber is told, on its own connection.
            let v = self.stamp(v);
            let mut t = accord_safwk::lock(&self.truth);
            t.retain(|x| x.id != v.id);
            t.push(v.clone());
            drop(t);
            self.rt.block_on(self.listener().on_volume_change(v, 0)).unwrap();
        }
        Ok(snapshot)
    }

    /// As `Daemon::do_mount` does: the table's update (notified) and the
    /// reply. Between them the uevent thread handles the stick being
    /// pulled out (`Daemon::removed`: BAD_REMOVAL, out of the table,
    /// notified).
    fn mount(&self, _caller: &Caller, id: &str) -> Result<Volume, StorageError> {
        let l = self.listener();
        let mounted = self.stamp(vol(id, VolumeState::Mounted, "/nonexistent/mnt"));
        self.rt.block_on(l.on_volume_change(mounted.clone(), 0)).unwrap();
        accord_safwk::lock(&self.truth).retain(|v| v.id != id);
        let gone = self.stamp(vol(id, VolumeState::BadRemoval, ""));
        self.rt.block_on(l.on_volume_change(gone, 0)).unwrap();
        Ok(mounted)
    }

    fn unmount(&self, _caller: &Caller, id: &str, _eject: bool) -> Result<Volume, StorageError> {
        Err(StorageError::NoSuchVolume(id.into()))
    }

    fn format(&self, _caller: &Caller, id: &str, _fs_type: &str) -> Result<Volume, StorageError> {
        Err(StorageError::NoSuchVolume(id.into()))
    }

    fn subscribe(&self, _caller: &Caller, listener: Listener<VolumeListenerProxy>) -> Result<(), StorageError> {
        let p = self.rt.block_on(listener.connect()).map_err(|e| StorageError::Failed(e.to_string()))?;
        *accord_safwk::lock(&self.listener) = Some(p);
        Ok(())
    }
}

async fn fake_world(truth: Vec<Volume>) -> (World, Arc<Fake>) {
    fake_world_racing(truth, None).await
}

/// [`fake_world`] whose manager reads the whole table every 100 ms.
async fn fake_world_reconciling(truth: Vec<Volume>) -> (World, Arc<Fake>) {
    fake_world_with(truth, None, Duration::from_millis(100)).await
}

async fn fake_world_racing(truth: Vec<Volume>, during_read: Option<Volume>) -> (World, Arc<Fake>) {
    fake_world_with(truth, during_read, accord_storage::manager::RECONCILE).await
}

/// [`fake_world`] whose first table read races `during_read`, and whose
/// manager reads the whole table every `reconcile`.
async fn fake_world_with(truth: Vec<Volume>, during_read: Option<Volume>, reconcile: Duration) -> (World, Arc<Fake>) {
    let dir = tempfile::tempdir().unwrap();
    let sock = samgr(dir.path());
    let fake = Arc::new(Fake {
        rt: tokio::runtime::Handle::current(),
        truth: Mutex::new(Vec::new()),
        listener: Mutex::default(),
        reads: AtomicUsize::new(0),
        during_read: Mutex::new(during_read),
        seq: AtomicU64::new(0),
    });
    let stamped: Vec<Volume> = truth.into_iter().map(|v| fake.stamp(v)).collect();
    *accord_safwk::lock(&fake.truth) = stamped;
    let h1 = SaHost::connect(&sock).await.unwrap();
    h1.publish_remote(DAEMON_ID, FakeSa(fake.clone()).into_remote(), None).await.unwrap();
    let manager = Manager::start_with(sock.clone(), dir.path().join("no_class_block"), reconcile).unwrap();
    let h2 = SaHost::connect(&sock).await.unwrap();
    h2.publish_remote(ID, manager.into_remote(), None).await.unwrap();
    (World { dev: dir.path().to_owned(), _dir: dir, sock, _hosts: vec![h1, h2] }, fake)
}

/// ARCHITECTURE.md: "A volume that goes away during a check or mount is
/// not brought back". The manager's `op` puts the daemon's reply into its
/// table after the daemon's notifications (another connection) may already
/// have said the volume is gone: the manager lists a MOUNTED ghost, for
/// every client, until that id changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_volume_removed_during_its_mount_is_not_brought_back() {
    let (w, _fake) = fake_world(vec![vol("vol-8-16", VolumeState::Unmounted, "")]).await;
    let m = manager(&w.sock).await;
    assert_eq!(m.volumes().await.unwrap().len(), 1);
    let _ = m.mount("vol-8-16").await.unwrap();
    let vols = m.volumes().await.unwrap();
    assert!(vols.iter().all(|v| v.id != "vol-8-16"), "the manager lists a volume that was pulled out: {vols:?}");
}

/// The same race at linking (the daemon just started and is mounting
/// what it found, while the manager links): a change applied from the
/// notification is overwritten by the older table read (manager.rs:203-208
/// clears and refills), and the manager shows CHECKING for a MOUNTED
/// volume until that volume changes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_read_does_not_overwrite_a_newer_change() {
    let (w, fake) = fake_world_racing(vec![vol("vol-8-16", VolumeState::Checking, "")], Some(vol("vol-8-16", VolumeState::Mounted, "/nonexistent/mnt"))).await;
    let m = manager(&w.sock).await;
    let vols = m.volumes().await.unwrap();
    assert!(accord_safwk::lock(&fake.during_read).is_none(), "the race was not staged");
    let truth = accord_safwk::lock(&fake.truth).clone();
    assert_eq!(vols.iter().map(|v| v.state).collect::<Vec<_>>(), truth.iter().map(|v| v.state).collect::<Vec<_>>(), "manager: {vols:?}");
}

/// The daemon's queue to the manager holds the OLDER changes; when it
/// overflows, the NEWER ones are dropped and `lost` rides on the next one
/// popped, i.e. the oldest queued (daemon.rs:511-512). The manager
/// re-reads the table on it (manager.rs:74-77), then applies the older
/// queued changes over the fresh table. A volume whose last change
/// (BAD_REMOVAL) was dropped stays in the manager's table for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_loss_older_queued_changes_are_ignored() {
    let (w, fake) = fake_world(Vec::new()).await;
    let m = manager(&w.sock).await;
    assert!(m.volumes().await.unwrap().is_empty());
    let l = fake.listener();
    // The stick appeared and is being mounted; the manager fell behind:
    // queued [appeared, CHECKING, MOUNTED], dropped [BAD_REMOVAL] (the
    // truth: it is gone).
    let appeared = fake.stamp(vol("vol-8-16", VolumeState::Unmounted, ""));
    let checking = fake.stamp(vol("vol-8-16", VolumeState::Checking, ""));
    let mounted = fake.stamp(vol("vol-8-16", VolumeState::Mounted, "/nonexistent/mnt"));
    let _pulled = fake.stamp(vol("vol-8-16", VolumeState::BadRemoval, "")); // dropped
    l.on_volume_change(appeared, 0).await.unwrap();
    let reads = fake.reads.load(Ordering::SeqCst);
    l.on_volume_change(checking, 1).await.unwrap();
    // The manager reads the table again (as it should) ...
    until("the manager's re-read", async || (fake.reads.load(Ordering::SeqCst) > reads).then_some(())).await;
    until("the manager's fresh table", async || m.volumes().await.unwrap().is_empty().then_some(())).await;
    // ... and then the rest of the daemon's queue, older than what was lost.
    l.on_volume_change(mounted, 0).await.unwrap();
    let vols = m.volumes().await.unwrap();
    assert!(vols.is_empty(), "after the re-read the manager applied a change older than the lost one: {vols:?}");
}

/// VolumeListener doc: "`lost`: changes dropped before this one ... when
/// not 0, read the volumes again". The manager's subscriber queue gives
/// `lost` to the OLDEST queued change (manager.rs:283-288), so a client
/// that does exactly that reads the truth and then receives 31 older
/// changes: it ends with a stale volume. Real daemon and manager, root
/// formatting a volume 40 times while a subscriber is slow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_rereads_on_lost_ends_current() {
    const ID_: &str = "vol-253-16";
    let w = setup().await;
    let m = manager(&w.sock).await;
    assert_eq!(m.volumes().await.unwrap().len(), 2);

    struct Slow {
        out: tokio::sync::mpsc::UnboundedSender<(Volume, u32)>,
        gate: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
    }
    impl VolumeListener for Slow {
        fn on_volume_change(&self, volume: Volume, lost: u32) {
            let _ = self.out.send((volume, lost));
            let gate = accord_safwk::lock(&self.gate).take();
            if let Some(g) = gate {
                let _ = g.recv();
            }
        }
    }
    let (gate_tx, gate_rx) = std::sync::mpsc::channel();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe(Listener::new(Slow { out: tx, gate: Mutex::new(Some(gate_rx)) }.into_remote())).await.unwrap();
    // A second, quick subscriber: when it has seen the last change, the
    // slow one's queue has been offered it too (same loop, before).
    let (ftx, mut frx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe(Listener::new(Seen(ftx).into_remote())).await.unwrap();

    let first = m.format(ID_, "vfat").await.unwrap().fs_uuid;
    let (v, _) = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
    assert_eq!(v.fs_uuid, first);
    // The slow subscriber is now inside its first call.
    let mut uuids = Vec::new();
    for _ in 0..40 {
        uuids.push(m.format(ID_, "vfat").await.unwrap().fs_uuid);
    }
    let last = uuids.last().unwrap().clone();
    loop {
        let (v, _) = tokio::time::timeout(DEADLINE, frx.recv()).await.unwrap().unwrap();
        if v.fs_uuid == last {
            break;
        }
    }
    gate_tx.send(()).unwrap();

    // The client, as the doc tells it: newer changes only; on a loss,
    // read again.
    let mut view = first;
    let mut view_seq = 0;
    let mut got = 1;
    let mut lost_total = 0;
    let mut lost_on = None;
    // 1 + MAX_PENDING changes reach it (the first, then the queue); a
    // queue that kept the newest would end with the last one.
    while got < 1 + accord_storage::MAX_PENDING {
        let (v, lost) = tokio::time::timeout(DEADLINE, rx.recv()).await.unwrap().unwrap();
        got += 1;
        if v.seq > view_seq {
            view = v.fs_uuid.clone();
            view_seq = v.seq;
        }
        let newest = v.fs_uuid == last;
        if lost > 0 {
            lost_total += lost;
            lost_on = uuids.iter().position(|u| *u == v.fs_uuid);
            let now = m.volumes().await.unwrap().into_iter().find(|v| v.id == ID_).unwrap();
            if now.seq > view_seq {
                view = now.fs_uuid;
                view_seq = now.seq;
            }
        }
        if newest {
            break;
        }
    }
    assert!(lost_total > 0, "the slow subscriber's queue did not overflow ({got} changes)");
    let truth = m.volumes().await.unwrap().into_iter().find(|v| v.id == ID_).unwrap().fs_uuid;
    assert_eq!(truth, last);
    assert_eq!(
        view,
        truth,
        "a client that re-read on lost={lost_total} (which rode on format #{} of 40, older than the {lost_total} dropped) ended with a stale volume",
        lost_on.map_or(0, |i| i + 1)
    );
}

// ---------------------------------------------------------------------------
// Real mounts (ext4 on a loop device; the daemon sees it as `vdc`).

struct LoopDev {
    dev: String,
    targets: Vec<PathBuf>,
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        for t in &self.targets {
            while nix::mount::umount2(t, nix::mount::MntFlags::MNT_DETACH).is_ok() {}
        }
        let _ = std::process::Command::new("losetup").args(["-d", &self.dev]).status();
    }
}

fn loop_ext4(dir: &Path) -> LoopDev {
    let img = dir.join("stick.img");
    std::fs::File::create(&img).unwrap().set_len(32 << 20).unwrap();
    assert!(std::process::Command::new("/sbin/mke2fs").args(["-q", "-F", "-t", "ext4"]).arg(&img).status().unwrap().success());
    let out = std::process::Command::new("losetup").args(["-f", "--show"]).arg(&img).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    LoopDev { dev: String::from_utf8(out.stdout).unwrap().trim().to_owned(), targets: Vec::new() }
}

fn mounted_on(target: &Path) -> usize {
    let t = target.display().to_string();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.split(' ').nth(4) == Some(t.as_str())).count()
}

async fn settled(d: &Daemon, id: &str) -> Volume {
    until("the volume's mount on arrival", async || {
        d.list().into_iter().find(|v| v.id == id).filter(|v| !matches!(v.state, VolumeState::Unmounted | VolumeState::Checking))
    })
    .await
}

/// The daemon is restarted (it crashed; the manager links again when it
/// comes back) while an external volume is mounted: the new daemon adopts
/// the mount as MOUNTED without checking the mounted device again, and it
/// can be unmounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_daemon_adopts_a_mounted_volume() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let mut lo = loop_ext4(dir.path());
    let rdev = std::fs::metadata(&lo.dev).unwrap().rdev();
    let (maj, min) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
    let cb = dir.path().join("class_block");
    let devd = dir.path().join("dev");
    std::fs::create_dir_all(cb.join("vdc")).unwrap();
    std::fs::create_dir_all(&devd).unwrap();
    std::fs::write(cb.join("vdc/dev"), format!("{maj}:{min}\n")).unwrap();
    std::fs::write(cb.join("vdc/size"), format!("{}\n", (32u64 << 20) / 512)).unwrap();
    nix::sys::stat::mknod(&devd.join("vdc"), nix::sys::stat::SFlag::S_IFBLK, nix::sys::stat::Mode::from_bits_truncate(0o600), rdev).unwrap();
    let ext = dir.path().join("external");
    let id = format!("vol-{maj}-{min}");
    lo.targets.push(ext.join(&id));
    let state = dir.path().join("data.json");
    let outcome = DataOutcome {
        device: "/nonexistent/vda".into(),
        mount_point: "/nonexistent".into(),
        state: VolumeState::Mounted,
        uuid: String::new(),
        detail: String::new(),
        check_ms: 0,
        total_ms: 0,
    };
    std::fs::write(&state, serde_json::to_vec(&outcome).unwrap()).unwrap();
    let cfg = Config { class_block: cb, dev_dir: devd, external_root: ext.clone(), data_state: state, uevents: false, ..Config::default() };
    let d1 = Daemon::start(cfg.clone()).unwrap();
    let v = settled(&d1, &id).await;
    assert_eq!(v.state, VolumeState::Mounted, "{v:?}");
    assert_eq!(mounted_on(&ext.join(&id)), 1);
    drop(d1);

    let d2 = Daemon::start(cfg).unwrap();
    let v = settled(&d2, &id).await;
    assert_eq!(v.state, VolumeState::Mounted, "the restarted daemon says {v:?}");
    assert!(v.detail.contains("found mounted"), "{v:?}");
    assert_eq!(mounted_on(&ext.join(&id)), 1, "mounted twice");
    // Mounted: neither checked, mounted again nor formatted.
    assert!(matches!(StorageDaemon::mount(&d2, &root(), &id), Err(StorageError::WrongState { .. })));
    assert!(matches!(StorageDaemon::format(&d2, &root(), &id, "vfat"), Err(StorageError::WrongState { .. })));
    let v = StorageDaemon::unmount(&d2, &root(), &id, true).unwrap();
    assert_eq!(v.state, VolumeState::Unmounted);
    assert_eq!(mounted_on(&ext.join(&id)), 0);
}

/// Without a readable boot outcome (data.json missing or torn) the daemon
/// cannot tell the data disk from a stick: it lists what it finds but
/// mounts and formats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_data_json_nothing_is_mounted_or_formatted() {
    let dir = tempfile::tempdir().unwrap();
    let cb = dir.path().join("class_block");
    let dev = dir.path().join("dev");
    std::fs::create_dir_all(cb.join("vda")).unwrap();
    std::fs::create_dir_all(&dev).unwrap();
    std::fs::write(cb.join("vda/dev"), "253:0\n").unwrap();
    std::fs::write(cb.join("vda/size"), format!("{}\n", (64u64 << 20) / 512)).unwrap();
    std::fs::File::create(dev.join("vda")).unwrap().set_len(64 << 20).unwrap();
    let state = dir.path().join("data.json");
    std::fs::write(&state, b"{\"device\": \"/dev/vd").unwrap(); // torn write
    let cfg = Config { class_block: cb, dev_dir: dev, external_root: dir.path().join("external"), data_state: state, uevents: false, ..Config::default() };
    let before = std::fs::read(dir.path().join("dev/vda")).unwrap();
    let d = Daemon::start(cfg).unwrap();
    let vols = d.list();
    assert!(vols.iter().all(|v| v.state == VolumeState::Unmounted && v.kind == VolumeType::External), "{vols:?}");
    for r in [StorageDaemon::format(&d, &root(), "vol-253-0", "vfat"), StorageDaemon::mount(&d, &root(), "vol-253-0")] {
        match r {
            Err(StorageError::Failed(e)) => assert!(e.contains("data disk"), "{e}"),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(std::fs::read(dir.path().join("dev/vda")).unwrap(), before, "the disk was written");
}

/// A change whose notification never came (and no loss was counted: the
/// daemon's delivery to the manager failed while both live) still reaches
/// the manager's table, and its subscribers, by the periodic read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_never_notified_still_arrives() {
    let (w, fake) = fake_world_reconciling(vec![vol("vol-8-16", VolumeState::Unmounted, "")]).await;
    let m = manager(&w.sock).await;
    assert_eq!(m.volumes().await.unwrap()[0].state, VolumeState::Unmounted);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    m.subscribe(Listener::new(Seen(tx).into_remote())).await.unwrap();
    // The daemon's table changes; nobody is told.
    let mounted = fake.stamp(vol("vol-8-16", VolumeState::Mounted, "/nonexistent/mnt"));
    *accord_safwk::lock(&fake.truth) = vec![mounted];
    let (v, _) = tokio::time::timeout(DEADLINE, rx.recv()).await.expect("the subscriber was told").unwrap();
    assert_eq!((v.id.as_str(), v.state), ("vol-8-16", VolumeState::Mounted));
    until("the manager's table", async || (m.volumes().await.unwrap()[0].state == VolumeState::Mounted).then_some(())).await;
}
