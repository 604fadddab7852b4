//! Input through the headless compositor: FIFOs carrying evdev records
//! stand in for the kernel's devices (the kernel's own devices are used
//! by the QEMU system test), raw Wayland clients see what the seat
//! delivers: keyboard focus and keys, the task switcher, pointer enter,
//! motion and buttons, the cursor drawn, touch points, and what a device
//! that goes away held being released.

use std::{
    fs::File,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::PathBuf,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc,
    },
    thread::JoinHandle,
    time::Duration,
};

mod common;

use accord_compositor::{
    input::{
        evdev::{
            AbsRange, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_SLOT, ABS_MT_TRACKING_ID, ABS_X, ABS_Y, BTN_LEFT, EV_ABS, EV_KEY, EV_REL, KEY_A,
            KEY_LEFTALT, KEY_TAB, REL_WHEEL, REL_X, REL_Y,
        },
        Capabilities, KeyboardConfig, RawEvent,
    },
    Compositor, Frame, SocketConfig, BACKGROUND,
};
use common::{shm_buffer, toplevel, Arg, Event, RawClient};

const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;
const DEADLINE: Duration = Duration::from_secs(30);

enum Cmd {
    Keymap(KeyboardConfig),
    AddDevice(File, Capabilities),
    Frame(mpsc::Sender<Option<Frame>>),
    Pointer(mpsc::Sender<(f64, f64)>),
}

/// A headless compositor on its own thread.
struct Harness {
    dir: tempfile::TempDir,
    cmds: mpsc::Sender<Cmd>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Harness {
    fn start() -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = SocketConfig { dir: dir.path().to_path_buf(), name: "wayland-input".into() };
        let stop = Arc::new(AtomicBool::new(false));
        let (cmds, incoming) = mpsc::channel::<Cmd>();
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_stop = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut compositor = match Compositor::headless(WIDTH, HEIGHT, &config) {
                Ok(c) => c,
                Err(err) => {
                    let _ = ready_tx.send(Err(err.to_string()));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            while !thread_stop.load(Ordering::SeqCst) {
                compositor.dispatch(Some(Duration::from_millis(5))).expect("dispatch");
                while let Ok(cmd) = incoming.try_recv() {
                    match cmd {
                        Cmd::Keymap(config) => compositor.set_keyboard_config(config),
                        Cmd::AddDevice(file, caps) => {
                            compositor.add_input_device(file, caps);
                        }
                        Cmd::Frame(reply) => {
                            let _ = reply.send(compositor.frame().expect("reading the frame"));
                        }
                        Cmd::Pointer(reply) => {
                            let _ = reply.send(compositor.pointer_position());
                        }
                    }
                }
            }
        });
        ready_rx.recv_timeout(DEADLINE).expect("compositor thread did not start").expect("compositor");
        Harness { dir, cmds, stop, thread: Some(thread) }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("wayland-input")
    }

