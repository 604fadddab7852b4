use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;

use super::*;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

#[test]
fn typed_values_survive_a_reopen() {
    let d = dir();
    {
        let p = Preferences::open(d.path(), "settings").unwrap();
        p.put("brightness", 80).unwrap();
        p.put("ratio", 0.5).unwrap();
        p.put("dark", true).unwrap();
        p.put("name", "accord").unwrap();
        p.put("langs", vec!["en".to_owned(), "zh".to_owned()]).unwrap();
        p.put("blob", vec![0u8, 1, 255]).unwrap();
        assert_eq!(p.pending(), 6);
        p.flush().unwrap();
        assert_eq!(p.pending(), 0);
    }
    let p = Preferences::open(d.path(), "settings").unwrap();
    assert_eq!(p.get_int("brightness", 0), 80);
    assert_eq!(p.get_float("ratio", 0.0), 0.5);
    assert!(p.get_bool("dark", false));
    assert_eq!(p.get_string("name", ""), "accord");
    assert_eq!(p.get("langs"), Some(Value::StringArray(vec!["en".into(), "zh".into()])));
    assert_eq!(p.get("blob"), Some(Value::Bytes(vec![0, 1, 255])));
    // Another type than asked for gives the default, as OpenHarmony's get.
    assert_eq!(p.get_int("name", -1), -1);
    assert!(p.has("dark") && !p.has("nope"));
    assert!(p.recovered().is_none());
}

#[test]
fn unflushed_changes_are_not_on_disk() {
    let d = dir();
    {
        let p = Preferences::open(d.path(), "a").unwrap();
        p.put("kept", 1).unwrap();
        p.flush().unwrap();
        p.put("lost", 2).unwrap();
        p.delete("kept");
    }
    let p = Preferences::open(d.path(), "a").unwrap();
    assert_eq!(p.get_int("kept", 0), 1);
    assert!(!p.has("lost"));
}

#[test]
fn one_file_is_one_instance_in_a_process() {
    let d = dir();
    let a = Preferences::open(d.path(), "shared").unwrap();
    let b = Preferences::open(d.path(), "shared").unwrap();
    assert!(Arc::ptr_eq(&a, &b));
    a.put("k", 1).unwrap();
    assert_eq!(b.get_int("k", 0), 1);
    assert!(matches!(delete(d.path(), "shared"), Err(PrefsError::Locked(_))));
}

#[test]
fn delete_and_clear() {
    let d = dir();
    {
        let p = Preferences::open(d.path(), "x").unwrap();
        p.put("a", 1).unwrap();
        p.put("b", 2).unwrap();
        p.flush().unwrap();
        p.put("a", 3).unwrap();
        p.flush().unwrap();
        p.clear();
        assert!(p.all().is_empty());
        p.flush().unwrap();
    }
    assert!(d.path().join("x.prefs.bak").exists());
    assert!(Preferences::open(d.path(), "x").unwrap().all().is_empty());
    delete(d.path(), "x").unwrap();
    let left: Vec<_> = fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left, ["x.prefs.lock"], "only the lock file stays");
}

#[test]
fn observers_hear_each_flushed_key_once() {
    let d = dir();
    let p = Preferences::open(d.path(), "obs").unwrap();
    let heard = Arc::new(Mutex::new(Vec::new()));
    let h = heard.clone();
    let id = p.observe(move |k| h.lock().unwrap().push(k.to_owned()));
    p.put("a", 1).unwrap();
    p.put("a", 2).unwrap();
    p.put("b", 1).unwrap();
    p.put("b", 1).unwrap();
    assert!(heard.lock().unwrap().is_empty(), "nothing is told before the flush");
    p.flush().unwrap();
    assert_eq!(*heard.lock().unwrap(), ["a", "b"]);
    p.put("b", 1).unwrap(); // the same value: no change
    p.flush().unwrap();
    assert_eq!(heard.lock().unwrap().len(), 2);
    assert!(p.unobserve(id));
    p.delete("a");
    p.flush().unwrap();
    assert_eq!(heard.lock().unwrap().len(), 2);
    assert!(!p.unobserve(id));
}

#[test]
fn limits_are_named_errors() {
    let d = dir();
    let p = Preferences::open(d.path(), "lim").unwrap();
    assert!(matches!(p.put("", 1), Err(PrefsError::EmptyKey)));
    assert!(matches!(p.put(&"k".repeat(MAX_KEY + 1), 1), Err(PrefsError::KeyTooLong(1025))));
    p.put(&"k".repeat(MAX_KEY), 1).unwrap();
    let e = p.put("big", vec![0u8; MAX_VALUE + 1]).unwrap_err();
    assert!(e.to_string().contains("\"big\""), "{e}");
    assert!(matches!(Preferences::open(d.path(), "../x"), Err(PrefsError::InvalidName(_))));
    assert!(matches!(Preferences::open(d.path(), ".hidden"), Err(PrefsError::InvalidName(_))));
}

fn flushed(d: &Path, name: &str, versions: &[i64]) {
    let p = Preferences::open(d, name).unwrap();
    for v in versions {
        p.put("v", *v).unwrap();
        p.flush().unwrap();
    }
}

