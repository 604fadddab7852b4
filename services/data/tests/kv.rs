//! The data service (SA 1301) through the real samgr: every method, the
//! limits as clear errors, isolation between uids (attacked from threads
//! running as uids 2000 and 2001, the identity samgr takes from the
//! kernel), a restart keeping every acknowledged write, and a damaged
//! store that is named while the others go on serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use accord_data::{KvDataServiceProxy, KvError, KvObserver, KvObserverProxy, KvService, ID};
use accord_safwk::typed::{Blob, CallError, Listener, RemoteError};
use accord_safwk::{SaHost, Samgr};
use serde_bytes::ByteBuf;

const DEADLINE: Duration = Duration::from_secs(30);

const POLICY: &str = r#"{"rules": [{"ids": "1301", "register": {"uids": [0]}, "get": {"uids": [0, 2000, 2001]}}]}"#;

/// samgr on a socket any uid may reach, the data service published in
/// this process with its stores under `root`.
async fn setup(root: &Path) -> (tempfile::TempDir, PathBuf, SaHost) {
    setup_with(root, accord_data::DEFAULT_QUOTA).await
}

/// [`setup`] with a share of the disk of `quota` bytes per uid.
async fn setup_with(root: &Path, quota: u64) -> (tempfile::TempDir, PathBuf, SaHost) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let policy = accord_safwk::policy::Policy::parse(POLICY, "test policy").unwrap();
    tokio::spawn(accord_samgr::serve(listener, accord_samgr::Registry::new(policy, Vec::new(), Arc::new(accord_samgr::InitStarter))));
    let host = publish(&sock, root, quota).await;
    (dir, sock, host)
}

async fn publish(sock: &Path, root: &Path, quota: u64) -> SaHost {
    use accord_data::KvDataService;
    let host = SaHost::connect(sock).await.unwrap();
    host.publish_remote(ID, KvService::new(root, "test-device").unwrap().with_quota(quota).into_remote(), None).await.unwrap();
    host
}

async fn kv(sock: &Path) -> KvDataServiceProxy {
    Samgr::connect(sock).await.unwrap().get_proxy::<KvDataServiceProxy>(ID).await.unwrap()
}

fn blob(v: &[u8]) -> Blob {
    Blob::new(v.to_vec()).unwrap()
}

async fn get(k: &KvDataServiceProxy, store: &str, key: &str) -> Result<Vec<u8>, CallError<KvError>> {
    Ok(k.get(store, key).await?.into_bytes().unwrap())
}

/// Runs `f` on a thread of its own whose credentials are `uid`/`uid`
/// (raw system calls: only that thread changes), on a runtime of its own.
fn as_uid<T: Send + 'static>(uid: u32, sock: &Path, f: impl AsyncFnOnce(KvDataServiceProxy) -> T + Send + 'static) -> std::thread::JoinHandle<T> {
    let sock = sock.to_owned();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { f(kv(&sock).await).await })
    })
}

