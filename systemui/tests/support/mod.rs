//! What the system UI's tests share: the compositor's own harness (a
//! headless compositor on a thread, raw Wayland clients, FIFO input
//! devices), and running our clients against it with their logs in the
//! compositor's directory.
#![allow(dead_code)]

use std::{
    ffi::OsStr,
    os::unix::process::CommandExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use accord_compositor::Frame;

#[path = "../../../compositor/tests/common/mod.rs"]
pub mod common;
use common::{thread::CompositorThread, DEADLINE};

/// A child process, killed and reaped on drop.
pub struct Kill(pub Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `program` as a client of the compositor on `socket` in `dir`,
/// with `env` added; its log (debug level) goes to `dir/<program>.log`.
/// `systemui`, `settings`, `terminal` and `bootanimation` are this
/// crate's binary run by that name; any other program is looked for in
/// `$PATH` (e.g. weston's demos).
pub fn spawn_with<V: AsRef<OsStr>>(program: &str, dir: &Path, socket: &str, env: &[(&str, V)]) -> Kill {
    let log = std::fs::File::create(dir.join(format!("{program}.log"))).unwrap();
    let mut command = match accord_systemui::programs::by_name(program) {
        Some(_) => Command::new(env!("CARGO_BIN_EXE_systemui")),
        None => Command::new(program),
    };
    Kill(
        command
            .arg0(program)
            .envs(env.iter().map(|(k, v)| (*k, v.as_ref())))
            .env("XDG_RUNTIME_DIR", dir)
            .env("WAYLAND_DISPLAY", socket)
            .env("ACCORD_LOG_LEVEL", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program}: {e}")),
    )
}

pub fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

/// Waits until `name`'s log holds every one of `pieces`; `what` says what
/// it did not do.
pub fn wait_said(dir: &Path, name: &str, what: &str, pieces: &[&str]) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let said = log_of(dir, name);
        if pieces.iter().all(|p| said.contains(p)) {
            return;
        }
        assert!(Instant::now() < deadline, "{name} {what}:\n{said}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for a frame that passes `ok`; on failure `name`'s log is shown.
/// With `ACCORD_TEST_SHOTS` set to a directory, the frame is saved there
/// as `<what>.png` (to look at, or for the docs).
pub fn wait_frame(t: &CompositorThread, what: &str, dir: &Path, name: &str, ok: impl Fn(&Frame) -> bool) -> Frame {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(frame) = t.with(|c| c.frame().expect("reading the frame")) {
            if ok(&frame) {
                if let Some(shots) = std::env::var_os("ACCORD_TEST_SHOTS") {
                    let png = accord_compositor::display_manager::encode_png(&frame).expect("a PNG");
                    std::fs::write(Path::new(&shots).join(format!("{what}.png")), png).expect("writing the screenshot");
                }
                return frame;
            }
        }
        assert!(Instant::now() < deadline, "{what} not seen in {DEADLINE:?}; {name} said:\n{}", log_of(dir, name));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A FIFO the compositor reads as an absolute pointer (a tablet), as the
/// compositor's own input tests feed it, on a `width` x `height` screen.
pub struct Tablet {
    device: common::input::Device,
    width: u32,
    height: u32,
}

impl Tablet {
    /// Plugs it in once `program` (logging to `dir`) has bound its pointer
    /// (so no click can reach the compositor before it listens).
    pub fn plug(t: &CompositorThread, dir: &Path, program: &str, (width, height): (u32, u32)) -> Tablet {
        use accord_compositor::input::{evdev::AbsRange, Capabilities};
        let r = AbsRange { min: 0, max: 32767 };
        let device = common::input::fifo_device(t, "tablet", Capabilities { name: "test tablet".into(), absolute_pointer: Some((r, r)), ..Default::default() });
        wait_said(dir, program, "never bound a pointer", &["pointer bound"]);
        Tablet { device, width, height }
    }

    /// Moves to pixel (`x`, `y`) and waits until the pointer is there (so
    /// the surface under it has had its enter or motion).
    pub fn move_to(&mut self, t: &CompositorThread, x: u32, y: u32) {
        use accord_compositor::input::evdev::{ABS_X, ABS_Y, EV_ABS};
        let scale = |v: u32, side: u32| (f64::from(v) * 32767.0 / f64::from(side - 1)).round() as i32;
        self.device.frame(&[(EV_ABS, ABS_X, scale(x, self.width)), (EV_ABS, ABS_Y, scale(y, self.height))]);
        let deadline = Instant::now() + DEADLINE;
        loop {
            let at = t.with(|c| c.pointer_position());
            if (at.0 - f64::from(x)).abs() <= 1.0 && (at.1 - f64::from(y)).abs() <= 1.0 {
                return;
            }
            assert!(Instant::now() < deadline, "the pointer never reached ({x}, {y}): at {at:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Presses (`true`) or releases the left button where the pointer is.
    pub fn button(&mut self, down: bool) {
        use accord_compositor::input::evdev::{BTN_LEFT, EV_KEY};
        self.device.frame(&[(EV_KEY, BTN_LEFT, i32::from(down))]);
    }

    /// Moves to pixel (`x`, `y`) and clicks the left button there.
    pub fn click(&mut self, t: &CompositorThread, x: u32, y: u32) {
        self.move_to(t, x, y);
        self.button(true);
        self.button(false);
    }

    /// Presses at `from`, moves to `to` and releases there.
    pub fn drag(&mut self, t: &CompositorThread, from: (u32, u32), to: (u32, u32)) {
        self.move_to(t, from.0, from.1);
        self.button(true);
        self.move_to(t, to.0, to.1);
        self.button(false);
    }
}