    /// A FIFO read by the compositor as a device with `caps`; the test
    /// writes records into it.
    fn device(&self, name: &str, caps: Capabilities) -> Device {
        let path = self.dir.path().join(name);
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
        // Read-write: opening never blocks, and a writer exists until drop.
        let writer = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("fifo writer");
        let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).expect("fifo reader");
        self.cmds.send(Cmd::AddDevice(reader, caps)).expect("compositor gone");
        Device { writer: Some(writer) }
    }

    fn frame(&self) -> Frame {
        let (tx, rx) = mpsc::channel();
        self.cmds.send(Cmd::Frame(tx)).expect("compositor gone");
        rx.recv_timeout(DEADLINE).expect("no answer").expect("no frame yet")
    }

    fn pointer(&self) -> (f64, f64) {
        let (tx, rx) = mpsc::channel();
        self.cmds.send(Cmd::Pointer(tx)).expect("compositor gone");
        rx.recv_timeout(DEADLINE).expect("no answer")
    }

    /// Waits until `check` holds for a frame.
    fn wait_frame(&self, what: &str, check: impl Fn(&Frame) -> bool) {
        let deadline = std::time::Instant::now() + DEADLINE;
        loop {
            if check(&self.frame()) {
                return;
            }
            assert!(std::time::Instant::now() < deadline, "never: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Device {
    writer: Option<File>,
}

impl Device {
    /// Writes `events` and a SYN_REPORT after them.
    fn frame(&mut self, events: &[(u16, u16, i32)]) {
        let mut bytes = Vec::new();
        for &(kind, code, value) in events {
            bytes.extend_from_slice(&RawEvent { kind, code, value }.to_bytes());
        }
        bytes.extend_from_slice(&RawEvent::sync().to_bytes());
        self.writer.as_mut().expect("device unplugged").write_all(&bytes).expect("writing records");
    }

    /// The device goes away (end of file for the compositor).
    fn unplug(&mut self) {
        self.writer = None;
    }
}

fn keyboard() -> Capabilities {
    Capabilities { name: "test keyboard".into(), keyboard: true, ..Default::default() }
}

fn mouse() -> Capabilities {
    Capabilities { name: "test mouse".into(), relative_pointer: true, ..Default::default() }
}

/// A client with a full-screen window, a seat and the devices `caps`
/// (wl_seat capability bits: 1 pointer, 2 keyboard, 4 touch) bound.
struct App {
    c: RawClient,
    surface: u32,
    keyboard: u32,
    pointer: u32,
    touch: u32,
    /// Keyboard enters on the window waited for so far.
    enters: usize,
    /// Its full-window wl_buffer.
    buffer: u32,
}

impl App {
    fn start(h: &Harness, caps: u32) -> App {
        Self::start_with(h, caps, true)
    }

    /// As [`App::start`]; without `shown`, the window gets no buffer (its
    /// shm buffer is made, not attached: [`App::show`] does that).
    fn start_with(h: &Harness, caps: u32, shown: bool) -> App {
        let mut c = RawClient::connect(&h.socket());
        c.history = Some(Vec::new());
        let compositor = c.bind("wl_compositor", 4);
        let shm = c.bind("wl_shm", 1);
        let wm_base = c.bind("xdg_wm_base", 1);
        let seat = c.bind("wl_seat", 5);
        let got = c.wait_for(|e| e.object == seat && e.opcode == 0 && e.u32_at(0) & caps == caps).expect("seat capabilities");
        assert_eq!(got.u32_at(0) & caps, caps);
        let (mut keyboard, mut pointer, mut touch) = (0, 0, 0);
        if caps & 1 != 0 {
            pointer = c.new_id();
            c.send(seat, 0, &[Arg::U(pointer)]);
        }
        if caps & 2 != 0 {
            keyboard = c.new_id();
            c.send(seat, 1, &[Arg::U(keyboard)]);
        }
        if caps & 4 != 0 {
            touch = c.new_id();
            c.send(seat, 2, &[Arg::U(touch)]);
        }
        let t = toplevel(&mut c, compositor, wm_base);
        let buffer = shm_buffer(&mut c, shm, WIDTH as i32, HEIGHT as i32);
        // The buffer's memfd stays mapped by the compositor.
        std::mem::forget(buffer.fd);
        let mut app = App { c, surface: t.surface, keyboard, pointer, touch, enters: 0, buffer: buffer.buffer };
        if shown {
            app.show();
        }
        app
    }

    /// Attaches the window's buffer and commits.
    fn show(&mut self) {
        self.c.send(self.surface, 1, &[Arg::U(self.buffer), Arg::I(0), Arg::I(0)]);
        self.c.send(self.surface, 6, &[]);
        self.c.roundtrip().expect("window committed");
    }

    fn wait(&mut self, what: &str, want: impl FnMut(&Event) -> bool) -> Event {
        self.c.wait_for(want).unwrap_or_else(|e| panic!("never: {what}: {e:?}"))
    }

    /// The next wl_keyboard.key: (key, state).
    fn key(&mut self) -> (u32, u32) {
        let kb = self.keyboard;
        let e = self.wait("a key", |e| e.object == kb && e.opcode == 3);
        (e.u32_at(2), e.u32_at(3))
    }

    /// Waits for the next keyboard enter on the window (it may have come
    /// during an earlier round trip).
    fn wait_keyboard_enter(&mut self) {
        let (kb, surface) = (self.keyboard, self.surface);
        let is_enter = move |e: &Event| e.object == kb && e.opcode == 1 && e.u32_at(1) == surface;
        while self.c.history.as_ref().map_or(0, |h| h.iter().filter(|e| is_enter(e)).count()) <= self.enters {
            self.wait("keyboard enter", is_enter);
        }
        self.enters += 1;
    }
}

fn fixed(v: u32) -> f64 {
    f64::from(v as i32) / 256.0
}

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
    h.cmds.send(Cmd::Keymap(bad)).expect("compositor gone");
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