async fn join<T: Send + 'static>(h: std::thread::JoinHandle<T>) -> T {
    tokio::time::timeout(DEADLINE, tokio::task::spawn_blocking(move || h.join().unwrap())).await.expect("the uid's thread ended").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_and_every_limit_through_samgr() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let k = kv(&sock).await;

    assert!(matches!(k.get("notes", "a").await, Err(CallError::Sa(KvError::NoSuchStore(_)))), "a read creates nothing");
    k.put("notes", "a", blob(b"1")).await.unwrap();
    k.put("notes", "a", blob(b"2")).await.unwrap();
    assert_eq!(get(&k, "notes", "a").await.unwrap(), b"2");
    assert!(matches!(get(&k, "notes", "zz").await, Err(CallError::Sa(KvError::NotFound(key))) if key == "zz"));
    let batch: Vec<(String, ByteBuf)> = (0..600).map(|i| (format!("item/{i:04}"), ByteBuf::from(vec![b'x'; 10]))).collect();
    k.put_batch("notes", batch).await.unwrap();
    // Pages, in key order, each after the last key of the one before.
    let (mut after, mut seen) = (String::new(), Vec::new());
    loop {
        let page = k.entries("notes", "item/", &after, 256).await.unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 256);
        after = last.key.clone();
        seen.extend(page.into_iter().map(|e| {
            assert_eq!((e.origin.as_str(), e.value.len()), ("test-device", 10));
            assert!(e.mtime_ms > 0);
            e.key
        }));
    }
    assert_eq!(seen, (0..600).map(|i| format!("item/{i:04}")).collect::<Vec<_>>());
    assert!(k.delete("notes", "a").await.unwrap());
    assert!(!k.delete("notes", "a").await.unwrap());
    assert_eq!(k.delete_batch("notes", vec!["item/0000".into(), "item/9999".into()]).await.unwrap(), 1);
    let changes = k.changes("notes", 0, 10_000).await.unwrap();
    assert_eq!(changes.len(), 2 + 600 + 1 + 1);
    assert!(changes.last().unwrap().deleted && changes.last().unwrap().key == "item/0000");
    assert_eq!(k.changes("notes", changes[600].seq, 10).await.unwrap()[0].seq, changes[601].seq, "read from where a sync stopped");

    // A value above 1 MiB travels in a sealed memfd; 4 MiB is the limit.
    let big: Vec<u8> = (0..4u32 << 20).map(|i| i as u8).collect();
    k.put("notes", "big", blob(&big)).await.unwrap();
    assert_eq!(get(&k, "notes", "big").await.unwrap(), big);
    let mut too_big = big.clone();
    too_big.push(0);
    assert!(matches!(k.put("notes", "big", blob(&too_big)).await, Err(CallError::Sa(KvError::ValueTooBig(n))) if n == 4 * 1024 * 1024 + 1));
    assert!(matches!(k.put("notes", &"k".repeat(1025), blob(b"")).await, Err(CallError::Sa(KvError::KeyTooLong(1025)))));
    assert!(matches!(k.put("notes", "", blob(b"")).await, Err(CallError::Sa(KvError::InvalidArgument(_)))));
    for bad in ["../x", "a/b", "", ".hidden", "x".repeat(129).as_str()] {
        assert!(matches!(k.put(bad, "k", blob(b"v")).await, Err(CallError::Sa(KvError::InvalidStoreName(_)))), "store name {bad:?}");
    }
    assert!(std::fs::read_dir(root.path()).unwrap().all(|e| e.unwrap().file_name() == "0"), "nothing written outside the uid's directory");

    // A key that is not UTF-8 (the wire carries a str as bytes): a clear
    // error naming the argument, and the connection goes on.
    let mut req = Vec::new();
    accord_safwk::typed::encode_request(&("notes", serde_bytes::Bytes::new(b"\xff\xfekey")), &mut req).unwrap();
    match k.remote().send_request(KvDataServiceProxy::CODE_GET, &req).await {
        Err(RemoteError::Remote { name, message }) => {
            assert!(name.ends_with("InvalidArgs") && message.contains("key"), "{name}: {message}")
        }
        other => panic!("want InvalidArgs, got {other:?}"),
    }
    assert_eq!(get(&k, "notes", "item/0001").await.unwrap(), b"xxxxxxxxxx");

    assert_eq!(k.stores().await.unwrap(), ["notes"]);
    assert!(k.delete_store("notes").await.unwrap());
    assert!(k.stores().await.unwrap().is_empty());
    assert!(matches!(k.get("notes", "item/0001").await, Err(CallError::Sa(KvError::NoSuchStore(_)))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_uid_never_reaches_another_s_stores() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    join(as_uid(2000, &sock, async |k| {
        k.put("private", "secret", blob(b"mine")).await.unwrap();
        assert_eq!(k.stores().await.unwrap(), ["private"]);
    }))
    .await;
    join(as_uid(2001, &sock, async |k| {
        assert!(matches!(k.get("private", "secret").await, Err(CallError::Sa(KvError::NoSuchStore(_)))), "its own namespace");
        assert!(k.stores().await.unwrap().is_empty());
        for name in ["2000:private", "0:private"] {
            assert!(matches!(k.get(name, "secret").await, Err(CallError::Sa(KvError::PermissionDenied(2001)))), "{name}");
            assert!(matches!(k.put(name, "secret", blob(b"theirs")).await, Err(CallError::Sa(KvError::PermissionDenied(2001)))), "{name}");
            assert!(matches!(k.delete_store(name).await, Err(CallError::Sa(KvError::PermissionDenied(2001)))), "{name}");
        }
        for name in ["../2000/private", "..", "2000/private"] {
            assert!(matches!(k.get(name, "secret").await, Err(CallError::Sa(KvError::InvalidStoreName(_)))), "{name}");
        }
        k.put("private", "secret", blob(b"other")).await.unwrap();
        // Its share of stores.
        for i in 1..accord_data::MAX_STORES_PER_UID {
            k.put(&format!("s{i}"), "k", blob(b"v")).await.unwrap();
        }
        assert!(matches!(k.put("one-more", "k", blob(b"v")).await, Err(CallError::Sa(KvError::TooManyStores(2001)))));
        k.put("s1", "k2", blob(b"v")).await.expect("its own stores still take writes");
    }))
    .await;
    // Root names any uid's store; each uid kept its own value.
    let k = kv(&sock).await;
    assert_eq!(get(&k, "2000:private", "secret").await.unwrap(), b"mine");
    assert_eq!(get(&k, "2001:private", "secret").await.unwrap(), b"other");
    assert!(matches!(k.get("private", "secret").await, Err(CallError::Sa(KvError::NoSuchStore(_)))), "root's own namespace is apart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_what_was_acknowledged_and_a_damaged_store_is_named() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, host) = setup(root.path()).await;
    let k = kv(&sock).await;
    for i in 0..50 {
        k.put("kept", &format!("k{i}"), blob(format!("v{i}").as_bytes())).await.unwrap();
    }
    k.put("doomed", "k", blob(b"v")).await.unwrap();
    drop(k);
    drop(host);
    // Withdrawn; its files stay. One of them is damaged meanwhile.
    let samgr = Samgr::connect(&sock).await.unwrap();
    tokio::time::timeout(DEADLINE, async {
        while samgr.check(ID).await.unwrap() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("SA 1301 withdrawn");
    // The old service lets go of its files when its last connection's
    // thread ends: SQLite removes a store's log when it closes it (and
    // checkpoints first, which would write over the damage below).
    tokio::time::timeout(DEADLINE, async {
        while ["kept", "doomed"].iter().any(|s| root.path().join(format!("0/{s}.db-wal")).exists()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the old service closed its stores");
    let doomed = root.path().join("0/doomed.db");
    std::fs::write(&doomed, vec![0x5a; 8192]).unwrap();
    let _host = publish(&sock, root.path(), accord_data::DEFAULT_QUOTA).await;
    let k = kv(&sock).await;
    for i in 0..50 {
        assert_eq!(get(&k, "kept", &format!("k{i}")).await.unwrap(), format!("v{i}").as_bytes());
    }
    match k.get("doomed", "k").await {
        Err(CallError::Sa(KvError::Corrupted { store, why })) => assert!(store == "doomed" && why.contains("doomed.db"), "{why}"),
        other => panic!("want Corrupted, got {other:?}"),
    }
    assert!(std::fs::metadata(&doomed).unwrap().len() > 0, "the damaged file is kept for repair");
    k.put("kept", "after", blob(b"yes")).await.expect("the other stores go on serving");
    assert_eq!(get(&k, "kept", "after").await.unwrap(), b"yes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_s_share_of_the_disk_holds_and_deleting_gives_it_back() {
    let root = tempfile::tempdir().unwrap();
    // A 2 MiB share per uid.
    let (_dir, sock, _host) = setup_with(root.path(), 2 << 20).await;
    join(as_uid(2000, &sock, async |k| {
        let v = vec![7u8; 256 << 10];
        let mut written = 0;
        let refused = loop {
            match k.put("fill", &format!("k{written}"), blob(&v)).await {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
            assert!(written < 64, "never refused");
        };
        assert!(matches!(&refused, CallError::Sa(KvError::QuotaExceeded { uid: 2000, quota, .. }) if *quota == 2 << 20), "{refused:?}");
        assert!(written >= 4, "only {written} values of 256 KiB under a 2 MiB share");
        assert!(
            matches!(k.put("another", "k", blob(b"v")).await, Err(CallError::Sa(KvError::QuotaExceeded { .. }))),
            "the share is the uid's, not the store's"
        );
        assert_eq!(get(&k, "fill", "k0").await.unwrap(), v, "reads go on");
        assert!(k.delete_store("fill").await.unwrap());
        k.put("another", "k", blob(b"v")).await.expect("room again");
    }))
    .await;
    // Sixteen connections writing at once pass the share by one value
    // at most: writes of a uid take turns.
    let dir = root.path().join("2001");
    let sock2 = sock.clone();
    join(as_uid(2001, &sock, async move |_| {
        let mut writers = Vec::new();
        for t in 0..16 {
            let k = kv(&sock2).await;
            writers.push(tokio::spawn(async move {
                let v = vec![t as u8; 256 << 10];
                for i in 0.. {
                    match k.put(&format!("s{t}"), &format!("k{i}"), blob(&v)).await {
                        Ok(()) => {}
                        Err(CallError::Sa(KvError::QuotaExceeded { .. })) => return,
                        Err(e) => panic!("{e}"),
                    }
                }
            }));
        }
        for w in writers {
            w.await.unwrap();
        }
    }))
    .await;
    let used: u64 = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().metadata().unwrap().len()).sum();
    assert!(used <= (2 << 20) + (1 << 20), "uid 2001 holds {used} bytes under a 2 MiB share");
    // Root has no share.
    let k = kv(&sock).await;
    for i in 0..12 {
        k.put("big", &format!("k{i}"), blob(&vec![1u8; 256 << 10])).await.unwrap();
    }
}

/// A store deleted while another connection writes to it: every write
/// that started after a delete returned is readable at the end (no
/// handle keeps writing to removed files).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_after_a_store_is_deleted_are_kept() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let (writer, deleter) = (kv(&sock).await, kv(&sock).await);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let w = tokio::spawn({
        let stop = stop.clone();
        async move {
            let mut log = Vec::new();
            let mut i = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Acquire) {
                let started = std::time::Instant::now();
                writer.put("race", &format!("k{i}"), blob(b"v")).await.unwrap();
                log.push((i, started));
                i += 1;
            }
            (writer, log)
        }
    });
    let mut last_delete = std::time::Instant::now();
    for _ in 0..40 {
        deleter.delete_store("race").await.unwrap();
        last_delete = std::time::Instant::now();
        tokio::task::yield_now().await;
    }
    // A few more writes after the last delete, then stop.
    tokio::time::timeout(DEADLINE, async {
        loop {
            let n = deleter.entries("race", "", "", 100).await.map(|e| e.len()).unwrap_or(0);
            if n >= 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("writes after the last delete");
    stop.store(true, std::sync::atomic::Ordering::Release);
    let (writer, log) = w.await.unwrap();
    let after: Vec<u32> = log.iter().filter(|(_, t)| *t > last_delete).map(|(i, _)| *i).collect();
    assert!(!after.is_empty());
    for i in after {
        assert_eq!(get(&writer, "race", &format!("k{i}")).await.unwrap(), b"v", "k{i}, written after the last delete");
    }
}

/// What an observer heard: (store, keys, lost) per call.
type Heard = tokio::sync::mpsc::UnboundedReceiver<(String, Vec<String>, u32)>;

struct Collect(tokio::sync::mpsc::UnboundedSender<(String, Vec<String>, u32)>);

impl KvObserver for Collect {
    fn on_change(&self, store: String, keys: Vec<String>, lost: u32) {
        let _ = self.0.send((store, keys, lost));
    }
}

fn observer() -> (Listener<KvObserverProxy>, Heard) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (Listener::new(Collect(tx).into_remote()), rx)
}

async fn next(heard: &mut Heard) -> (String, Vec<String>, u32) {
    tokio::time::timeout(DEADLINE, heard.recv()).await.expect("a notification in time").expect("the observer is served")
}

/// The number of observers the service's dump reports.
async fn observers_in_dump(sock: &Path) -> usize {
    let dump = Samgr::connect(sock).await.unwrap().dump_sa(ID, Vec::new()).await.unwrap();
    let first = dump.lines().next().unwrap_or_default();
    let n = first.strip_suffix(" observers").and_then(|h| h.rsplit(' ').next()).and_then(|n| n.parse().ok());
    n.unwrap_or_else(|| panic!("no observer count in {dump:?}"))
}

async fn until_observers(sock: &Path, n: usize) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        let now = observers_in_dump(sock).await;
        if now == n {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{now} observers, waited for {n}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An observer in another connection hears each committed write's keys,
/// in commit order, only for its store, only keys that changed; it stops
/// hearing when unsubscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_hear_committed_keys_in_order() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let k = kv(&sock).await;
    let (l, mut heard) = observer();
    let id = k.subscribe("watched", l).await.unwrap();
    k.put("watched", "k1", blob(b"1")).await.unwrap();
    k.put_batch("watched", vec![("k2".into(), ByteBuf::from(b"2".to_vec())), ("k3".into(), ByteBuf::from(b"3".to_vec()))]).await.unwrap();
    k.put("other", "x", blob(b"x")).await.unwrap();
    assert!(k.delete("watched", "k1").await.unwrap());
    assert!(!k.delete("watched", "nope").await.unwrap());
    assert_eq!(k.delete_batch("watched", vec!["k2".into(), "nope".into()]).await.unwrap(), 1);
    k.put("watched", "end", blob(b"e")).await.unwrap();
    let w = |keys: &[&str]| ("watched".to_owned(), keys.iter().map(|s| s.to_string()).collect::<Vec<_>>(), 0u32);
    assert_eq!(next(&mut heard).await, w(&["k1"]));
    assert_eq!(next(&mut heard).await, w(&["k2", "k3"]));
    assert_eq!(next(&mut heard).await, w(&["k1"]), "the other store's write and the delete of a missing key are not changes here");
    assert_eq!(next(&mut heard).await, w(&["k2"]));
    assert_eq!(next(&mut heard).await, w(&["end"]));
    assert_eq!(observers_in_dump(&sock).await, 1);
    assert!(k.unsubscribe(id).await.unwrap());
    assert!(!k.unsubscribe(id).await.unwrap());
    until_observers(&sock, 0).await;
    k.put("watched", "after", blob(b"a")).await.unwrap();
    // The subscription's connection is closed (the object's channel ends)
    // and nothing arrived for the write after it.
    assert_eq!(tokio::time::timeout(DEADLINE, heard.recv()).await.expect("the channel ends in time"), None);
}

/// An observer that does not answer costs the writers nothing: every write
/// is acknowledged while it is stuck, what it missed is counted, and it
/// hears again once it answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_observer_never_holds_writes_back() {
    struct Stuck(std::sync::Mutex<std::sync::mpsc::Receiver<()>>, tokio::sync::mpsc::UnboundedSender<(Vec<String>, u32)>);
    impl KvObserver for Stuck {
        fn on_change(&self, _store: String, keys: Vec<String>, lost: u32) {
            // The first call waits to be let go.
            let _ = self.0.lock().unwrap().recv();
            let _ = self.1.send((keys, lost));
        }
    }
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let k = kv(&sock).await;
    let (go, gate) = std::sync::mpsc::channel();
    let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
    k.subscribe("s", Listener::new(Stuck(std::sync::Mutex::new(gate), tx).into_remote())).await.unwrap();
    let writes = accord_data::MAX_PENDING_NOTES * 3;
    for i in 0..writes {
        k.put("s", &format!("k{i}"), blob(b"v")).await.unwrap();
    }
    // Let every call through. A write made while the queue is still full
    // is dropped too, so writes go on (last0, last1, ...) until one is
    // heard: it carries the count of every one dropped before it.
    drop(go);
    let (mut total, mut seen, mut lost) = (writes, 0, 0);
    'writing: for j in 0.. {
        assert!(j < 150, "no write heard after {j} tries");
        k.put("s", &format!("last{j}"), blob(b"v")).await.unwrap();
        total += 1;
        // Only paces the next write; nothing depends on how long it is.
        while let Ok(note) = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await {
            let (keys, l) = note.expect("the observer is served");
            seen += 1;
            lost += l as usize;
            if keys == [format!("last{j}")] {
                break 'writing;
            }
        }
    }
    assert_eq!(seen + lost, total, "each write heard or counted as lost");
    assert!(lost > 0, "{writes} writes queued behind a stuck observer, none dropped");
}

/// Observers are bounded per store and per uid (attacked as uid 2000), and
/// end with the subscriber's process (here its runtime).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observers_are_bounded_and_end_with_their_subscriber() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    join(as_uid(2000, &sock, async |k| {
        let mut keep = Vec::new();
        for i in 0..accord_data::MAX_OBSERVERS_PER_STORE {
            let (l, h) = observer();
            k.subscribe("s", l).await.unwrap_or_else(|e| panic!("observer {i}: {e:?}"));
            keep.push(h);
        }
        let (l, _h) = observer();
        assert!(matches!(k.subscribe("s", l).await, Err(CallError::Sa(KvError::TooManyObservers(_)))));
        let per_store = accord_data::MAX_OBSERVERS_PER_STORE;
        for i in per_store..accord_data::MAX_OBSERVERS_PER_UID {
            let (l, h) = observer();
            k.subscribe(&format!("t{}", i / per_store), l).await.unwrap_or_else(|e| panic!("observer {i}: {e:?}"));
            keep.push(h);
        }
        let (l, _h) = observer();
        let e = k.subscribe("u", l).await;
        assert!(matches!(&e, Err(CallError::Sa(KvError::TooManyObservers(w))) if w.contains("uid 2000")), "{e:?}");
        // Another uid's store is not its to watch.
        let (l, _h) = observer();
        assert!(matches!(k.subscribe("0:s", l).await, Err(CallError::Sa(KvError::PermissionDenied(2000)))));
    }))
    .await;
    // The uid's runtime is gone with its thread: so are its observers.
    until_observers(&sock, 0).await;
}

