//! User activity from the kernel's input devices (`/dev/input/event*`,
//! evdev): a key, a button, a pointer or touch movement is activity that
//! wakes the display (OpenHarmony's multimodal input tells its power
//! manager the same). The directory is looked at again when inotify says
//! a node came, went or changed its permissions (every [`RESCAN`] only
//! while the directory does not exist yet): an idle device is not woken
//! to look. A device plugged in later is watched too; one that goes away
//! (`ENODEV`) is dropped. A device that cannot be opened (permissions) is
//! named in the log once, and tried again when its node changes.

use std::collections::BTreeSet;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often a directory that does not exist yet is looked for.
pub const RESCAN: Duration = Duration::from_secs(2);
/// `struct input_event` on a 64-bit kernel: a timeval, type, code, value.
const EVENT_SIZE: usize = 24;
const EV_KEY: u16 = 1;
const EV_REL: u16 = 2;
const EV_ABS: u16 = 3;

/// Watches `dir` for ever: `count(n)` after each scan with the number of
/// devices watched, `activity()` on each read that holds a key, relative
/// or absolute event.
pub async fn watch(dir: PathBuf, count: Arc<dyn Fn(u32) + Send + Sync>, activity: Arc<dyn Fn() + Send + Sync>) {
    let open: Arc<Mutex<BTreeSet<String>>> = Arc::default();
    let mut refused: BTreeSet<String> = BTreeSet::new();
    let mut warned: BTreeSet<String> = BTreeSet::new();
    let mut changes = inotify(&dir).ok();
    loop {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !name.starts_with("event") || accord_safwk::lock(&open).contains(&name) || refused.contains(&name) {
                    continue;
                }
                match open_device(&e.path()) {
                    Ok(fd) => {
                        tracing::info!("watching {} for user activity", e.path().display());
                        accord_safwk::lock(&open).insert(name.clone());
                        let (open, activity, path) = (open.clone(), activity.clone(), e.path());
                        tokio::spawn(async move {
                            if let Err(e) = read_events(fd, &*activity).await {
                                tracing::info!("{}: {e}; no longer watched", path.display());
                            }
                            accord_safwk::lock(&open).remove(&name);
                        });
                    }
                    Err(err) => {
                        if warned.insert(name.clone()) {
                            tracing::warn!("{}: {err}: activity from it is not seen", e.path().display());
                        }
                        refused.insert(name);
                    }
                }
            }
        }
        count(accord_safwk::lock(&open).len() as u32);
        match &changes {
            Some(fd) => {
                if wait_changes(fd).await.is_err() {
                    changes = None;
                }
                // A node that changed may be readable now.
                refused.clear();
            }
            None => {
                tokio::time::sleep(RESCAN).await;
                changes = inotify(&dir).ok();
            }
        }
    }
}

/// A non-blocking inotify descriptor on `dir` for nodes that come, go or
/// change their permissions (the compositor watches `/dev/input` with it
/// too).
///
/// # Errors
/// `inotify_init1` or `inotify_add_watch` failed (`ENOENT`: no `dir` yet).
pub fn watch_dir(dir: &Path) -> std::io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: plain system calls; the descriptor is owned at once.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: a valid descriptor and C string.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), libc::IN_CREATE | libc::IN_DELETE | libc::IN_ATTRIB | libc::IN_MOVED_TO) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// [`watch_dir`], for tokio.
fn inotify(dir: &Path) -> std::io::Result<tokio::io::unix::AsyncFd<OwnedFd>> {
    let fd = watch_dir(dir)?;
    // SAFETY: the OwnedFd is ours and stays open as long as the AsyncFd.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(std::io::Error::from)
}

/// Waits for changes and reads every queued event (their contents do not
/// matter: the directory is read again).
async fn wait_changes(fd: &tokio::io::unix::AsyncFd<OwnedFd>) -> std::io::Result<()> {
    let mut buf = [0u8; 4096];
    let mut guard = fd.readable().await?;
    loop {
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n > 0 {
            continue;
        }
        let e = std::io::Error::last_os_error();
        if n < 0 && e.kind() == std::io::ErrorKind::WouldBlock {
            guard.clear_ready();
            return Ok(());
        }
        return Err(if n == 0 { std::io::Error::from(std::io::ErrorKind::UnexpectedEof) } else { e });
    }
}

fn open_device(path: &Path) -> std::io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(path)?;
    Ok(f.into())
}

/// Reads events until the device goes; calls `activity` once per read
/// that holds user input.
async fn read_events(fd: OwnedFd, activity: &(dyn Fn() + Send + Sync)) -> std::io::Result<()> {
    // SAFETY: the OwnedFd is ours and stays open as long as the AsyncFd.
    let fd = unsafe { tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }.map_err(std::io::Error::from)?;
    let mut buf = [0u8; EVENT_SIZE * 64];
    loop {
        let mut guard = fd.readable().await?;
        // SAFETY: reading into a buffer we own, of its length.
        let n = unsafe { libc::read(fd.get_ref().as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::WouldBlock {
                guard.clear_ready();
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Ok(());
        }
        if holds_input(&buf[..n as usize]) {
            activity();
        }
    }
}

/// Whether a read of whole events holds a key, relative or absolute event.
pub fn holds_input(bytes: &[u8]) -> bool {
    bytes.chunks_exact(EVENT_SIZE).any(|ev| matches!(u16::from_ne_bytes([ev[16], ev[17]]), EV_KEY | EV_REL | EV_ABS))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: u16) -> Vec<u8> {
        let mut v = vec![0u8; EVENT_SIZE];
        v[16..18].copy_from_slice(&kind.to_ne_bytes());
        v
    }

    #[test]
    fn sync_alone_is_not_activity() {
        assert!(!holds_input(&ev(0)));
        assert!(holds_input(&[ev(0), ev(EV_KEY)].concat()));
        assert!(holds_input(&ev(EV_ABS)));
        assert!(!holds_input(&ev(4)));
    }

    #[tokio::test]
    async fn a_fifo_standing_in_for_a_device_reports_activity() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("event0");
        nix_mkfifo(&path);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (ctx, mut crx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(watch(
            d.path().into(),
            Arc::new(move |n| {
                let _ = ctx.send(n);
            }),
            Arc::new(move || {
                let _ = tx.send(());
            }),
        ));
        let deadline = Duration::from_secs(30);
        // Watched: then a writer's key event is activity.
        tokio::time::timeout(deadline, async { while crx.recv().await != Some(1) {} }).await.unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        std::io::Write::write_all(&mut w, &[ev(EV_KEY), ev(0)].concat()).unwrap();
        tokio::time::timeout(deadline, rx.recv()).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_device_that_comes_later_is_watched() {
        let d = tempfile::tempdir().unwrap();
        let (ctx, mut crx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(watch(
            d.path().into(),
            Arc::new(move |n| {
                let _ = ctx.send(n);
            }),
            Arc::new(|| {}),
        ));
        // The first scan finds nothing; the node's creation is told by
        // inotify, and the next count is 1.
        assert_eq!(tokio::time::timeout(Duration::from_secs(30), crx.recv()).await.unwrap(), Some(0));
        nix_mkfifo(&d.path().join("event3"));
        tokio::time::timeout(Duration::from_secs(30), async { while crx.recv().await != Some(1) {} }).await.unwrap();
    }

    fn nix_mkfifo(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    }
}
