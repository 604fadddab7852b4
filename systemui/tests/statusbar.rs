//! The system UI against the real compositor (headless): the status bar
//! is drawn along the top with the time in it, app windows (Debian's
//! stock weston-simple-shm) go below it, and it comes back by itself after
//! the compositor is restarted.

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use accord_compositor::{Frame, BACKGROUND};

const DEADLINE: Duration = Duration::from_secs(30);

// The compositor's own test harness (a headless compositor on a thread).
#[path = "../../compositor/tests/common/thread.rs"]
#[allow(dead_code)]
mod thread;
use thread::CompositorThread;

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// The bar's height and colours (systemui's bar.rs).
const BAR: u32 = 32;
const BAR_COLOR: u32 = 0x0b0f14;

/// A child process, killed and reaped on drop.
struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn(program: &str, dir: &Path, socket: &str) -> Kill {
    let log = std::fs::File::create(dir.join(format!("{}.log", Path::new(program).file_name().unwrap().to_string_lossy()))).unwrap();
    Kill(
        Command::new(program)
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

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
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

fn wait_for(t: &CompositorThread, what: &str, dir: &Path, ok: impl Fn(&Frame) -> bool) -> Frame {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(frame) = t.with(|c| c.frame().expect("reading the frame")) {
            if ok(&frame) {
                return frame;
            }
        }
        assert!(Instant::now() < deadline, "{what} not seen in {DEADLINE:?}; systemui said:\n{}", log_of(dir, "systemui"));
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn the_status_bar_keeps_its_place_and_comes_back_after_the_compositor() {
    let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-ui");
    let dir = t.dir.path().to_owned();
    let _ui = spawn(env!("CARGO_BIN_EXE_systemui"), &dir, "wayland-ui");
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
