//! Devices plugged and unplugged hundreds of times cost nothing that
//! stays: no descriptor per device, and no keymap per keyboard (a client
//! holding a wl_keyboard once kept every old keymap's memfd open). One
//! test in its own process, so the descriptors counted are its own.

use std::time::Duration;

mod common;

use accord_compositor::input::evdev::{EV_KEY, EV_REL, KEY_A, REL_X};
use common::input::{keyboard, mouse, App, Harness};
use common::{fd_count, Arg};

/// This process's descriptors that are the compositor's keymaps.
fn keymaps() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.flatten().filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().contains("keymap"))).count())
        .unwrap_or(0)
}

#[test]
fn devices_plugged_and_unplugged_leave_nothing_behind() {
    let h = Harness::start();
    let mut a = App::start(&h, 0);
    // The first keyboard, and a wl_keyboard: its keymap exists from now on.
    let mut kb = h.device("kbd-first", keyboard());
    kb.frame(&[(EV_KEY, KEY_A, 1)]);
    a.c.roundtrip().expect("served");
    let id = a.c.new_id();
    a.c.send(a.seat, 1, &[Arg::U(id)]);
    kb.unplug();
    a.c.roundtrip().expect("served");
    assert_eq!(keymaps(), 1, "the keymap is not a memfd named so: this test would count nothing");
    let (fds, maps) = (fd_count("self"), keymaps());
    for i in 0..300 {
        let mut kb = h.device(&format!("kbd{i}"), keyboard());
        kb.frame(&[(EV_KEY, KEY_A, 1)]);
        // The client takes a wl_keyboard each time and keeps it.
        let id = a.c.new_id();
        a.c.send(a.seat, 1, &[Arg::U(id)]);
        kb.unplug();
        let mut m = h.device(&format!("mouse{i}"), mouse());
        m.frame(&[(EV_REL, REL_X, 1)]);
        m.unplug();
        a.c.roundtrip().expect("served");
    }
    // The last devices' ends are read by the compositor's next dispatches.
    let deadline = std::time::Instant::now() + common::DEADLINE;
    while fd_count("self") > fds + 10 && std::time::Instant::now() < deadline {
        a.c.roundtrip().expect("served");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(keymaps() <= maps, "keymaps open: {} before, {} after 300 keyboards", maps, keymaps());
    assert!(fd_count("self") <= fds + 10, "descriptors: {fds} before, {} after 300 keyboards and mice", fd_count("self"));
}
