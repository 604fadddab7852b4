//! The boot animation against the real compositor (headless) and a real
//! init's parameter service (in its own namespaces): it covers the
//! screen with the product's name and its dots moving, and goes when
//! `bootevent.boot.completed` becomes true; started after that, it shows
//! nothing.

use std::time::{Duration, Instant};

use accord_compositor::{Frame, BACKGROUND};

mod support;
use common::thread::CompositorThread;
use support::{common, common::DEADLINE, log_of, spawn_with, Kill};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// bootanimation.rs's colours and dots.
const ANIM_BACKGROUND: u32 = 0x05070a;
const DOT_ON: u32 = 0x58a6ff;

fn covered(f: &Frame) -> bool {
    let n = (0..HEIGHT).flat_map(|y| (0..WIDTH).map(move |x| (x, y))).filter(|&(x, y)| f.pixel(x, y) == Some(ANIM_BACKGROUND)).count();
    n * 10 >= (WIDTH * HEIGHT * 9) as usize
}

/// The x of the lit dot's first pixel, if one is lit.
fn lit_dot(f: &Frame) -> Option<u32> {
    (0..HEIGHT).find_map(|y| (0..WIDTH).find(|&x| f.pixel(x, y) == Some(DOT_ON)))
}

fn wait_exit(k: &mut Kill, dir: &std::path::Path) {
    let deadline = Instant::now() + DEADLINE;
    while k.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "bootanimation did not exit:\n{}", log_of(dir, "bootanimation"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_animation_covers_the_screen_until_the_boot_completes() {
    // A service whose boot event holds the boot until the test sets it
    // (and a bootevent timeout far beyond the test).
    let cfg = r#"{"services": [{"name": "hold", "path": ["/bin/sleep", "1000"], "bootevents": ["bootevent.test.hold"]}]}"#;
    let mut init = accord_testkit::Fixture::new(cfg, &[("etc/param/product.para", "const.product.name=TestBoard\nconst.startup.bootevent.timeout=3600\n")]);
    init.boot();
    let socket = init.socket();
    let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-boot");
    let dir = t.dir.path().to_owned();
    let mut anim = spawn_with("bootanimation", &dir, "wayland-boot", &[("PARAM_SOCKET", &socket)]);
    support::wait_said(&dir, "bootanimation", "was never shown", &["shown"]);
    // The screen covered, the name in light pixels, one dot lit; then
    // another (the dots move).
    let first = support::wait_frame(&t, "the animation over the screen", &dir, "bootanimation", |f| covered(f) && lit_dot(f).is_some());
    let name = (HEIGHT / 2 - 40..HEIGHT / 2 + 20)
        .flat_map(|y| (0..WIDTH).map(move |x| (x, y)))
        .filter(|&(x, y)| first.pixel(x, y).is_some_and(|p| p & 0xff > 0xa0))
        .count();
    assert!(name > 200, "no name drawn ({name} light pixels)");
    let dot = lit_dot(&first);
    support::wait_frame(&t, "the next dot lit", &dir, "bootanimation", |f| covered(f) && lit_dot(f).is_some() && lit_dot(f) != dot);
    assert!(anim.0.try_wait().unwrap().is_none(), "bootanimation exited before the boot completed:\n{}", log_of(&dir, "bootanimation"));

    assert_eq!(init.get("bootevent.boot.completed"), None, "the boot completed by itself");
    init.client().set("bootevent.test.hold", "true").expect("setting the held boot event");
    wait_exit(&mut anim, &dir);
    assert!(log_of(&dir, "bootanimation").contains("the boot completed"), "{}", log_of(&dir, "bootanimation"));
    support::wait_frame(&t, "the screen without the animation", &dir, "bootanimation", |f| f.pixel(WIDTH / 2, HEIGHT / 2) == Some(BACKGROUND));

    // Started again once the boot has completed: nothing shown.
    let mut again = spawn_with("bootanimation", &dir, "wayland-boot", &[("PARAM_SOCKET", &socket)]);
    wait_exit(&mut again, &dir);
    let said = log_of(&dir, "bootanimation");
    assert!(said.contains("nothing to show") && !said.contains("shown"), "{said}");
}