/// What a uid's stuck observers make the service hold is bounded for the
/// uid as a whole (attacked as uid 2000: eight observers that never
/// answer, then batches of long keys): only about
/// `MAX_PENDING_BYTES_PER_UID` of notifications wait; the rest are counted
/// as lost, and the writes are all acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_uid_s_stuck_observers_hold_a_bounded_queue() {
    struct Stuck(usize, Arc<std::sync::Mutex<std::sync::mpsc::Receiver<()>>>, tokio::sync::mpsc::UnboundedSender<(usize, usize, u32)>);
    impl KvObserver for Stuck {
        fn on_change(&self, _store: String, keys: Vec<String>, lost: u32) {
            let _ = self.1.lock().unwrap().recv();
            let _ = self.2.send((self.0, keys.len(), lost));
        }
    }
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let (heard_total, lost_total, batches) = join(as_uid(2000, &sock, async |k| {
        let (go, gate) = std::sync::mpsc::channel();
        let gate = Arc::new(std::sync::Mutex::new(gate));
        let (tx, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let observers = accord_data::MAX_OBSERVERS_PER_STORE;
        for o in 0..observers {
            k.subscribe("s", Listener::new(Stuck(o, gate.clone(), tx.clone()).into_remote())).await.unwrap();
        }
        // 100 keys of 1,000 bytes a batch: ~100 KB a notification.
        let batches = 40;
        for b in 0..batches {
            let entries = (0..100).map(|i| (format!("{b:03}-{i:03}-{}", "k".repeat(990)), ByteBuf::from(vec![1u8]))).collect();
            k.put_batch("s", entries).await.unwrap();
        }
        drop(go);
        // One last small write per try until every observer heard one
        // (each then carries what it lost).
        let (mut heard_total, mut lost_total) = (0usize, 0usize);
        let mut done = std::collections::HashSet::new();
        'writing: for j in 0.. {
            assert!(j < 150, "not every observer heard a write");
            k.put("s", &format!("last{j}"), blob(b"v")).await.unwrap();
            while let Ok(note) = tokio::time::timeout(Duration::from_millis(200), heard.recv()).await {
                let (o, keys, lost) = note.expect("served");
                lost_total += lost as usize;
                if keys == 100 {
                    heard_total += 1;
                } else {
                    done.insert(o);
                    if done.len() == observers {
                        break 'writing;
                    }
                }
            }
        }
        (heard_total, lost_total, batches)
    }))
    .await;
    // A note being delivered counts as much as a queued one: the uid's
    // share holds them all.
    let key_len = format!("{:03}-{:03}-{}", 0, 0, "k".repeat(990)).len();
    let note = 64 + 100 * (key_len + 48);
    let bound = accord_data::MAX_PENDING_BYTES_PER_UID / note;
    assert!(heard_total <= bound, "{heard_total} big notifications were kept for the uid's stuck observers, bound {bound}");
    assert!(heard_total + lost_total >= batches * accord_data::MAX_OBSERVERS_PER_STORE, "{heard_total} heard + {lost_total} lost");
}

