//! The system UI against the real compositor (headless): the status bar
//! is drawn along the top with the time in it, app windows (Debian's
//! stock weston-simple-shm) go below it, it comes back by itself after
//! the compositor is restarted, and its power button opens the power menu
//! and its applications button the launcher (clicked through a tablet
//! the compositor reads).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use accord_compositor::{Frame, BACKGROUND};

mod support;
use common::{thread::CompositorThread, Arg, RawClient};
use support::{common, common::DEADLINE, log_of, spawn_with, Kill, Tablet};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// The bar's height and colours (systemui's bar.rs).
const BAR: u32 = 32;
const BAR_COLOR: u32 = 0x0b0f14;

fn spawn(program: &str, dir: &Path, socket: &str) -> Kill {
    spawn_with::<&Path>(program, dir, socket, &[])
}

/// Waits until systemui's log holds every one of `pieces`.
fn wait_said(dir: &Path, what: &str, pieces: &[&str]) {
    support::wait_said(dir, "systemui", what, pieces)
}

fn wait_for(t: &CompositorThread, what: &str, dir: &Path, ok: impl Fn(&Frame) -> bool) -> Frame {
    support::wait_frame(t, what, dir, "systemui", ok)
}

/// The bar is on the frame: its rows are the bar's colour but for light
/// text pixels in its left part (the time), and they are not all there.
fn bar_shown(frame: &Frame) -> bool {
    let mut bar = 0;
    let mut light_left = 0;
    for y in 0..BAR {
        for x in 0..WIDTH {
            let p = frame.pixel(x, y).unwrap_or(0);
            if p == BAR_COLOR {
                bar += 1;
            } else if x < 100 && (p & 0xff) > 0x80 && ((p >> 8) & 0xff) > 0x80 {
                light_left += 1;
            }
        }
    }
    bar * 10 >= (WIDTH * BAR * 9) as usize && light_left >= 30
}

#[test]
fn the_status_bar_keeps_its_place_and_comes_back_after_the_compositor() {
    let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-ui");
    let dir = t.dir.path().to_owned();
    let _ui = spawn("systemui", &dir, "wayland-ui");
    wait_for(&t, "the status bar", &dir, bar_shown);
    let deadline = Instant::now() + DEADLINE;
    while t.with(|c| c.window_area()) != (0, BAR as i32, WIDTH as i32, (HEIGHT - BAR) as i32) {
        assert!(Instant::now() < deadline, "the app area is {:?}", t.with(|c| c.window_area()));
        std::thread::sleep(Duration::from_millis(20));
    }

    // An app window (250x250, drawn at the top left of the app area)
    // starts below the bar, which stays on top.
    let _app = spawn("weston-simple-shm", &dir, "wayland-ui");
    let frame = wait_for(&t, "weston-simple-shm's window below the bar", &dir, |f| {
        let window = (BAR..BAR + 250).flat_map(|y| (0..250).map(move |x| (x, y))).filter(|&(x, y)| f.pixel(x, y) != Some(BACKGROUND)).count();
        window * 2 >= 250 * 250
    });
    assert!(bar_shown(&frame), "the window covers the bar");
    assert!((BAR + 260..HEIGHT).all(|y| frame.pixel(10, y) == Some(BACKGROUND)), "the window reaches below where it should end");

    // The compositor goes (as when it crashes) and a new one comes on the
    // same socket: the bar is back without anyone restarting systemui.
    let again = CompositorThread::start_in(WIDTH, HEIGHT, t.stop(), "wayland-ui");
    wait_for(&again, "the status bar after the compositor's restart", &dir, bar_shown);
    let said = log_of(&dir, "systemui");
    assert!(said.contains("connecting again"), "systemui did not say it lost the compositor:\n{said}");
}

