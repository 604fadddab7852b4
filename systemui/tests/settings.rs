//! The Settings app's About page against the real compositor (headless),
//! a real init's parameter service (in its own namespaces) and a real
//! samgr with one SA published (the display manager, as render_service
//! publishes it): the page reads the product's parameters, the storage
//! and the SA list, says so in its log, and is drawn in its window.

use std::{os::unix::fs::PermissionsExt, sync::Arc};

use accord_compositor::display_manager::DisplayManagerSa;
use accord_display::DisplayManager;
use accord_systemui::settings::BACKGROUND;

mod support;
use common::thread::CompositorThread;
use support::{common, spawn_with};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

const POLICY: &str = r#"{
    "rules": [
        {"ids": "4607", "register": {"uids": [0]}, "get": {"uids": [0]}},
        {"ids": "4608", "register": {"uids": [0]}, "get": {"uids": [0]}}
    ],
    "list": {"uids": [0]}
}"#;

#[test]
fn the_about_page_shows_the_device_its_storage_and_its_system_abilities() {
    let mut init =
        accord_testkit::Fixture::new(r#"{"services": []}"#, &[("etc/param/product.para", "const.product.name=TestBoard\nconst.build.version=9.9.9\n")]);
    init.boot();

    let samgr_dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(samgr_dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = samgr_dir.path().join("samgr");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let policy = || accord_safwk::policy::Policy::parse(POLICY, "test policy").unwrap();
    accord_safwk::set_host_policy(policy());
    {
        let _guard = rt.enter();
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let registry = accord_samgr::Registry::new(policy(), Vec::new(), Arc::new(accord_samgr::InitStarter));
        rt.spawn(accord_samgr::serve(listener, registry));
    }
    let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-settings");
    let publish = |id: u32| {
        let requests = t.with(|c| c.display_requests());
        rt.block_on(async {
            let host = accord_safwk::SaHost::connect(&sock).await.expect("an SA host");
            host.publish_remote(id, DisplayManagerSa::new(requests).into_remote(), None).await.expect("published");
            std::mem::forget(host);
        });
    };
    publish(accord_display::ID);

    let dir = t.dir.path().to_owned();
    let _settings = spawn_with("settings", &dir, "wayland-settings", &[("PARAM_SOCKET", init.socket()), ("SAMGR_SOCKET", sock.clone())]);
    support::wait_said(
        &dir,
        "settings",
        "did not show the device, its storage and its SAs",
        &["Device: 7 (Name=TestBoard)", "Storage: 2 (/data=", "const.build.version", "System abilities: 1 (4607=LOADED"],
    );
    // The power manager is not there: its section says so, the rest shows.
    assert!(support::log_of(&dir, "settings").contains("Power: unavailable (SA 3301"), "{}", support::log_of(&dir, "settings"));
    support::wait_frame(&t, "the About page", &dir, "settings", |f| {
        let page = (0..HEIGHT).flat_map(|y| (0..WIDTH).map(move |x| (x, y))).filter(|&(x, y)| f.pixel(x, y) == Some(BACKGROUND)).count();
        let text = (0..HEIGHT).flat_map(|y| (0..WIDTH).map(move |x| (x, y))).filter(|&(x, y)| f.pixel(x, y).is_some_and(|p| p & 0xff > 0xc0)).count();
        page * 10 >= (WIDTH * HEIGHT * 7) as usize && text > 500
    });

    // Read again every 5 s, the page changes (free memory at least), but
    // hilog hears of it only when the summary does: one line for the first
    // SA list however many refreshes pass, then one for the new SA.
    std::thread::sleep(std::time::Duration::from_secs(11));
    publish(4608);
    support::wait_said(&dir, "settings", "did not see the second SA", &["System abilities: 2 (4607=LOADED"]);
    let said = support::log_of(&dir, "settings");
    assert_eq!(said.matches("System abilities: 1 (").count(), 1, "the same summary said again:\n{said}");
}
