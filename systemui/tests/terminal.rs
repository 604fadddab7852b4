//! The terminal app against the real compositor (headless) and a real
//! shell (`/bin/sh` on a pty): keys typed on a keyboard the compositor
//! reads (evdev records through a FIFO) reach the shell through the
//! compositor's XKB keymap, translated by the terminal; the command's
//! coloured output is on screen; the shell's exit status is in the log.

use std::{path::Path, time::Instant};

use accord_compositor::{input::evdev::EV_KEY, Frame};
use accord_systemui::terminal::PALETTE;

mod support;
use common::thread::CompositorThread;
use support::{common, common::DEADLINE, log_of, spawn_with};

/// evdev's left Shift key.
const KEY_LEFTSHIFT: u16 = 42;
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

/// The evdev key (US layout) typing `c`, and whether Shift is needed.
fn key_of(c: char) -> (u16, bool) {
    const ROWS: [(&str, u16); 4] = [("1234567890-=", 2), ("qwertyuiop[]", 16), ("asdfghjkl;'`", 30), ("zxcvbnm,./", 44)];
    const SHIFTED: [(&str, u16); 4] = [("!@#$%^&*()_+", 2), ("QWERTYUIOP{}", 16), ("ASDFGHJKL:\"~", 30), ("ZXCVBNM<>?", 44)];
    match c {
        ' ' => return (57, false),
        '\n' => return (28, false),
        '\\' => return (43, false),
        '|' => return (43, true),
        _ => {}
    }
    for (table, shift) in [(ROWS, false), (SHIFTED, true)] {
        for (row, first) in table {
            if let Some(i) = row.chars().position(|r| r == c) {
                return (first + i as u16, shift);
            }
        }
    }
    panic!("no key types {c:?}");
}

fn type_text(kb: &mut common::input::Device, text: &str) {
    for c in text.chars() {
        let (key, shift) = key_of(c);
        if shift {
            kb.frame(&[(EV_KEY, KEY_LEFTSHIFT, 1)]);
        }
        kb.frame(&[(EV_KEY, key, 1)]);
        kb.frame(&[(EV_KEY, key, 0)]);
        if shift {
            kb.frame(&[(EV_KEY, KEY_LEFTSHIFT, 0)]);
        }
    }
}

/// The longest run of `color` on one row of the frame, in pixels.
fn longest_run(f: &Frame, color: u32) -> u32 {
    let mut best = 0;
    for y in 0..HEIGHT {
        let mut run = 0;
        for x in 0..WIDTH {
            run = if f.pixel(x, y) == Some(color) { run + 1 } else { 0 };
            best = best.max(run);
        }
    }
    best
}

/// The compositor (headless, a FIFO keyboard) and the terminal running
/// `/bin/sh` on it, once it has the keymap, the focus and its shell.
struct Running {
    t: CompositorThread,
    dir: std::path::PathBuf,
    _home: tempfile::TempDir,
    kb: common::input::Device,
    term: support::Kill,
}

impl Running {
    fn start(socket: &str) -> Running {
        let t = CompositorThread::start(WIDTH, HEIGHT, socket);
        let dir = t.dir.path().to_owned();
        let home = tempfile::tempdir().unwrap();
        let kb = common::input::fifo_device(&t, "keyboard", common::input::keyboard());
        let term = spawn_with("terminal", &dir, socket, &[("SHELL", Path::new("/bin/sh")), ("HOME", home.path()), ("PS1", Path::new("$ "))]);
        support::wait_said(&dir, "terminal", "never had the keymap, the focus and a shell", &["keymap taken", "keyboard focus", "the shell started"]);
        Running { t, dir, _home: home, kb, term }
    }
}

/// Waits for the terminal to exit (after its shell did); its log.
fn wait_exit(term: &mut support::Kill, dir: &Path) -> String {
    let deadline = Instant::now() + DEADLINE;
    while term.0.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the terminal did not exit after the shell:\n{}", log_of(dir, "terminal"));
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    log_of(dir, "terminal")
}

#[test]
fn typed_commands_run_in_the_shell_and_their_output_is_drawn() {
    let Running { t, dir, _home, mut kb, mut term } = Running::start("wayland-term");
    // The window fills the screen with the terminal's background, and no
    // green is shown yet.
    let green = PALETTE[2];
    let before =
        support::wait_frame(&t, "the terminal's window", &dir, "terminal", |f| f.pixel(WIDTH / 2, HEIGHT - 10) == Some(accord_systemui::terminal::BACKGROUND));
    assert_eq!(longest_run(&before, green), 0, "green before the command");

    // Shifted and unshifted keys, quotes and backslashes: a printf whose
    // output is 30 cells of green background.
    type_text(&mut kb, "printf '\\033[42m%30s\\033[m\\n' ''\n");
    support::wait_frame(&t, "the command's 30 green cells", &dir, "terminal", |f| longest_run(f, green) >= 30 * 8);

    // The shell's exit status reaches the log, and the terminal exits.
    type_text(&mut kb, "exit 7\n");
    let said = wait_exit(&mut term, &dir);
    assert!(said.contains("the shell exited") && said.contains("exit status: 7"), "{said}");
}

/// Megabytes of random bytes (escape bytes taken out, so no query's
/// answer lands in the shell's input) printed through the terminal: it
/// stays responsive, draws after a reset, and the shell's exit status
/// still arrives.
#[test]
fn a_flood_of_random_bytes_does_not_stop_the_terminal() {
    let Running { t, dir, _home, mut kb, mut term } = Running::start("wayland-flood");
    type_text(&mut kb, "head -c 2000000 /dev/urandom | tr -d '\\033\\233\\220\\235'; printf '\\033c\\033[42m%30s\\033[m\\n' ''\n");
    support::wait_frame(&t, "the green after the flood", &dir, "terminal", |f| longest_run(f, PALETTE[2]) >= 30 * 8);
    type_text(&mut kb, "exit 3\n");
    let said = wait_exit(&mut term, &dir);
    assert!(said.contains("exit status: 3"), "{said}");
}