/// The power menu is open: a block of the menu's colour under the bar at
/// the right edge.
fn menu_open(f: &Frame) -> bool {
    const MENU_COLOR: u32 = 0x1f2630;
    let (x0, y0) = (WIDTH - 200, BAR);
    let menu = (y0..y0 + 120).flat_map(|y| (x0..WIDTH).map(move |x| (x, y))).filter(|&(x, y)| f.pixel(x, y) == Some(MENU_COLOR)).count();
    menu * 10 >= 200 * 120 * 8
}

#[test]
fn the_power_button_opens_and_closes_the_power_menu() {
    let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-ui");
    let dir = t.dir.path().to_owned();
    let _ui = spawn("systemui", &dir, "wayland-ui");
    wait_for(&t, "the status bar", &dir, bar_shown);
    let mut tablet = Tablet::plug(&t, &dir, "systemui", (WIDTH, HEIGHT));
    // The power symbol, light, at the right end of the bar.
    let frame = wait_for(&t, "the bar", &dir, bar_shown);
    let icon = (WIDTH - 44..WIDTH).flat_map(|x| (0..BAR).map(move |y| (x, y))).filter(|&(x, y)| frame.pixel(x, y).is_some_and(|p| p & 0xff > 0x80)).count();
    assert!(icon >= 20, "no power symbol at the bar's right end ({icon} light pixels)");
    tablet.click(&t, WIDTH - 20, BAR / 2);
    wait_for(&t, "the power menu after a click on the power button", &dir, menu_open);
    // Clicked again, it closes.
    tablet.click(&t, WIDTH - 20, BAR / 2);
    wait_for(&t, "the power menu gone after a second click", &dir, |f| !menu_open(f) && f.pixel(WIDTH - 100, BAR + 60) == Some(BACKGROUND));
    // Open, then the applications button: the launcher replaces the
    // menu (one panel at a time), and closing it leaves neither.
    tablet.click(&t, WIDTH - 20, BAR / 2);
    wait_for(&t, "the power menu", &dir, menu_open);
    tablet.click(&t, 22, BAR / 2);
    wait_for(&t, "the launcher instead of the power menu", &dir, |f| launcher_open(f) && !menu_open(f));
    tablet.click(&t, 22, BAR / 2);
    wait_for(&t, "neither panel", &dir, |f| !launcher_open(f) && !menu_open(f) && f.pixel(WIDTH - 100, BAR + 60) == Some(BACKGROUND));
    // Open, and "Suspend" (the first row) chosen: the menu closes and the
    // choice goes to the power manager (not here: the log says what
    // was asked and that samgr could not be reached).
    tablet.click(&t, WIDTH - 20, BAR / 2);
    wait_for(&t, "the power menu", &dir, menu_open);
    tablet.click(&t, WIDTH - 100, BAR + 20);
    wait_for(&t, "the power menu gone after a choice", &dir, |f| !menu_open(f));
    wait_said(&dir, "did not pass the choice on", &["Suspend", "not carried out"]);
}

/// The launcher is open: its colour over most of the app area.
fn launcher_open(f: &Frame) -> bool {
    const LAUNCHER_COLOR: u32 = 0x141b24;
    let n = (BAR..HEIGHT).flat_map(|y| (0..WIDTH).map(move |x| (x, y))).filter(|&(x, y)| f.pixel(x, y) == Some(LAUNCHER_COLOR)).count();
    n * 10 >= ((HEIGHT - BAR) * WIDTH * 7) as usize
}