/// A backup is the store at one moment; a restore brings it back as
/// changes (the change log and observers see them); damaged or missing
/// backups and bad names are named errors that leave the store alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_and_restore_through_samgr() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let k = kv(&sock).await;
    k.put("notes", "a", blob(b"1")).await.unwrap();
    k.put("notes", "b", blob(b"2")).await.unwrap();
    k.backup("notes", "b1").await.unwrap();
    k.put("notes", "a", blob(b"9")).await.unwrap();
    k.put("notes", "c", blob(b"3")).await.unwrap();
    assert!(k.delete("notes", "b").await.unwrap());
    let (l, mut heard) = observer();
    k.subscribe("notes", l).await.unwrap();
    let seq = k.changes("notes", 0, 1000).await.unwrap().last().unwrap().seq;
    assert_eq!(k.restore("notes", "b1").await.unwrap(), 3);
    assert_eq!(get(&k, "notes", "a").await.unwrap(), b"1");
    assert_eq!(get(&k, "notes", "b").await.unwrap(), b"2");
    assert!(matches!(get(&k, "notes", "c").await, Err(CallError::Sa(KvError::NotFound(_)))));
    let (_, mut keys, _) = next(&mut heard).await;
    keys.sort();
    assert_eq!(keys, ["a", "b", "c"], "one notification with every key the restore changed");
    let changed: Vec<(String, bool)> = k.changes("notes", seq, 100).await.unwrap().into_iter().map(|c| (c.key, c.deleted)).collect();
    assert_eq!(changed.len(), 3, "{changed:?}");
    assert!(changed.contains(&("c".into(), true)) && changed.contains(&("b".into(), false)));
    // Restoring the same backup again changes nothing.
    assert_eq!(k.restore("notes", "b1").await.unwrap(), 0);

    assert_eq!(k.backups("notes").await.unwrap(), ["b1"]);
    for i in 2..=accord_data::MAX_BACKUPS_PER_STORE {
        k.backup("notes", &format!("b{i}")).await.unwrap();
    }
    assert!(matches!(k.backup("notes", "one-more").await, Err(CallError::Sa(KvError::TooManyBackups(_)))));
    k.backup("notes", "b1").await.expect("replacing a backup is not one more");
    assert!(matches!(k.backup("notes", "../x").await, Err(CallError::Sa(KvError::InvalidArgument(w))) if w.contains("backup name")));
    assert!(matches!(k.restore("notes", "nope").await, Err(CallError::Sa(KvError::NoSuchBackup(_)))));
    assert!(matches!(k.backup("absent", "x").await, Err(CallError::Sa(KvError::NoSuchStore(_)))));

    // A damaged backup is named; the store keeps its entries.
    let file = root.path().join("0").join("notes~b2.bak");
    std::fs::write(&file, vec![0x42u8; 8192]).unwrap();
    let e = k.restore("notes", "b2").await.unwrap_err();
    assert!(matches!(&e, CallError::Sa(KvError::Corrupted { why, .. }) if why.contains("notes~b2.bak")), "{e:?}");
    assert_eq!(get(&k, "notes", "a").await.unwrap(), b"1");
    assert!(k.delete_backup("notes", "b2").await.unwrap());
    assert!(!k.delete_backup("notes", "b2").await.unwrap());
    assert_eq!(k.backups("notes").await.unwrap().len(), accord_data::MAX_BACKUPS_PER_STORE - 1);

    // Another uid can neither list nor restore these.
    join(as_uid(2000, &sock, async |k| {
        assert!(matches!(k.backups("0:notes").await, Err(CallError::Sa(KvError::PermissionDenied(2000)))));
        assert!(matches!(k.restore("0:notes", "b1").await, Err(CallError::Sa(KvError::PermissionDenied(2000)))));
        assert!(k.backups("notes").await.unwrap().is_empty(), "its own namespace");
    }))
    .await;
}

