//! The display manager (SA 4607) as render_service hosts it, against a
//! headless compositor and a real samgr: the display it lists, a
//! screenshot whose PNG holds the frame's pixels, and the permission a
//! screenshot needs (an unprivileged uid is refused).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

mod common;

use accord_compositor::{display_manager::DisplayManagerSa, Frame};
use accord_display::{DisplayError, DisplayManager, DisplayManagerProxy, ScreenPower, ID};
use accord_safwk::typed::CallError;
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
}
