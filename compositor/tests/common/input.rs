//! The input tests' harness: a headless compositor on its own thread,
//! FIFOs carrying evdev records standing in for devices, and a client
//! with a full-screen window and the seat's devices bound.

use std::{fs::File, io::Write, os::unix::fs::OpenOptionsExt, path::PathBuf, time::Duration};

use accord_compositor::{
    input::{Capabilities, KeyboardConfig, RawEvent},
    Frame,
};

use super::{shm_buffer, thread::CompositorThread, toplevel, Arg, Event, RawClient};

pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 240;
pub use super::DEADLINE;

/// A headless compositor on its own thread, for input tests.
pub struct Harness {
    pub t: CompositorThread,
}

impl Harness {
    pub fn start() -> Harness {
        Harness { t: CompositorThread::start(WIDTH, HEIGHT, "wayland-input") }
    }

    pub fn socket(&self) -> PathBuf {
        self.t.socket()
    }

    /// A FIFO read by the compositor as a device with `caps` (added when
    /// this returns); the test writes records into it.
    pub fn device(&self, name: &str, caps: Capabilities) -> Device {
        fifo_device(&self.t, name, caps)
    }

    /// The keymap and repeat for the next keyboard.
    pub fn set_keymap(&self, config: KeyboardConfig) {
        self.t.with(move |c| c.set_keyboard_config(config));
    }

    pub fn frame(&self) -> Frame {
        self.t.with(|c| c.frame().expect("reading the frame")).expect("no frame yet")
    }

    pub fn pointer(&self) -> (f64, f64) {
        self.t.with(|c| c.pointer_position())
    }

    /// Waits until `check` holds for a frame.
    pub fn wait_frame(&self, what: &str, check: impl Fn(&Frame) -> bool) {
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

/// A FIFO in `t`'s directory read by its compositor as a device with
/// `caps` (added when this returns); the test writes records into it.
pub fn fifo_device(t: &CompositorThread, name: &str, caps: Capabilities) -> Device {
    let path = t.dir.path().join(name);
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo");
    // Read-write: opening never blocks, and a writer exists until drop.
    let writer = std::fs::OpenOptions::new().read(true).write(true).open(&path).expect("fifo writer");
    let reader = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(&path).expect("fifo reader");
    t.with(move |c| {
        c.add_input_device(reader, caps);
    });
    Device { writer: Some(writer) }
}

pub struct Device {
    pub writer: Option<File>,
}

impl Device {
    /// Writes `events` and a SYN_REPORT after them.
    pub fn frame(&mut self, events: &[(u16, u16, i32)]) {
        let mut bytes = Vec::new();
        for &(kind, code, value) in events {
            bytes.extend_from_slice(&RawEvent { kind, code, value }.to_bytes());
        }
        bytes.extend_from_slice(&RawEvent::sync().to_bytes());
        self.writer.as_mut().expect("device unplugged").write_all(&bytes).expect("writing records");
    }

    /// The device goes away (end of file for the compositor).
    pub fn unplug(&mut self) {
        self.writer = None;
    }
}

pub fn keyboard() -> Capabilities {
    Capabilities { name: "test keyboard".into(), keyboard: true, ..Default::default() }
}

pub fn mouse() -> Capabilities {
    Capabilities { name: "test mouse".into(), relative_pointer: true, ..Default::default() }
}

/// A client with a full-screen window, a seat and the devices `caps`
/// (wl_seat capability bits: 1 pointer, 2 keyboard, 4 touch) bound.
pub struct App {
    pub c: RawClient,
    pub surface: u32,
    pub keyboard: u32,
    pub pointer: u32,
    pub touch: u32,
    pub compositor: u32,
    pub shm: u32,
    pub seat: u32,
    /// Keyboard enters on the window waited for so far.
    pub enters: usize,
    /// Its full-window wl_buffer.
    pub buffer: u32,
}

impl App {
    pub fn start(h: &Harness, caps: u32) -> App {
        Self::start_with(h, caps, true)
    }

    /// As [`App::start`]; without `shown`, the window gets no buffer (its
    /// shm buffer is made, not attached: [`App::show`] does that).
    pub fn start_with(h: &Harness, caps: u32, shown: bool) -> App {
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
        let mut app = App { c, surface: t.surface, keyboard, pointer, touch, compositor, shm, seat, enters: 0, buffer: buffer.buffer };
        if shown {
            app.show();
        }
        app
    }

    /// A committed surface (no role) with a `w` x `h` buffer of `color`.
    pub fn colored_surface(&mut self, w: i32, h: i32, color: u32) -> u32 {
        let s = self.c.new_id();
        self.c.send(self.compositor, 0, &[Arg::U(s)]);
        let b = shm_buffer(&mut self.c, self.shm, w, h);
        let mut f = File::from(b.fd.try_clone().expect("dup"));
        let px: Vec<u8> = std::iter::repeat_n(color.to_ne_bytes(), (w * h) as usize).flatten().collect();
        f.write_all(&px).expect("filling the buffer");
        self.c.send(s, 1, &[Arg::U(b.buffer), Arg::I(0), Arg::I(0)]);
        self.c.send(s, 2, &[Arg::I(0), Arg::I(0), Arg::I(w), Arg::I(h)]);
        self.c.send(s, 6, &[]);
        std::mem::forget(b.fd);
        s
    }

    /// The serial of the last pointer enter (waiting for one if none yet).
    pub fn pointer_enter_serial(&mut self) -> u32 {
        let p = self.pointer;
        if let Some(e) = self.c.history.as_ref().and_then(|h| h.iter().rev().find(|e| e.object == p && e.opcode == 0)) {
            return e.u32_at(0);
        }
        self.wait("pointer enter", |e| e.object == p && e.opcode == 0).u32_at(0)
    }

    /// Attaches the window's buffer and commits.
    pub fn show(&mut self) {
        self.c.send(self.surface, 1, &[Arg::U(self.buffer), Arg::I(0), Arg::I(0)]);
        self.c.send(self.surface, 6, &[]);
        self.c.roundtrip().expect("window committed");
    }

    pub fn wait(&mut self, what: &str, want: impl FnMut(&Event) -> bool) -> Event {
        self.c.wait_for(want).unwrap_or_else(|e| panic!("never: {what}: {e:?}"))
    }

    /// The next wl_keyboard.key: (key, state).
    pub fn key(&mut self) -> (u32, u32) {
        let kb = self.keyboard;
        let e = self.wait("a key", |e| e.object == kb && e.opcode == 3);
        (e.u32_at(2), e.u32_at(3))
    }

    /// Waits for the next keyboard enter on the window (it may have come
    /// during an earlier round trip).
    pub fn wait_keyboard_enter(&mut self) {
        let (kb, surface) = (self.keyboard, self.surface);
        let is_enter = move |e: &Event| e.object == kb && e.opcode == 1 && e.u32_at(1) == surface;
        while self.c.history.as_ref().map_or(0, |h| h.iter().filter(|e| is_enter(e)).count()) <= self.enters {
            self.wait("keyboard enter", is_enter);
        }
        self.enters += 1;
    }
}

/// A pixel of `f`.
pub fn px(f: &Frame, x: u32, y: u32) -> u32 {
    f.pixels[(y * f.width + x) as usize]
}

pub fn fixed(v: u32) -> f64 {
    f64::from(v as i32) / 256.0
}