/// Result sets: a snapshot of the entries under a prefix as they were
/// when it was opened, paged by position whatever is written meanwhile;
/// closed, it is gone; a uid holds at most 8 and never reads another's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn result_sets_are_snapshots_and_bounded() {
    let root = tempfile::tempdir().unwrap();
    let (_dir, sock, _host) = setup(root.path()).await;
    let k = kv(&sock).await;
    let batch: Vec<(String, ByteBuf)> = (0..300).map(|i| (format!("k{i:03}"), ByteBuf::from(format!("v{i}").into_bytes()))).collect();
    k.put_batch("rs", batch).await.unwrap();
    k.put("rs", "other", blob(b"x")).await.unwrap();
    let (id, count) = k.result_set("rs", "k").await.unwrap();
    assert_eq!(count, 300);
    // Written after the snapshot: not in it.
    k.put("rs", "k999", blob(b"new")).await.unwrap();
    assert!(k.delete("rs", "k000").await.unwrap());
    let mut keys = Vec::new();
    loop {
        let page = k.result_set_entries(id, keys.len() as u64, 128).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 128);
        keys.extend(page.into_iter().map(|e| e.key));
    }
    let want: Vec<String> = (0..300).map(|i| format!("k{i:03}")).collect();
    assert_eq!(keys, want);
    // A new one sees the store as it is now.
    let (id2, count2) = k.result_set("rs", "k").await.unwrap();
    assert_eq!(count2, 300);
    assert_eq!(k.result_set_entries(id2, 299, 10).await.unwrap()[0].key, "k999");
    assert!(k.close_result_set(id).await.unwrap());
    assert!(!k.close_result_set(id).await.unwrap());
    assert!(matches!(k.result_set_entries(id, 0, 1).await, Err(CallError::Sa(KvError::NoSuchResultSet(i))) if i == id));
    assert!(matches!(k.result_set("nope", "").await, Err(CallError::Sa(KvError::NoSuchStore(_)))));
    assert!(matches!(k.result_set_entries(id2, 0, 0).await, Err(CallError::Sa(KvError::InvalidArgument(_)))));

    // uid 2000: its own store, at most 8 open, root's id is not its own.
    let r = join(as_uid(2000, &sock, async move |k: KvDataServiceProxy| {
        k.put("mine", "a", blob(b"1")).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..accord_data::MAX_RESULT_SETS_PER_UID {
            ids.push(k.result_set("mine", "").await.unwrap().0);
        }
        let over = k.result_set("mine", "").await;
        let theirs = k.result_set_entries(id2, 0, 1).await;
        let close_theirs = k.close_result_set(id2).await.unwrap();
        let freed = k.close_result_set(ids[0]).await.unwrap();
        let again = k.result_set("mine", "").await.is_ok();
        (
            matches!(over, Err(CallError::Sa(KvError::TooManyResultSets(_)))),
            matches!(theirs, Err(CallError::Sa(KvError::NoSuchResultSet(_)))),
            close_theirs,
            freed,
            again,
        )
    }))
    .await;
    assert_eq!(r, (true, true, false, true, true));
    // Root's is still open.
    assert_eq!(k.result_set_entries(id2, 0, 1).await.unwrap().len(), 1);
}

