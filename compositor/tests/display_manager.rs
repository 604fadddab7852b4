//! The display manager (SA 4607) as render_service hosts it, against a
//! headless compositor and a real samgr: the display it lists, a
//! screenshot whose PNG holds the frame's pixels, the permission a
//! screenshot needs (an unprivileged uid is refused), and display
//! listeners told of the screen's power in order, bounded per uid.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

mod common;

use accord_compositor::{display_manager::DisplayManagerSa, Frame};
use accord_display::{DisplayError, DisplayInfo, DisplayListener, DisplayManager, DisplayManagerProxy, ScreenPower, ID};
use accord_safwk::typed::{CallError, Listener};
use accord_safwk::Samgr;
use common::{thread::CompositorThread, DEADLINE};
/// Holds the screenshot permission; 2002 does not.
const PRIVILEGED: u32 = 2001;
const UNPRIVILEGED: u32 = 2002;

fn policy() -> String {
    r#"{
        "rules": [{"ids": "4607", "register": {"uids": [0]}, "get": {"uids": [2001, 2002]}}],
        "permissions": {"ohos.permission.CAPTURE_SCREEN": {"uids": [2001]}}
    }"#
    .into()
}

fn as_uid<T: Send + 'static>(uid: u32, sock: &Path, f: impl AsyncFnOnce(Samgr) -> T + Send + 'static) -> T {
    let sock = sock.to_owned();
    std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move { f(Samgr::connect(&sock).await.unwrap()).await })
    })
    .join()
    .unwrap()
}

/// A display listener passing what it is told on.
struct Watcher(tokio::sync::mpsc::UnboundedSender<(DisplayInfo, u32)>);

impl DisplayListener for Watcher {
    fn on_change(&self, display: DisplayInfo, lost: u32) {
        let _ = self.0.send((display, lost));
    }
}

fn decode(png_bytes: &[u8]) -> Frame {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png_bytes)).read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).expect("its pixels");
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let pixels = buf[..info.buffer_size()].chunks_exact(3).map(|p| u32::from(p[0]) << 16 | u32::from(p[1]) << 8 | u32::from(p[2])).collect();
    Frame { width: info.width, height: info.height, pixels }
}

#[test]
fn displays_and_screenshots_through_samgr() {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock: PathBuf = dir.path().join("samgr");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let p = policy();
    accord_safwk::set_host_policy(accord_safwk::policy::Policy::parse(&p, "test policy").unwrap());
    {
        let _guard = rt.enter();
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
        let registry =
            accord_samgr::Registry::new(accord_safwk::policy::Policy::parse(&p, "test policy").unwrap(), Vec::new(), Arc::new(accord_samgr::InitStarter));
        rt.spawn(accord_samgr::serve(listener, registry));
    }

    // A headless compositor on its own thread, and its first frame.
    let t = CompositorThread::start(320, 200, "wayland-dm");
    let deadline = std::time::Instant::now() + DEADLINE;
    let frame = loop {
        if let Some(frame) = t.with(|c| c.frame().expect("frame")) {
            break frame;
        }
        assert!(std::time::Instant::now() < deadline, "no first frame");
        std::thread::sleep(Duration::from_millis(20));
    };
    let requests = t.with(|c| c.display_requests());

    // The SA, published as render_service does.
    rt.block_on(async {
        let host = accord_safwk::SaHost::connect(&sock).await.expect("host");
        host.publish_remote(ID, DisplayManagerSa::new(requests).into_remote(), None).await.expect("published");
        std::mem::forget(host);
    });

    let displays = as_uid(PRIVILEGED, &sock, async |samgr| samgr.get_proxy::<DisplayManagerProxy>(ID).await.unwrap().displays().await.unwrap());
    assert_eq!(displays.len(), 1);
    let d = &displays[0];
    assert_eq!((d.id, d.name.as_str(), d.width, d.height, d.rotation, d.power), (0, "headless-1", 320, 200, 0, ScreenPower::On));

    let png = as_uid(PRIVILEGED, &sock, async |samgr| {
        samgr.get_proxy::<DisplayManagerProxy>(ID).await.unwrap().screenshot(0).await.expect("a screenshot").into_bytes().unwrap()
    });
    assert_eq!(decode(&png), frame, "the screenshot is not the frame on the screen");

    let other = as_uid(PRIVILEGED, &sock, async |samgr| samgr.get_proxy::<DisplayManagerProxy>(ID).await.unwrap().screenshot(7).await.err());
    assert!(matches!(other, Some(CallError::Sa(DisplayError::NoSuchDisplay(7)))), "{other:?}");
    let refused = as_uid(UNPRIVILEGED, &sock, async |samgr| samgr.get_proxy::<DisplayManagerProxy>(ID).await.unwrap().screenshot(0).await.err());
    assert!(matches!(refused, Some(CallError::Sa(DisplayError::PermissionDenied { uid: UNPRIVILEGED, .. }))), "{refused:?}");

    // A listener is told of the screen going off and on, in order.
    let (seen_tx, seen) = std::sync::mpsc::channel();
    let watcher_sock = sock.clone();
    let watcher = std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(PRIVILEGED, PRIVILEGED, &[]).expect("tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let samgr = Samgr::connect(&watcher_sock).await.unwrap();
            let dm = samgr.get_proxy::<DisplayManagerProxy>(ID).await.unwrap();
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
            let id = dm.subscribe(Listener::new(Watcher(tx).into_remote())).await.expect("subscribed");
            seen_tx.send(None).unwrap();
            for _ in 0..2 {
                let (display, lost) = rx.recv().await.expect("a change");
                seen_tx.send(Some((display.power, lost))).unwrap();
            }
            assert!(dm.unsubscribe(id).await.unwrap(), "its own subscription");
            assert!(!dm.unsubscribe(id).await.unwrap(), "a subscription already ended");
        })
    });
    assert_eq!(seen.recv_timeout(DEADLINE).expect("the listener subscribed"), None);
    let screen = t.with(|c| c.screen_power());
    screen.send(accord_compositor::ScreenPower::Off).unwrap();
    assert_eq!(seen.recv_timeout(DEADLINE).expect("the screen off told"), Some((ScreenPower::Off, 0)));
    screen.send(accord_compositor::ScreenPower::On).unwrap();
    assert_eq!(seen.recv_timeout(DEADLINE).expect("the screen on told"), Some((ScreenPower::On, 0)));
    watcher.join().unwrap();

    // An unprivileged uid holds at most its share of listeners.
    let over = as_uid(UNPRIVILEGED, &sock, async |samgr| {
        let dm = samgr.get_proxy::<DisplayManagerProxy>(ID).await.unwrap();
        let mut kept = Vec::new();
        for i in 0..accord_display::MAX_SUBS_PER_UID {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            kept.push(rx);
            dm.subscribe(Listener::new(Watcher(tx).into_remote())).await.unwrap_or_else(|e| panic!("listener {i}: {e}"));
        }
        let (tx, _rx) = tokio::sync::mpsc::unbounded_channel();
        dm.subscribe(Listener::new(Watcher(tx).into_remote())).await.err()
    });
    assert!(matches!(over, Some(CallError::Sa(DisplayError::TooMany(_)))), "{over:?}");
}
