//! The headless compositor against Debian's stock `weston-simple-shm`: its
//! window's pixels reach the frame, and a client sending garbage is cut
//! off without disturbing it.

use std::{
    io::{Read, Write},
    os::unix::net::UnixStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

mod common;

use accord_compositor::{Frame, ScreenPower, ScreenPowerSender, BACKGROUND};
use common::{frames_requested, spawn_simple_shm, thread::CompositorThread, KillOnDrop, SIMPLE_SHM};

const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// weston-simple-shm's window, mapped at the output's origin.
const WINDOW: u32 = 250;
const DEADLINE: Duration = Duration::from_secs(30);

/// A headless compositor on its own thread, stopped and joined on drop.
struct Harness {
    t: CompositorThread,
    power: ScreenPowerSender,
}

impl Harness {
    fn start() -> Harness {
        let t = CompositorThread::start(WIDTH, HEIGHT, "wayland-test");
        let power = t.with(|c| c.screen_power());
        Harness { t, power }
    }

    fn socket_path(&self) -> PathBuf {
        self.t.socket()
    }

    fn frame(&self) -> Option<Frame> {
        self.t.with(|c| c.frame().expect("reading the frame"))
    }

    fn spawn_client(&self, program: &str, debug: bool) -> ClientProcess {
        let log = self.t.dir.path().join("client.log");
        let stderr = std::fs::File::create(&log).expect("client log");
        let mut command = Command::new(program);
        if debug {
            command.env("WAYLAND_DEBUG", "1");
        }
        let child = command
            .env("XDG_RUNTIME_DIR", self.t.dir.path())
            .env("WAYLAND_DISPLAY", &self.t.socket_name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {program}: {e}"));
        ClientProcess { child, log }
    }
}

/// A client process, killed and reaped on drop.
struct ClientProcess {
    child: Child,
    log: PathBuf,
}

impl ClientProcess {
    /// Panics (with the client's stderr) if it has exited.
    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("client exited ({status}); its stderr:\n{}", read_log(&self.log));
        }
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// How many pixels of the window's area differ from the background.
fn window_pixels(frame: &Frame) -> usize {
    (0..WINDOW).flat_map(|y| (0..WINDOW).map(move |x| (x, y))).filter(|&(x, y)| frame.pixel(x, y) != Some(BACKGROUND)).count()
}

/// Pixels well outside the window that are not background.
fn stray_pixels(frame: &Frame) -> Vec<(u32, u32, Option<u32>)> {
    let mut stray = Vec::new();
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let outside = x >= WINDOW + 50 || y >= WINDOW + 50;
            if outside && frame.pixel(x, y) != Some(BACKGROUND) {
                stray.push((x, y, frame.pixel(x, y)));
            }
        }
    }
    stray
}

fn window_shown(frame: &Frame) -> bool {
    window_pixels(frame) * 2 >= (WINDOW * WINDOW) as usize && stray_pixels(frame).is_empty()
}

