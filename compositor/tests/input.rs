//! Input through the headless compositor: FIFOs carrying evdev records
//! stand in for the kernel's devices (the kernel's own devices are used
//! by the QEMU system test), raw Wayland clients see what the seat
//! delivers: keyboard focus and keys, the task switcher, pointer enter,
//! motion and buttons, the cursor drawn, touch points, and what a device
//! that goes away held being released.

use std::{io::Write, time::Duration};

mod common;

use accord_compositor::{
    input::{
        evdev::{
            AbsRange, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_SLOT, ABS_MT_TRACKING_ID, ABS_X, ABS_Y, BTN_LEFT, EV_ABS, EV_KEY, EV_REL, KEY_A,
            KEY_LEFTALT, KEY_TAB, REL_WHEEL, REL_X, REL_Y,
        },
        Capabilities, KeyboardConfig,
    },
    Frame, BACKGROUND,
};
use common::input::{fixed, keyboard, mouse, px, App, Harness, DEADLINE, HEIGHT, WIDTH};
use common::{Arg, Gone};

#[test]
fn keys_go_to_the_focused_window_and_alt_tab_switches_it() {
    let h = Harness::start();
    let mut kb = h.device("kbd", keyboard());
    let mut a = App::start(&h, 2);
    // A new window takes the keyboard.
    a.wait_keyboard_enter();
    kb.frame(&[(EV_KEY, KEY_A, 1)]);
    kb.frame(&[(EV_KEY, KEY_A, 2)]);
    kb.frame(&[(EV_KEY, KEY_A, 0)]);
    assert_eq!(a.key(), (u32::from(KEY_A), 1));
    // The kernel's repeat (2) is not passed on: the release comes next.
    assert_eq!(a.key(), (u32::from(KEY_A), 0));

    let mut b = App::start(&h, 2);
    b.wait_keyboard_enter();
    let a_kb = a.keyboard;
    a.wait("keyboard leave", |e| e.object == a_kb && e.opcode == 2);
    kb.frame(&[(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 0)]);
    assert_eq!(b.key(), (u32::from(KEY_A), 1));

    // Alt+Tab: the window at the bottom (a) comes up and gets the keyboard;
    // the Tab is the compositor's, not b's.
    kb.frame(&[(EV_KEY, KEY_LEFTALT, 1)]);
    kb.frame(&[(EV_KEY, KEY_TAB, 1)]);
    kb.frame(&[(EV_KEY, KEY_TAB, 0)]);
    kb.frame(&[(EV_KEY, KEY_LEFTALT, 0)]);
    a.wait_keyboard_enter();
    let b_kb = b.keyboard;
    let events_before_leave = {
        let mut seen = Vec::new();
        b.wait("b's keyboard leave", |e| {
            seen.push(e.clone());
            e.object == b_kb && e.opcode == 2
        });
        seen
    };
    let tab_keys = events_before_leave.iter().filter(|e| e.object == b_kb && e.opcode == 3 && e.u32_at(2) == u32::from(KEY_TAB)).count();
    assert_eq!(tab_keys, 0, "the task switcher's Tab reached the window");
    // Alt was held when a got the keyboard (its enter says so): its
    // release is a's; then a types.
    assert_eq!(a.key(), (u32::from(KEY_LEFTALT), 0));
    kb.frame(&[(EV_KEY, KEY_A, 1)]);
    assert_eq!(a.key(), (u32::from(KEY_A), 1));

    // Unplugged with A held: the window sees it released.
    kb.unplug();
    assert_eq!(a.key(), (u32::from(KEY_A), 0));
}

#[test]
fn a_mouse_enters_moves_and_clicks_and_the_cursor_follows() {
    let h = Harness::start();
    let mut mouse = h.device("mouse", mouse());
    // No window: the cursor (a white arrow, black outline, tip at the
    // pointer) is drawn over the background.
    mouse.frame(&[(EV_REL, REL_X, 100), (EV_REL, REL_Y, 50)]);
    let arrow_inside = |f: &Frame, x: u32, y: u32| f.pixels[((y + 6) * f.width + x + 2) as usize] == 0xffffff;
    h.wait_frame("the cursor at 100,50", |f| arrow_inside(f, 100, 50));
    assert_eq!(h.pointer(), (100.0, 50.0));
    // Clamped to the screen.
    mouse.frame(&[(EV_REL, REL_X, -1000), (EV_REL, REL_Y, 5000)]);
    // Only the arrow's tip (black) is left on the screen.
    h.wait_frame("the cursor at the bottom left", |f| f.pixels[((HEIGHT - 1) * f.width) as usize] == 0);
    assert_eq!(h.pointer(), (0.0, f64::from(HEIGHT - 1)));
    h.wait_frame("the old cursor gone", |f| f.pixels[(56 * f.width + 102) as usize] == BACKGROUND);

    let mut a = App::start(&h, 1);
    mouse.frame(&[(EV_REL, REL_X, 30), (EV_REL, REL_Y, -20)]);
    let p = a.pointer;
    let enter = a.wait("pointer enter", |e| e.object == p && e.opcode == 0);
    assert_eq!(enter.u32_at(1), a.surface);
    assert_eq!((fixed(enter.u32_at(2)), fixed(enter.u32_at(3))), (30.0, f64::from(HEIGHT - 21)));
    mouse.frame(&[(EV_KEY, BTN_LEFT, 1)]);
    let button = a.wait("a button", |e| e.object == p && e.opcode == 3);
    assert_eq!((button.u32_at(2), button.u32_at(3)), (u32::from(BTN_LEFT), 1));
    mouse.frame(&[(EV_REL, REL_WHEEL, -1)]);
    let axis = a.wait("a scroll", |e| e.object == p && e.opcode == 4);
    // Vertical (0), one notch down.
    assert_eq!((axis.u32_at(1), fixed(axis.u32_at(2))), (0, 15.0));
    mouse.unplug();
    let release = a.wait("the button released", |e| e.object == p && e.opcode == 3);
    assert_eq!((release.u32_at(2), release.u32_at(3)), (u32::from(BTN_LEFT), 0));
}

