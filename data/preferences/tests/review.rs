//! Faults a review found in the preferences library, each kept as a test
//! of the public API: an observer that flushes, a reopen racing the last
//! drop, and a delete racing another process's open.
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::Duration;

use accord_preferences::*;

/// An observer that flushes (e.g. it records "last seen" in the same
/// preferences) once deadlocked the flushing thread: observers are now
/// called after the flush's turn is given back.
#[test]
fn an_observer_may_flush() {
    let d = tempfile::tempdir().unwrap();
    let p = Preferences::open(d.path(), "p").unwrap();
    let weak = Arc::downgrade(&p);
    p.observe(move |key| {
        if key == "a" {
            if let Some(p) = weak.upgrade() {
                p.put("seen", 1).unwrap();
                let _ = p.flush();
            }
        }
    });
    p.put("a", 1).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let p2 = p.clone();
    std::thread::spawn(move || {
        let _ = tx.send(p2.flush().is_ok());
    });
    assert!(rx.recv_timeout(Duration::from_secs(10)).is_ok(), "flush still running after 10 s (self-deadlock)");
}

/// Opening in one thread while another drops the last handle: the open
/// once failed with Locked (the dying instance still held its flock
/// although no other process had the file); it now waits for the drop.
#[test]
fn a_reopen_racing_the_last_drop_is_never_locked() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().to_owned();
    let locked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let ths: Vec<_> = (0..2)
        .map(|_| {
            let (dir, locked) = (dir.clone(), locked.clone());
            std::thread::spawn(move || {
                for _ in 0..20_000 {
                    match Preferences::open(&dir, "p") {
                        Ok(p) => drop(p),
                        Err(PrefsError::Locked(_)) => {
                            locked.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!("{e}"),
                    }
                }
            })
        })
        .collect();
    for t in ths {
        t.join().unwrap();
    }
    assert_eq!(locked.load(std::sync::atomic::Ordering::Relaxed), 0, "opens refused as Locked within one process");
}

/// `delete` once unlinked the lock file it held: a process that opened the
/// lock file just before (open() = open(lock) then flock(lock)) flocked the
/// unlinked inode afterwards, and a third process created a new lock file:
/// two owners of one preferences file. The lock file now stays. The
/// "second process" is simulated by doing open()'s two steps by hand.
#[test]
fn a_delete_never_makes_two_owners() {
    let d = tempfile::tempdir().unwrap();
    let p = Preferences::open(d.path(), "p").unwrap();
    p.put("a", 1).unwrap();
    p.flush().unwrap();
    drop(p);
    // Process B, inside open(): the lock file is opened ...
    let b_lock = std::fs::OpenOptions::new().read(true).write(true).open(d.path().join("p.prefs.lock")).unwrap();
    // ... process A deletes the preferences ...
    delete(d.path(), "p").unwrap();
    // ... B's flock succeeds (on the unlinked inode): B owns "p".
    let b_owns = unsafe { libc::flock(b_lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    // Process C opens "p": a new lock file, flock succeeds.
    let c = Preferences::open(d.path(), "p");
    assert!(!(b_owns && c.is_ok()), "two owners: B (flock on the deleted lock file) and C ({:?})", c.as_ref().map(|_| "open"));
}