/// Polls until the client's window is in the frame; returns that frame.
fn wait_for_window(harness: &Harness, client: &mut ClientProcess) -> Frame {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < DEADLINE {
        client.assert_running();
        if let Some(frame) = harness.frame() {
            if window_shown(&frame) {
                return frame;
            }
            last = Some(frame);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    match last {
        None => panic!("no frame rendered in {DEADLINE:?}"),
        Some(frame) => panic!(
            "window not shown in {DEADLINE:?}: {} of {} window pixels differ from the background, stray pixels outside: {:?}; client stderr:\n{}",
            window_pixels(&frame),
            WINDOW * WINDOW,
            stray_pixels(&frame).iter().take(10).collect::<Vec<_>>(),
            read_log(&client.log)
        ),
    }
}

/// Polls until the window's pixels differ from `before` (the client is
/// still getting frame callbacks and its new buffers are drawn).
fn wait_for_change(harness: &Harness, client: &mut ClientProcess, before: &Frame) {
    let start = Instant::now();
    while start.elapsed() < DEADLINE {
        client.assert_running();
        if let Some(frame) = harness.frame() {
            let changed = (0..WINDOW).any(|y| (0..WINDOW).any(|x| frame.pixel(x, y) != before.pixel(x, y)));
            if changed && window_shown(&frame) {
                return;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the window's pixels did not change in {DEADLINE:?}; client stderr:\n{}", read_log(&client.log));
}

#[test]
fn background_before_any_client() {
    let harness = Harness::start();
    let start = Instant::now();
    let frame = loop {
        if let Some(frame) = harness.frame() {
            break frame;
        }
        assert!(start.elapsed() < DEADLINE, "no first frame");
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!((frame.width, frame.height), (WIDTH, HEIGHT));
    assert!(frame.pixels.iter().all(|&p| p == BACKGROUND), "first frame is not all background: {:06x}", frame.pixels[0]);
}

/// Screen power off: the frame is black (a dark panel) while the client
/// waits; on again, the whole output, its window included, is drawn anew.
#[test]
fn screen_power_off_and_on() {
    let harness = Harness::start();
    let mut client = harness.spawn_client(SIMPLE_SHM, false);
    wait_for_window(&harness, &mut client);
    harness.power.send(ScreenPower::Off).expect("compositor gone");
    let start = Instant::now();
    while !harness.frame().is_some_and(|f| f.pixels.iter().all(|&p| p == 0)) {
        assert!(start.elapsed() < DEADLINE, "the screen did not go dark");
        std::thread::sleep(Duration::from_millis(10));
    }
    harness.power.send(ScreenPower::On).expect("compositor gone");
    let again = wait_for_window(&harness, &mut client);
    assert!(again.pixels.iter().skip((HEIGHT as usize - 1) * WIDTH as usize).all(|&p| p == BACKGROUND), "the background is drawn again");
}

#[test]
fn simple_shm_window_is_drawn() {
    let harness = Harness::start();
    let mut client = harness.spawn_client(SIMPLE_SHM, true);
    let first = wait_for_window(&harness, &mut client);
    // The pattern moves: new frames keep coming.
    wait_for_change(&harness, &mut client, &first);

    // The client's protocol log (WAYLAND_DEBUG): the globals it was
    // offered and the maximised configure with the output's size.
    let log = read_log(&client.log);
    for global in ["wl_compositor", "wl_subcompositor", "wl_shm", "xdg_wm_base", "zxdg_output_manager_v1", "wl_output"] {
        assert!(log.contains(&format!("\"{global}\"")), "{global} not offered:\n{log}");
    }
    assert!(log.contains("\"wl_seat\""), "no wl_seat offered");
    let configure = format!(".configure({WIDTH}, {HEIGHT}, array[");
    assert!(log.lines().any(|l| l.contains("xdg_toplevel@") && l.contains(&configure)), "no {WIDTH}x{HEIGHT} toplevel configure:\n{log}");
}

#[test]
fn garbage_client_is_disconnected_and_others_keep_going() {
    let harness = Harness::start();
    let mut client = harness.spawn_client(SIMPLE_SHM, false);
    wait_for_window(&harness, &mut client);

    let mut bad = UnixStream::connect(harness.socket_path()).expect("connecting");
    bad.set_read_timeout(Some(DEADLINE)).expect("read timeout");
    // A header for wl_display (object 1) with an opcode it does not have,
    // then noise.
    let mut garbage = Vec::new();
    garbage.extend_from_slice(&1u32.to_ne_bytes());
    garbage.extend_from_slice(&((8u32 << 16) | 0x7777).to_ne_bytes());
    garbage.extend((0..248u32).map(|i| (i.wrapping_mul(37) ^ 0xa5) as u8));
    bad.write_all(&garbage).expect("writing garbage");

    // The compositor closes the connection (after, perhaps, an error event).
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match bad.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the garbage client was not disconnected: {e} after {:?}", start.elapsed()),
        }
    }

    // The well-behaved client is unaffected: its frames keep changing.
    let before = harness.frame().expect("a frame");
    wait_for_change(&harness, &mut client, &before);
    let later = harness.frame().expect("a frame");
    wait_for_change(&harness, &mut client, &later);
}

#[test]
fn render_service_binary_serves_a_client() {
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("render_service.log");
    let service = Command::new(env!("CARGO_BIN_EXE_render_service"))
        .args(["--headless", "320x240", "--socket", "wl-bin"])
        .env("XDG_RUNTIME_DIR", dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawning render_service");
    let mut service = KillOnDrop(service);

    let start = Instant::now();
    // Listening (the socket's file exists from bind(), before listen()).
    while !read_log(&log).contains("listening") {
        if let Ok(Some(status)) = service.0.try_wait() {
            panic!("render_service exited ({status}):\n{}", read_log(&log));
        }
        assert!(start.elapsed() < DEADLINE, "not listening after {DEADLINE:?}:\n{}", read_log(&log));
        std::thread::sleep(Duration::from_millis(10));
    }

    let (mut client, client_log) = spawn_simple_shm(dir.path(), "wl-bin");

    // The client gets frame callbacks (it asks for the next one each
    // time), the service stays up.
    let start = Instant::now();
    loop {
        let text = read_log(&client_log);
        if frames_requested(&text) >= 10 {
            break;
        }
        if let Ok(Some(status)) = client.0.try_wait() {
            panic!("weston-simple-shm exited ({status}):\n{text}");
        }
        if let Ok(Some(status)) = service.0.try_wait() {
            panic!("render_service exited ({status}):\n{}", read_log(&log));
        }
        assert!(start.elapsed() < DEADLINE, "no frame callbacks after {DEADLINE:?}:\n{text}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(service.0.try_wait().expect("try_wait").is_none(), "render_service exited");
}

#[test]
fn render_service_rejects_bad_arguments() {
    for args in [&["--headless", "0x10"][..], &["--headless", "big"], &["--socket", "a/b"], &["--bogus"]] {
        let dir = tempfile::tempdir().expect("temp dir");
        let output = Command::new(env!("CARGO_BIN_EXE_render_service"))
            .args(args)
            .env("XDG_RUNTIME_DIR", dir.path())
            .stdin(Stdio::null())
            .output()
            .expect("running render_service");
        assert!(!output.status.success(), "{args:?} accepted");
    }
}