#[test]
fn the_applications_button_opens_the_launcher_and_a_tile_starts_its_service() {
    let apps = tempfile::tempdir().unwrap();
    let entry = |name: &str, service: &str| format!("[Desktop Entry]\nType=Application\nName={name}\nX-Accord-Service={service}\n");
    std::fs::write(apps.path().join("a.desktop"), entry("Alpha", "app.alpha")).unwrap();
    std::fs::write(apps.path().join("b.desktop"), entry("Beta", "app.beta")).unwrap();
    std::fs::write(apps.path().join("bad.desktop"), entry("Sneaky", "render_service")).unwrap();
    let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-ui");
    let dir = t.dir.path().to_owned();
    let _ui = spawn_with("systemui", &dir, "wayland-ui", &[("ACCORD_APPLICATIONS", apps.path())]);
    wait_for(&t, "the status bar", &dir, bar_shown);
    let mut tablet = Tablet::plug(&t, &dir, "systemui", (WIDTH, HEIGHT));
    tablet.click(&t, 22, BAR / 2);
    let frame = wait_for(&t, "the launcher after a click on the applications button", &dir, launcher_open);
    // Two tiles (the entry naming a system service is left out): their
    // icons are in the first row, not in a third place.
    let icon_at = |x: u32| (BAR + 24 + 8..BAR + 24 + 8 + 56).all(|y| frame.pixel(x, y).is_some_and(|p| p != 0x141b24));
    assert!(icon_at(24 + 70) && icon_at(24 + 140 + 70), "two icons");
    assert!(!icon_at(24 + 280 + 70), "a third icon");
    let said = log_of(&dir, "systemui");
    assert!(said.contains("bad.desktop") && said.contains("render_service"), "the bad entry was not named:\n{said}");
    // The second tile: Beta's service is asked for (there is no init
    // here, so it is not started, and the log says so); the launcher
    // closes.
    tablet.click(&t, 24 + 140 + 70, BAR + 24 + 30);
    wait_for(&t, "the launcher closed after a tile was clicked", &dir, |f| !launcher_open(f));
    wait_said(&dir, "did not ask for Beta's service", &["starting app=Beta service=app.beta", "not started"]);
}

/// Another system UI surface whose exclusive zone is wider than the
/// output (a left bar of 400 on 320 pixels): systemui's bar is given no
/// width (the compositor clamps what would be negative) and systemui
/// carries on, without panicking or reconnecting in a loop.
#[test]
fn a_zone_wider_than_the_output_does_not_upset_systemui() {
    let t = CompositorThread::start(320, 240, "wayland-ui");
    let dir = t.dir.path().to_owned();
    let mut c = RawClient::connect(&t.socket());
    let (compositor, shm, shell) = (c.bind("wl_compositor", 4), c.bind("wl_shm", 1), c.bind("zwlr_layer_shell_v1", 4));
    let s = c.new_id();
    c.send(compositor, 0, &[Arg::U(s)]);
    let ls = c.new_id();
    c.send(shell, 0, &[Arg::U(ls), Arg::U(s), Arg::U(0), Arg::U(2), Arg::S("leftbar")]);
    c.send(ls, 0, &[Arg::U(20), Arg::U(0)]);
    // Anchors top, bottom and left; exclusive zone 400.
    c.send(ls, 1, &[Arg::U(1 | 2 | 4)]);
    c.send(ls, 2, &[Arg::I(400)]);
    c.send(s, 6, &[]);
    let e = c.wait_for(|e| e.object == ls && e.opcode == 0).expect("configure");
    c.send(ls, 6, &[Arg::U(e.u32_at(0))]);
    let b = common::shm_buffer(&mut c, shm, 20, 240);
    c.send(s, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
    c.send(s, 6, &[]);
    c.roundtrip().expect("the left bar mapped");
    let mut ui = spawn("systemui", &dir, "wayland-ui");
    wait_said(&dir, "was never configured", &["configured"]);
    // A few of systemui's loops later: still there, no reconnection.
    std::thread::sleep(Duration::from_millis(500));
    assert!(ui.0.try_wait().unwrap().is_none(), "systemui exited:\n{}", log_of(&dir, "systemui"));
    let said = log_of(&dir, "systemui");
    assert!(!said.contains("connecting again") && !said.contains("panicked"), "{said}");
    assert!(said.lines().any(|l| l.contains("configured width=0")), "the bar's width was not clamped to nothing:\n{said}");
    c.roundtrip().expect("the compositor serves on");
}