#[test]
fn a_damaged_file_falls_back_to_its_backup_with_a_warning() {
    let d = dir();
    flushed(d.path(), "p", &[1, 2]);
    let main = d.path().join("p.prefs");
    let mut bytes = fs::read(&main).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&main, &bytes).unwrap();
    {
        let p = Preferences::open(d.path(), "p").unwrap();
        assert_eq!(p.get_int("v", 0), 1, "the backup is the version before");
        let why = p.recovered().unwrap();
        assert!(why.contains("checksum") && why.contains("p.prefs.bak"), "{why}");
        // The next flush must not make the damaged file the backup.
        p.put("v", 3).unwrap();
        p.flush().unwrap();
        assert_eq!(load(&d.path().join("p.prefs.bak")).unwrap().unwrap()["v"], Value::Int(1));
    }
    let p = Preferences::open(d.path(), "p").unwrap();
    assert_eq!(p.get_int("v", 0), 3);
    assert!(p.recovered().is_none());
}

#[test]
fn a_torn_file_with_a_torn_backup_is_an_error_never_a_reset() {
    let d = dir();
    flushed(d.path(), "t", &[1, 2]);
    for f in ["t.prefs", "t.prefs.bak"] {
        let path = d.path().join(f);
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
    }
    let e = Preferences::open(d.path(), "t").err().expect("refused");
    let text = e.to_string();
    assert!(matches!(e, PrefsError::Corrupted { .. }) && text.contains("torn") && text.contains("t.prefs"), "{text}");
    // Left in place for whoever looks at it.
    assert!(d.path().join("t.prefs").exists());
}

#[test]
fn a_missing_file_with_a_backup_loads_the_backup() {
    let d = dir();
    flushed(d.path(), "m", &[1, 2]);
    fs::remove_file(d.path().join("m.prefs")).unwrap();
    let p = Preferences::open(d.path(), "m").unwrap();
    assert_eq!(p.get_int("v", 0), 1);
    assert!(p.recovered().unwrap().contains("missing"));
}

#[test]
fn a_failed_flush_keeps_the_changes_and_the_old_file() {
    let d = dir();
    let p = Preferences::open(d.path(), "f").unwrap();
    p.put("a", 1).unwrap();
    p.flush().unwrap();
    p.put("a", 2).unwrap();
    // The temporary file cannot be created: a directory is in its way.
    fs::create_dir(d.path().join("f.prefs.tmp")).unwrap();
    let e = p.flush().unwrap_err();
    assert!(e.to_string().contains("f.prefs.tmp"), "{e}");
    assert_eq!(p.pending(), 1);
    assert_eq!(load(&d.path().join("f.prefs")).unwrap().unwrap()["a"], Value::Int(1));
    fs::remove_dir(d.path().join("f.prefs.tmp")).unwrap();
    p.flush().unwrap();
    assert_eq!(load(&d.path().join("f.prefs")).unwrap().unwrap()["a"], Value::Int(2));
}

#[test]
fn another_process_is_refused_while_one_has_it_open() {
    let d = dir();
    let _p = Preferences::open(d.path(), "owned").unwrap();
    // A second open file description stands for another process: flock
    // locks belong to it, not to the process.
    let lock = File::open(d.path().join("owned.prefs.lock")).unwrap();
    // SAFETY: flock on a descriptor the test owns.
    assert_ne!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    // Forget this process's instance, as another process has none: its
    // open must then find the lock taken.
    let p = _p.path().to_owned();
    open_files().remove(&p);
    assert!(matches!(Preferences::open(d.path(), "owned"), Err(PrefsError::Locked(_))));
}

#[test]
fn concurrent_flushes_end_with_the_last_state() {
    let d = dir();
    let p = Preferences::open(d.path(), "c").unwrap();
    let heard = Arc::new(AtomicUsize::new(0));
    let h = heard.clone();
    p.observe(move |_| {
        h.fetch_add(1, Ordering::Relaxed);
    });
    std::thread::scope(|s| {
        for t in 0..4 {
            let p = &p;
            s.spawn(move || {
                for i in 0..25 {
                    p.put(&format!("t{t}"), i).unwrap();
                    p.flush().unwrap();
                }
            });
        }
    });
    assert_eq!(p.pending(), 0);
    let on_disk = load(&d.path().join("c.prefs")).unwrap().unwrap();
    assert_eq!(on_disk, p.all());
    assert!((1..=100).contains(&heard.load(Ordering::Relaxed)));
    for t in 0..4 {
        assert_eq!(on_disk[&format!("t{t}")], Value::Int(24));
    }
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Int),
        any::<f64>().prop_filter("NaN is not equal to itself", |f| !f.is_nan()).prop_map(Value::Float),
        any::<bool>().prop_map(Value::Bool),
        ".{0,40}".prop_map(Value::String),
        prop::collection::vec(".{0,8}", 0..5).prop_map(Value::StringArray),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Value::Bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_map_round_trips(map in prop::collection::btree_map(".{1,16}", value(), 0..12)) {
        let bytes = encode(&map).unwrap();
        prop_assert_eq!(decode(&bytes).unwrap(), map);
    }

    #[test]
    fn damaged_files_are_errors_never_panics(
        map in prop::collection::btree_map(".{1,16}", value(), 1..6),
        cut in any::<prop::sample::Index>(),
        flip in any::<(prop::sample::Index, u8)>(),
    ) {
        let bytes = encode(&map).unwrap();
        let n = cut.index(bytes.len());
        prop_assert!(decode(&bytes[..n]).is_err());
        let mut bad = bytes.clone();
        let (at, x) = flip;
        let i = at.index(bad.len());
        bad[i] ^= x.max(1);
        prop_assert!(decode(&bad).is_err(), "a flipped byte at {} was not noticed", i);
    }
}
