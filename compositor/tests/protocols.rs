//! The standard-client protocols: copy and paste between Debian's stock
//! `wl-copy` and `wl-paste` (clipboard and primary selection), the globals
//! `wayland-info` lists (with xdg-output's logical size), xdg-decoration
//! always answering server-side, wp_viewporter scaling a surface in the
//! frame; and clients that try to make the compositor hold unbounded MIME
//! types, sources, devices or viewport sizes are cut off while others keep
//! working; presentation feedback comes with the frame's time on
//! CLOCK_MONOTONIC, or says discarded; a drag and drop within a client
//! works, and drags broken midway (source or client gone) do not panic.

mod common;

use std::{
    io::{Read, Write},
    os::fd::AsRawFd,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use accord_compositor::{
    presentation::MAX_FEEDBACKS_PER_COMMIT,
    selection::{MAX_MIME_TYPES_PER_SOURCE, MAX_MIME_TYPE_LEN, MAX_SELECTION_DEVICES_PER_CLIENT, MAX_SELECTION_SOURCES_PER_CLIENT},
    viewporter::MAX_VIEWPORT_SIZE,
    BACKGROUND,
};
use common::{
    input::{fifo_device, keyboard, Device},
    shm_buffer,
    thread::CompositorThread,
    toplevel, Arg, Gone, RawClient, DEADLINE,
};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// A compositor with a keyboard (wl-copy and wl-paste need one: a client
/// sets or reads a selection only while it has the keyboard).
struct Harness {
    t: CompositorThread,
    _keyboard: Device,
    /// wl-copy runs so far (each has a log of its own).
    copies: std::sync::atomic::AtomicUsize,
}

impl Harness {
    fn start() -> Harness {
        let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-proto");
        let keyboard = fifo_device(&t, "kbd", keyboard());
        Harness { t, _keyboard: keyboard, copies: Default::default() }
    }

    /// Runs a stock client to its end (killed past [`DEADLINE`]): its
    /// exit success, stdout and stderr.
    fn run(&self, program: &str, args: &[&str]) -> (bool, String, String) {
        let mut child = self.command(program, args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawning {program}: {e}"));
        let deadline = Instant::now() + DEADLINE;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting for the client") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        let mut err = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut out).expect("reading stdout");
        child.stderr.take().expect("stderr").read_to_string(&mut err).expect("reading stderr");
        (status.is_some_and(|s| s.success()), out, err)
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut command = Command::new(program);
        command
            .args(args)
            .env("XDG_RUNTIME_DIR", self.t.dir.path())
            .env("WAYLAND_DISPLAY", &self.t.socket_name)
            .env_remove("WAYLAND_DEBUG")
            .stdin(Stdio::null());
        command
    }

    /// `wl-copy --foreground [extra] text`, serving the selection until
    /// killed (on drop); returns once it has set the selection (its
    /// protocol log says so). Nothing may take the keyboard meanwhile:
    /// wl-copy sets the selection when its surface gets the keyboard, and
    /// the compositor refuses it from a client that lost it since.
    fn copy(&self, extra: &[&str], text: &str) -> common::KillOnDrop {
        let mut args = vec!["--foreground"];
        args.extend_from_slice(extra);
        args.push(text);
        let log = self.t.dir.path().join(format!("wl-copy-{}.log", self.copies.fetch_add(1, std::sync::atomic::Ordering::Relaxed)));
        let stderr = std::fs::File::create(&log).expect("wl-copy's log");
        let child = self.command("wl-copy", &args).env("WAYLAND_DEBUG", "1").stdout(Stdio::null()).stderr(stderr).spawn().expect("spawning wl-copy");
        let mut child = common::KillOnDrop(child);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let said = std::fs::read_to_string(&log).unwrap_or_default();
            if said.lines().any(|l| l.contains(" -> ") && l.contains(".set_selection(")) {
                return child;
            }
            if let Ok(Some(status)) = child.0.try_wait() {
                panic!("wl-copy exited ({status}) before setting the selection:\n{said}");
            }
            assert!(Instant::now() < deadline, "wl-copy never set the selection:\n{said}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Runs `wl-paste --no-newline [extra]` until it prints `want` (each
    /// run is a new client); panics with the last output past [`DEADLINE`].
    fn paste_until(&self, extra: &[&str], want: &str) {
        let mut args = vec!["--no-newline"];
        args.extend_from_slice(extra);
        let deadline = Instant::now() + DEADLINE;
        let mut runs = 0;
        loop {
            let (ok, out, err) = self.run("wl-paste", &args);
            runs += 1;
            if ok && out == want {
                return;
            }
            assert!(Instant::now() < deadline, "wl-paste {args:?} never printed {want:?} ({runs} runs); last: ok {ok}, stdout {out:?}, stderr {err:?}");
            assert!(!self.t.is_finished(), "the compositor thread ended");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn serving(&self) -> bool {
        !self.t.is_finished() && RawClient::connect(&self.t.socket()).roundtrip().is_ok()
    }
}

/// A string no earlier run left anywhere.
fn random_text(tag: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("accord {tag} {:x}-{} ✓", nanos ^ u128::from(std::process::id()), std::process::id())
}

#[test]
fn stock_clients_copy_and_paste() {
    let h = Harness::start();
    let text = random_text("clipboard");
    let _copy = h.copy(&[], &text);
    h.paste_until(&[], &text);

    // A second copy replaces the first (wl-copy gives up its selection
    // when it is replaced, and exits).
    let newer = random_text("newer");
    let _copy2 = h.copy(&[], &newer);
    h.paste_until(&[], &newer);

    // The primary selection is a separate one.
    let primary = random_text("primary");
    let _copy3 = h.copy(&["--primary"], &primary);
    h.paste_until(&["--primary"], &primary);
    h.paste_until(&[], &newer);
}

#[test]
fn wayland_info_lists_the_globals() {
    let h = Harness::start();
    let (ok, out, err) = h.run("wayland-info", &[]);
    assert!(ok, "wayland-info failed: {err}\n{out}");
    for interface in [
        "wl_data_device_manager",
        "zwp_primary_selection_device_manager_v1",
        "zxdg_output_manager_v1",
        "zxdg_decoration_manager_v1",
        "wp_viewporter",
        "wp_presentation",
    ] {
        assert!(out.contains(&format!("interface: '{interface}'")), "wayland-info does not list {interface}:\n{out}");
    }
    // xdg-output's logical geometry: the whole output at scale 1.
    assert!(out.contains("logical_x: 0, logical_y: 0"), "no xdg-output position:\n{out}");
    assert!(out.contains(&format!("logical_width: {WIDTH}, logical_height: {HEIGHT}")), "no xdg-output logical size:\n{out}");
}

/// The display error among `events`, if any: (object, code, message).
fn display_error(events: &[common::Event]) -> Option<(u32, u32, String)> {
    events.iter().find(|e| e.object == 1 && e.opcode == 0).map(|e| {
        let len = e.u32_at(2) as usize;
        (e.u32_at(0), e.u32_at(1), String::from_utf8_lossy(&e.args[12..12 + len.saturating_sub(1)]).into_owned())
    })
}

/// Expects `c` cut off with a protocol error on `object`; its message.
/// (The connection may already be closed for sending: the error is read
/// from what the compositor sent before closing it.)
fn expect_cut_off(c: &mut RawClient, object: u32) -> String {
    let sync = c.new_id();
    let _ = c.try_send(1, 0, &[Arg::U(sync)]);
    match c.wait_for(|e| (e.object == 1 && e.opcode == 0) || e.object == sync) {
        Ok(e) if e.object == sync => panic!("the client was not cut off"),
        Ok(e) => {
            let (obj, _, message) = display_error(std::slice::from_ref(&e)).expect("a display error");
            assert_eq!(obj, object, "the error is on another object: {message}");
            message
        }
        Err(Gone::Timeout) => panic!("no answer"),
        Err(Gone::Disconnected(_)) => panic!("disconnected without a protocol error"),
    }
}

/// Sends one request; `false` once the compositor closed the connection.
fn send_all(c: &mut RawClient, object: u32, opcode: u16, args: &[Arg]) -> bool {
    c.try_send(object, opcode, args).is_ok()
}

#[test]
fn unbounded_selections_are_cut_off() {
    let h = Harness::start();

    // As many types as allowed, each as long as allowed: fine.
    let mut c = RawClient::connect(&h.t.socket());
    let manager = c.bind("wl_data_device_manager", 3);
    let source = c.new_id();
    c.send(manager, 0, &[Arg::U(source)]);
    let longest = "x".repeat(MAX_MIME_TYPE_LEN);
    for i in 0..MAX_MIME_TYPES_PER_SOURCE {
        let mime = format!("{i:04}{}", &longest[4..]);
        c.send(source, 0, &[Arg::S(&mime)]);
    }
    c.roundtrip().expect("a source within the bounds is fine");
    // One more: cut off.
    let _ = send_all(&mut c, source, 0, &[Arg::S("text/plain")]);
    let message = expect_cut_off(&mut c, source);
    assert!(message.contains("MIME"), "{message}");

    // Thousands of types: cut off long before the end.
    let mut c = RawClient::connect(&h.t.socket());
    let manager = c.bind("wl_data_device_manager", 3);
    let source = c.new_id();
    c.send(manager, 0, &[Arg::U(source)]);
    for i in 0..20_000 {
        if !send_all(&mut c, source, 0, &[Arg::S(&format!("application/x-attack-{i}-{}", "y".repeat(150)))]) {
            break;
        }
    }
    expect_cut_off(&mut c, source);

    // The same for the primary selection's sources, and a type too long.
    let mut c = RawClient::connect(&h.t.socket());
    let manager = c.bind("zwp_primary_selection_device_manager_v1", 1);
    let source = c.new_id();
    c.send(manager, 0, &[Arg::U(source)]);
    c.send(source, 0, &[Arg::S("text/plain")]);
    c.roundtrip().expect("one type is fine");
    c.send(source, 0, &[Arg::S(&"z".repeat(MAX_MIME_TYPE_LEN + 1))]);
    expect_cut_off(&mut c, source);

    // Sources and devices per client.
    let mut c = RawClient::connect(&h.t.socket());
    let manager = c.bind("wl_data_device_manager", 3);
    for _ in 0..MAX_SELECTION_SOURCES_PER_CLIENT {
        let source = c.new_id();
        c.send(manager, 0, &[Arg::U(source)]);
    }
    c.roundtrip().expect("sources within the bound are fine");
    let source = c.new_id();
    c.send(manager, 0, &[Arg::U(source)]);
    expect_cut_off(&mut c, manager);

    let mut c = RawClient::connect(&h.t.socket());
    let manager = c.bind("wl_data_device_manager", 3);
    let seat = c.bind("wl_seat", 5);
    for _ in 0..MAX_SELECTION_DEVICES_PER_CLIENT {
        let device = c.new_id();
        c.send(manager, 1, &[Arg::U(device), Arg::U(seat)]);
    }
    c.roundtrip().expect("devices within the bound are fine");
    let device = c.new_id();
    c.send(manager, 1, &[Arg::U(device), Arg::U(seat)]);
    expect_cut_off(&mut c, manager);

    // Destroyed sources give their place back.
    let mut c = RawClient::connect(&h.t.socket());
    let manager = c.bind("wl_data_device_manager", 3);
    for _ in 0..MAX_SELECTION_SOURCES_PER_CLIENT * 3 {
        let source = c.new_id();
        c.send(manager, 0, &[Arg::U(source)]);
        c.send(source, 0, &[Arg::S("text/plain")]);
        c.send(source, 1, &[]);
    }
    c.roundtrip().expect("sources made and destroyed one at a time are fine");

    // Meanwhile the compositor serves, and stock clients copy and paste.
    assert!(h.serving(), "the compositor stopped serving");
    let text = random_text("after the attack");
    let _copy = h.copy(&[], &text);
    h.paste_until(&[], &text);
}

/// A `w` x `h` XRGB8888 buffer, its pixel at (x, y) `pixel(x, y)`.
fn painted_buffer(c: &mut RawClient, shm: u32, w: i32, h: i32, pixel: impl Fn(i32, i32) -> u32) -> common::ShmBuffer {
    let b = shm_buffer(c, shm, w, h);
    let mut file = std::fs::File::from(b.fd.try_clone().expect("dup"));
    let bytes: Vec<u8> = (0..h).flat_map(|y| (0..w).map(move |x| (x, y))).flat_map(|(x, y)| pixel(x, y).to_le_bytes()).collect();
    file.write_all(&bytes).expect("painting the buffer");
    b
}

#[test]
fn viewporter_crops_and_scales_a_surface_in_the_frame() {
    const RED: u32 = 0xff0000;
    const GREEN: u32 = 0x00ff00;
    let h = Harness::start();
    let mut c = RawClient::connect(&h.t.socket());
    let compositor = c.bind("wl_compositor", 4);
    let shm = c.bind("wl_shm", 1);
    let wm_base = c.bind("xdg_wm_base", 1);
    let viewporter = c.bind("wp_viewporter", 1);
    let t = toplevel(&mut c, compositor, wm_base);
    let viewport = c.new_id();
    c.send(viewporter, 1, &[Arg::U(viewport), Arg::U(t.surface)]);
    // A 10x10 buffer, red on the left and green on the right; its left
    // half (5x10) is shown at 100x100: all red, and ten times as large.
    let b = painted_buffer(&mut c, shm, 10, 10, |x, _| if x < 5 { RED } else { GREEN });
    c.send(viewport, 1, &[Arg::I(0), Arg::I(0), Arg::I(5 * 256), Arg::I(10 * 256)]);
    c.send(viewport, 2, &[Arg::I(100), Arg::I(100)]);
    c.send(t.surface, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
    c.send(t.surface, 2, &[Arg::I(0), Arg::I(0), Arg::I(100), Arg::I(100)]);
    c.send(t.surface, 6, &[]);
    c.roundtrip().expect("a viewport is fine");

    let deadline = Instant::now() + DEADLINE;
    let scaled = |f: &accord_compositor::Frame| {
        // (Scaled pixels near the edges are filtered: the ones well inside
        // are what counts.)
        [(25, 25), (50, 50), (75, 75), (75, 25), (25, 75), (80, 50)].iter().all(|&(x, y)| f.pixel(x, y) == Some(RED))
            && [(110, 50), (50, 110), (150, 150)].iter().all(|&(x, y)| f.pixel(x, y) == Some(BACKGROUND))
    };
    loop {
        let frame = h.t.with(|c| c.frame().expect("reading the frame"));
        if frame.as_ref().is_some_and(scaled) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the surface was never shown at 100x100: {:?}",
            frame.map(|f| [(25, 25), (75, 75), (80, 50), (110, 50), (50, 110)].map(|(x, y)| f.pixel(x, y)))
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // A destination past the bound: cut off; others are still served.
    c.send(viewport, 2, &[Arg::I(MAX_VIEWPORT_SIZE + 1), Arg::I(10)]);
    expect_cut_off(&mut c, viewport);
    let mut c = RawClient::connect(&h.t.socket());
    let compositor = c.bind("wl_compositor", 4);
    let viewporter = c.bind("wp_viewporter", 1);
    let surface = c.new_id();
    c.send(compositor, 0, &[Arg::U(surface)]);
    let viewport = c.new_id();
    c.send(viewporter, 1, &[Arg::U(viewport), Arg::U(surface)]);
    c.send(viewport, 2, &[Arg::I(i32::MAX), Arg::I(i32::MAX)]);
    expect_cut_off(&mut c, viewport);
    assert!(h.serving(), "the compositor stopped serving");
}

#[test]
fn decorations_are_server_side_whatever_the_client_asks() {
    const CLIENT_SIDE: u32 = 1;
    const SERVER_SIDE: u32 = 2;
    let h = Harness::start();
    let mut c = RawClient::connect(&h.t.socket());
    c.history = Some(Vec::new());
    let compositor = c.bind("wl_compositor", 4);
    let wm_base = c.bind("xdg_wm_base", 1);
    let manager = c.bind("zxdg_decoration_manager_v1", 1);
    let surface = c.new_id();
    c.send(compositor, 0, &[Arg::U(surface)]);
    let xdg_surface = c.new_id();
    c.send(wm_base, 2, &[Arg::U(xdg_surface), Arg::U(surface)]);
    let tl = c.new_id();
    c.send(xdg_surface, 1, &[Arg::U(tl)]);
    let deco = c.new_id();
    c.send(manager, 1, &[Arg::U(deco), Arg::U(tl)]);
    c.send(deco, 1, &[Arg::U(CLIENT_SIDE)]);
    c.send(surface, 6, &[]);

    // The first configure carries server_side.
    let mode = c.wait_for(|e| e.object == deco && e.opcode == 0).expect("decoration configure");
    assert_eq!(mode.u32_at(0), SERVER_SIDE);
    let configure = c.wait_for(|e| e.object == xdg_surface && e.opcode == 0).expect("xdg_surface.configure");
    c.send(xdg_surface, 4, &[Arg::U(configure.u32_at(0))]);

    // Asking again (client side, then no preference): each answered by a
    // configure, never with client_side.
    for request in [(1u16, Some(CLIENT_SIDE)), (2, None), (1, Some(SERVER_SIDE))] {
        match request {
            (op, Some(mode)) => c.send(deco, op, &[Arg::U(mode)]),
            (op, None) => c.send(deco, op, &[]),
        }
        let configure = c.wait_for(|e| e.object == xdg_surface && e.opcode == 0).expect("xdg_surface.configure after set_mode");
        c.send(xdg_surface, 4, &[Arg::U(configure.u32_at(0))]);
    }
    c.roundtrip().expect("still connected");
    let modes: Vec<u32> = c.history.as_ref().expect("history").iter().filter(|e| e.object == deco && e.opcode == 0).map(|e| e.u32_at(0)).collect();
    assert!(!modes.is_empty() && modes.iter().all(|m| *m == SERVER_SIDE), "decoration modes sent: {modes:?}");
}

/// CLOCK_MONOTONIC now.
fn monotonic() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec.
    assert_eq!(unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) }, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[test]
fn presentation_feedback_comes_with_the_frame() {
    let h = Harness::start();
    let mut c = RawClient::connect(&h.t.socket());
    let compositor = c.bind("wl_compositor", 4);
    let shm = c.bind("wl_shm", 1);
    let wm_base = c.bind("xdg_wm_base", 1);
    let presentation = c.bind("wp_presentation", 1);
    let clock = c.wait_for(|e| e.object == presentation && e.opcode == 0).expect("wp_presentation.clock_id");
    assert_eq!(clock.u32_at(0), libc::CLOCK_MONOTONIC as u32);
    let t = toplevel(&mut c, compositor, wm_base);

    // Each content update is presented (not discarded), at a time between
    // its commit and the event's arrival, at the output's 60 Hz, each
    // frame's sequence number after the last.
    let mut last_seq = 0;
    for round in 0..3u32 {
        let b = painted_buffer(&mut c, shm, 20, 20, |_, _| 0x102030 * (round + 1));
        let feedback = c.new_id();
        c.send(presentation, 1, &[Arg::U(t.surface), Arg::U(feedback)]);
        let before = monotonic();
        c.send(t.surface, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
        c.send(t.surface, 2, &[Arg::I(0), Arg::I(0), Arg::I(20), Arg::I(20)]);
        c.send(t.surface, 6, &[]);
        // sync_output (0) may come first; presented (1) or discarded (2) ends it.
        let e = c.wait_for(|e| e.object == feedback && e.opcode != 0).expect("presentation feedback");
        let after = monotonic();
        assert_eq!(e.opcode, 1, "round {round}: the update was discarded, not presented");
        let time = Duration::new((u64::from(e.u32_at(0)) << 32) | u64::from(e.u32_at(1)), e.u32_at(2));
        assert!(before <= time && time <= after, "round {round}: presented at {time:?}, outside {before:?}..{after:?}");
        assert_eq!(e.u32_at(3), 16_666_666, "refresh in ns");
        let seq = (u64::from(e.u32_at(4)) << 32) | u64::from(e.u32_at(5));
        assert!(seq > last_seq, "round {round}: sequence {seq} after {last_seq}");
        last_seq = seq;
    }

    // A surface destroyed before it committed: discarded.
    let surface = c.new_id();
    c.send(compositor, 0, &[Arg::U(surface)]);
    let feedback = c.new_id();
    c.send(presentation, 1, &[Arg::U(surface), Arg::U(feedback)]);
    c.send(surface, 0, &[]);
    let e = c.wait_for(|e| e.object == feedback && e.opcode != 0).expect("presentation feedback of a destroyed surface");
    assert_eq!(e.opcode, 2, "not discarded");

    // Feedbacks piled up on one commit: bounded.
    let surface = c.new_id();
    c.send(compositor, 0, &[Arg::U(surface)]);
    for _ in 0..MAX_FEEDBACKS_PER_COMMIT {
        let feedback = c.new_id();
        c.send(presentation, 1, &[Arg::U(surface), Arg::U(feedback)]);
    }
    c.roundtrip().expect("feedbacks within the bound are fine");
    let feedback = c.new_id();
    c.send(presentation, 1, &[Arg::U(surface), Arg::U(feedback)]);
    expect_cut_off(&mut c, presentation);
    assert!(h.serving(), "the compositor stopped serving");
}

/// A drag from a press on the app's window: (data device, source).
fn start_drag(a: &mut common::input::App, mouse: &mut Device, manager: u32, icon: u32) -> (u32, u32) {
    use accord_compositor::input::evdev::{BTN_LEFT, EV_KEY};
    let device = a.c.new_id();
    a.c.send(manager, 1, &[Arg::U(device), Arg::U(a.seat)]);
    let source = a.c.new_id();
    a.c.send(manager, 0, &[Arg::U(source)]);
    a.c.send(source, 0, &[Arg::S("text/plain")]);
    a.c.send(source, 2, &[Arg::U(1)]);
    a.c.roundtrip().expect("a data device and a source");
    mouse.frame(&[(EV_KEY, BTN_LEFT, 1)]);
    let p = a.pointer;
    let press = a.wait("the button pressed", |e| e.object == p && e.opcode == 3 && e.u32_at(3) == 1);
    a.c.send(device, 0, &[Arg::U(source), Arg::U(a.surface), Arg::U(icon), Arg::U(press.u32_at(0))]);
    (device, source)
}

#[test]
fn drag_and_drop_works_and_broken_drags_do_not_panic() {
    use accord_compositor::input::evdev::{BTN_LEFT, EV_KEY, EV_REL, REL_X, REL_Y};
    use common::input::{mouse, App};
    let h = common::input::Harness::start();
    let mut m = h.device("mouse", mouse());
    let mut a = App::start(&h, 1);
    m.frame(&[(EV_REL, REL_X, 10), (EV_REL, REL_Y, 10)]);
    a.pointer_enter_serial();
    let manager = a.c.bind("wl_data_device_manager", 3);

    // A drag over the client's own window, with an icon: enter with an
    // offer of the source's type, motion, drop; the data asked for and
    // the drag finished reach the source.
    let icon = a.c.new_id();
    a.c.send(a.compositor, 0, &[Arg::U(icon)]);
    let (device, source) = start_drag(&mut a, &mut m, manager, icon);
    a.c.roundtrip().expect("the drag started");
    // The drag enters a surface when the pointer moves.
    m.frame(&[(EV_REL, REL_X, 1)]);
    let enter = a.wait("the drag's enter", |e| e.object == device && e.opcode == 1);
    let offer = enter.u32_at(4);
    let serial = enter.u32_at(0);
    let offered: Vec<String> =
        a.c.history
            .as_ref()
            .expect("history")
            .iter()
            .filter(|e| e.object == offer && e.opcode == 0)
            .map(|e| String::from_utf8_lossy(&e.args[4..4 + e.u32_at(0) as usize - 1]).into_owned())
            .collect();
    assert_eq!(offered, ["text/plain"]);
    a.c.send(offer, 0, &[Arg::U(serial), Arg::S("text/plain")]);
    a.c.send(offer, 4, &[Arg::U(1), Arg::U(1)]);
    m.frame(&[(EV_REL, REL_X, 5)]);
    a.wait("the drag's motion", |e| e.object == device && e.opcode == 3);
    m.frame(&[(EV_KEY, BTN_LEFT, 0)]);
    a.wait("the drop", |e| e.object == device && e.opcode == 4);
    a.wait("dnd_drop_performed", |e| e.object == source && e.opcode == 3);
    let pipe = memfd_pipe();
    a.c.send(offer, 1, &[Arg::S("text/plain"), Arg::Fd(pipe.as_raw_fd())]);
    a.wait("the source asked for the data", |e| e.object == source && e.opcode == 1);
    a.c.send(offer, 3, &[]);
    a.wait("dnd_finished", |e| e.object == source && e.opcode == 4);

    // The source destroyed in the middle of a drag, then the button
    // released: no panic.
    let (_, source) = start_drag(&mut a, &mut m, manager, 0);
    a.c.send(source, 1, &[]);
    a.c.roundtrip().expect("the source destroyed mid-drag");
    m.frame(&[(EV_REL, REL_X, -5), (EV_REL, REL_Y, 7)]);
    m.frame(&[(EV_KEY, BTN_LEFT, 0)]);
    a.c.roundtrip().expect("the drag ended without its source");

    // The client gone in the middle of a drag (its icon and origin with
    // it), then the pointer moved and released: no panic, others served.
    let icon = a.c.new_id();
    a.c.send(a.compositor, 0, &[Arg::U(icon)]);
    start_drag(&mut a, &mut m, manager, icon);
    a.c.roundtrip().expect("a third drag");
    drop(a);
    m.frame(&[(EV_REL, REL_X, 20), (EV_REL, REL_Y, -3)]);
    m.frame(&[(EV_KEY, BTN_LEFT, 0)]);
    let mut other = App::start(&h, 1);
    m.frame(&[(EV_REL, REL_X, 1)]);
    other.pointer_enter_serial();
    assert!(!h.t.is_finished(), "the compositor thread ended");
}

/// The write end of a pipe (the read end closed: the data goes nowhere).
fn memfd_pipe() -> std::os::fd::OwnedFd {
    use std::os::fd::FromRawFd;
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are new descriptors owned by nothing else.
    unsafe {
        drop(std::os::fd::OwnedFd::from_raw_fd(fds[0]));
        std::os::fd::OwnedFd::from_raw_fd(fds[1])
    }
}