#[test]
fn a_tablet_points_at_a_fraction_of_the_screen() {
    let h = Harness::start();
    let r = AbsRange { min: 0, max: 32767 };
    let mut tablet = h.device("tablet", Capabilities { name: "test tablet".into(), absolute_pointer: Some((r, r)), ..Default::default() });
    tablet.frame(&[(EV_ABS, ABS_X, 32767), (EV_ABS, ABS_Y, 16384)]);
    let want = (f64::from(WIDTH - 1), (f64::from(HEIGHT - 1) * 16384.0 / 32767.0));
    let deadline = std::time::Instant::now() + DEADLINE;
    while h.pointer() != want {
        assert!(std::time::Instant::now() < deadline, "the pointer never went to {want:?}: {:?}", h.pointer());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn touch_points_reach_the_window_under_them() {
    let h = Harness::start();
    let r = AbsRange { min: 0, max: 1000 };
    let caps = Capabilities { name: "test touch".into(), touch: Some((r, r)), multitouch: true, touch_slots: 2, ..Default::default() };
    let mut ts = h.device("touch", caps);
    let mut a = App::start(&h, 4);
    ts.frame(&[(EV_ABS, ABS_MT_SLOT, 1), (EV_ABS, ABS_MT_TRACKING_ID, 5), (EV_ABS, ABS_MT_POSITION_X, 500), (EV_ABS, ABS_MT_POSITION_Y, 1000)]);
    let t = a.touch;
    let down = a.wait("touch down", |e| e.object == t && e.opcode == 0);
    assert_eq!((down.u32_at(2), down.u32_at(3)), (a.surface, 1));
    assert_eq!((fixed(down.u32_at(4)), fixed(down.u32_at(5))), (f64::from(WIDTH - 1) / 2.0, f64::from(HEIGHT - 1)));
    a.wait("touch frame", |e| e.object == t && e.opcode == 3);
    ts.frame(&[(EV_ABS, ABS_MT_TRACKING_ID, -1)]);
    let up = a.wait("touch up", |e| e.object == t && e.opcode == 1);
    assert_eq!(up.u32_at(2), 1);
}

#[test]
fn garbage_from_a_device_does_not_stop_the_compositor() {
    let h = Harness::start();
    let r = AbsRange { min: 0, max: 10 };
    let caps = Capabilities {
        name: "garbage".into(),
        keyboard: true,
        relative_pointer: true,
        touch: Some((r, r)),
        multitouch: true,
        touch_slots: 4,
        ..Default::default()
    };
    let mut dev = h.device("garbage", caps);
    // Random records, then a half record: nothing panics, and a client still connects.
    let mut x: u32 = 0x1234_5678;
    let mut records = Vec::new();
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        records.push(((x % 4) as u16, ((x >> 8) % 0x300) as u16, (x as i32) >> 7));
    }
    dev.frame(&records);
    dev.writer.as_mut().unwrap().write_all(&[1, 2, 3]).unwrap();
    dev.unplug();
    let mut a = App::start(&h, 0);
    a.c.roundtrip().expect("still serving");
}

#[test]
fn a_keymap_that_does_not_compile_falls_back_to_us() {
    let h = Harness::start();
    let bad = KeyboardConfig { layout: "no-such-layout".into(), ..KeyboardConfig::default() };
    h.set_keymap(bad);
    let mut kb = h.device("kbd", keyboard());
    let mut a = App::start(&h, 2);
    a.wait_keyboard_enter();
    kb.frame(&[(EV_KEY, KEY_A, 1)]);
    assert_eq!(a.key(), (u32::from(KEY_A), 1));
}

#[test]
fn a_window_takes_the_keyboard_only_once_it_shows_something() {
    let h = Harness::start();
    let mut kb = h.device("kbd", keyboard());
    let mut a = App::start(&h, 2);
    a.wait_keyboard_enter();
    // b's window has no buffer yet: nothing of it is on the screen, so
    // keys typed still go to a.
    let mut b = App::start_with(&h, 2, false);
    kb.frame(&[(EV_KEY, KEY_A, 1), (EV_KEY, KEY_A, 0)]);
    assert_eq!(a.key(), (u32::from(KEY_A), 1));
    assert_eq!(a.key(), (u32::from(KEY_A), 0));
    let b_kb = b.keyboard;
    b.c.roundtrip().expect("served");
    assert!(!b.c.history.as_ref().unwrap().iter().any(|e| e.object == b_kb && (e.opcode == 1 || e.opcode == 3)), "b's empty window had the keyboard");
    // Shown, it takes the keyboard.
    b.show();
    b.wait_keyboard_enter();
    kb.frame(&[(EV_KEY, KEY_A, 1)]);
    assert_eq!(b.key(), (u32::from(KEY_A), 1));
}

const RED: u32 = 0xff0000;

/// A client's cursor surface: drawn with its hotspot at the pointer, its
/// frame callbacks answered; with the mouse unplugged and another plugged
/// in, the cursor is the compositor's arrow again, not that client's
/// image over another's window.
#[test]
fn a_clients_cursor_is_drawn_gets_frames_and_goes_with_the_mouse() {
    let h = Harness::start();
    let mut m = h.device("mouse", mouse());
    let mut a = App::start(&h, 1);
    m.frame(&[(EV_REL, REL_X, 100), (EV_REL, REL_Y, 100)]);
    let serial = a.pointer_enter_serial();
    let s = a.colored_surface(8, 8, RED);
    a.c.send(a.pointer, 0, &[Arg::U(serial), Arg::U(s), Arg::I(4), Arg::I(4)]);
    let cb = a.c.new_id();
    a.c.send(s, 3, &[Arg::U(cb)]);
    a.c.send(s, 6, &[]);
    a.c.roundtrip().expect("served");
    h.wait_frame("the red cursor, its hotspot at 100,100", |f| px(f, 96, 96) == RED && px(f, 103, 103) == RED && px(f, 105, 105) != RED);
    a.wait("the cursor surface's frame callback", |e| e.object == cb && e.opcode == 0);

    m.unplug();
    let mut m2 = h.device("mouse2", mouse());
    let mut b = App::start(&h, 1);
    m2.frame(&[(EV_REL, REL_X, 10), (EV_REL, REL_Y, 10)]);
    let bp = b.pointer;
    b.wait("b's pointer enter", |e| e.object == bp && e.opcode == 0);
    // The arrow (white inside, black tip) at 110,110, no red anywhere near.
    h.wait_frame("the compositor's arrow at 110,110", |f| px(f, 110, 110) == 0 && px(f, 112, 116) == 0xffffff);
    let f = h.frame();
    assert!((100..124).all(|y| (100..124).all(|x| px(&f, x, y) != RED)), "a's cursor is drawn over b's window");
}

/// A surface with another role (a toplevel, a subsurface) cannot be the
/// cursor: a protocol error, and the compositor carries on.
#[test]
fn a_cursor_with_another_role_is_a_protocol_error() {
    let h = Harness::start();
    let mut m = h.device("mouse", mouse());
    for subsurface in [false, true] {
        let mut a = App::start(&h, 1);
        m.frame(&[(EV_REL, REL_X, 1)]);
        let serial = a.pointer_enter_serial();
        let surface = if subsurface {
            let sub = a.c.bind("wl_subcompositor", 1);
            let child = a.colored_surface(8, 8, RED);
            let ss = a.c.new_id();
            a.c.send(sub, 1, &[Arg::U(ss), Arg::U(child), Arg::U(a.surface)]);
            child
        } else {
            a.surface
        };
        a.c.send(a.pointer, 0, &[Arg::U(serial), Arg::U(surface), Arg::I(0), Arg::I(0)]);
        match a.c.roundtrip() {
            Err(Gone::Disconnected(ev)) => assert!(ev.iter().any(|e| e.object == 1 && e.opcode == 0), "disconnected without an error"),
            other => panic!("a surface with a role accepted as the cursor (subsurface: {subsurface}): {other:?}"),
        }
    }
    let mut c = App::start(&h, 1);
    c.c.roundtrip().expect("still serving");
}

/// A device that never runs dry (a uinput node gone wild; here a FIFO
/// kept full) does not keep clients from being served: round trips keep
/// completing while it floods.
#[test]
fn a_flooding_device_does_not_starve_clients() {
    let h = Harness::start();
    let mut m = h.device("mouse", mouse());
    let mut writer = m.writer.take().expect("the device's writer");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let (started_tx, started) = std::sync::mpsc::channel();
    let flood = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        for _ in 0..2000 {
            bytes.extend_from_slice(&accord_compositor::input::RawEvent { kind: EV_REL, code: REL_X, value: 1 }.to_bytes());
            bytes.extend_from_slice(&accord_compositor::input::RawEvent::sync().to_bytes());
        }
        // Written once: the flood is on, and goes on until stopped.
        while writer.write_all(&bytes).is_ok() {
            let _ = started_tx.send(());
            if stop2.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
        }
    });
    started.recv_timeout(DEADLINE).expect("the flood never started");
    let mut c = common::RawClient::connect(&h.socket());
    for _ in 0..50 {
        c.roundtrip().expect("a client served during the flood");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    flood.join().expect("the flooding thread");
}