/// A result set not read for the idle time is closed (its client may be
/// gone), and the place it took is free again.
#[test]
fn an_idle_result_set_is_closed() {
    use accord_data::KvDataService;
    use accord_safwk::{Caller, Identity};
    let root = tempfile::tempdir().unwrap();
    let svc = KvService::new(root.path(), "test-device").unwrap().with_result_set_idle(Duration::from_millis(50));
    let c = Caller::new(Identity { uid: 2000, gid: 2000, pid: 1 });
    svc.put(&c, "s", "a", blob(b"1")).unwrap();
    let (id, _) = svc.result_set(&c, "s", "").unwrap();
    for _ in 1..accord_data::MAX_RESULT_SETS_PER_UID {
        svc.result_set(&c, "s", "").unwrap();
    }
    assert!(matches!(svc.result_set(&c, "s", ""), Err(KvError::TooManyResultSets(_))));
    // Longer than the idle time, whatever the machine's load.
    std::thread::sleep(Duration::from_millis(200));
    assert!(matches!(svc.result_set_entries(&c, id, 0, 1), Err(KvError::NoSuchResultSet(_))));
    // The idle ones are closed when a new one is asked for.
    svc.result_set(&c, "s", "").unwrap();
}

/// Result sets whose client went away are closed by the service's sweep
/// once idle, without anyone opening or reading another.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_closes_idle_result_sets() {
    use accord_data::KvDataService;
    use accord_safwk::{Caller, Identity};
    let root = tempfile::tempdir().unwrap();
    let svc = KvService::new(root.path(), "test-device").unwrap().with_result_set_idle(Duration::from_millis(100));
    let c = Caller::new(Identity { uid: 2000, gid: 2000, pid: 1 });
    let svc = tokio::task::spawn_blocking(move || {
        svc.put(&c, "s", "a", blob(b"1")).unwrap();
        svc.result_set(&c, "s", "").unwrap();
        svc
    })
    .await
    .unwrap();
    // (Not asserted open here: under load the sweep may already have
    // closed it, which is what is being waited for.)
    let deadline = std::time::Instant::now() + DEADLINE;
    while !svc.on_dump(&[]).contains("result sets: 0 open") {
        assert!(std::time::Instant::now() < deadline, "the idle result set was never closed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
