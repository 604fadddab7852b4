//! The terminal app against the real compositor (headless) and a real
//! shell (`/bin/sh` on a pty): keys typed on a keyboard the compositor
//! reads (evdev records through a FIFO) reach the shell through the
//! compositor's XKB keymap, translated by the terminal; the command's
//! coloured output is on screen; the shell's exit status is in the log;
//! text selected with a tablet's drag is copied and pasted through the
//! compositor's clipboard.

use std::{path::Path, time::Instant};

use accord_compositor::{input::evdev::EV_KEY, Frame};
use accord_systemui::terminal::PALETTE;

mod support;
use common::thread::CompositorThread;
use support::{common, common::DEADLINE, log_of, spawn_with, Tablet};

/// evdev's left Shift and Ctrl keys, and C and V.
const KEY_LEFTSHIFT: u16 = 42;
const KEY_LEFTCTRL: u16 = 29;
const KEY_C: u16 = 46;
const KEY_V: u16 = 47;
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

/// The terminal's cell width and height and its padding, in pixels (the
/// font and size it draws with).
fn cell_geometry() -> (i32, i32, i32) {
    let font = accord_systemui::font::load_mono().expect("no monospaced font: install fonts-dejavu-core").1;
    let (cw, ch) = accord_systemui::draw::CellFont::new(font, accord_systemui::programs::terminal::TEXT_PX).expect("the font").cell();
    (cw, ch, accord_systemui::terminal::PADDING)
}

/// Ctrl+Shift+`key` on the keyboard.
fn ctrl_shift(kb: &mut common::input::Device, key: u16) {
    kb.frame(&[(EV_KEY, KEY_LEFTCTRL, 1)]);
    kb.frame(&[(EV_KEY, KEY_LEFTSHIFT, 1)]);
    kb.frame(&[(EV_KEY, key, 1)]);
    kb.frame(&[(EV_KEY, key, 0)]);
    kb.frame(&[(EV_KEY, KEY_LEFTSHIFT, 0)]);
    kb.frame(&[(EV_KEY, KEY_LEFTCTRL, 0)]);
}

/// A command's output selected with a drag, copied with Ctrl+Shift+C and
/// pasted with Ctrl+Shift+V (through the compositor's clipboard, the
/// terminal being both ends) into the next command line, with keys typed
/// right after the paste landing after the pasted text: the shell makes
/// the file the pasted text names.
#[test]
fn a_selection_is_copied_and_pasted_into_the_shell() {
    let Running { t, dir, _home, mut kb, mut term } = Running::start("wayland-copy");
    let mut tablet = Tablet::plug(&t, &dir, "terminal", (WIDTH, HEIGHT));
    let (cw, ch, pad) = cell_geometry();
    // The middle of cell (column, line) of the screen, in pixels.
    let cell = |column: i32, line: i32| ((pad + column * cw + cw / 2) as u32, (pad + line * ch + ch / 2) as u32);

    // Line 0 is the command, line 1 its output, "pasted-42" (9 cells).
    type_text(&mut kb, "echo pasted-$((6*7))\n");
    let lit = |f: &Frame, line: i32, cells: i32| {
        (0..cells * cw).filter(|&x| (0..ch).any(|y| f.pixel((pad + x) as u32, (pad + line * ch + y) as u32).is_some_and(|p| p & 0xff > 0x80))).count()
    };
    support::wait_frame(&t, "the output line", &dir, "terminal", |f| lit(f, 1, 9) as i32 >= 5 * cw && lit(f, 2, 1) > 0);
    // From the left half of the first cell to the left edge of the tenth
    // (a selection ends before the half cell it stops in).
    tablet.drag(&t, (pad as u32 + 2, cell(0, 1).1), ((pad + 9 * cw) as u32 + 2, cell(0, 1).1));
    let selected = |f: &Frame| (0..WIDTH).filter(|&x| f.pixel(x, cell(4, 1).1) == Some(accord_systemui::terminal::SELECTION)).count() as i32;
    // Highlighted (the glyphs' own pixels are not the selection's colour).
    support::wait_frame(&t, "the selection", &dir, "terminal", |f| selected(f) >= 4 * cw);

    ctrl_shift(&mut kb, KEY_C);
    // Pasted once the compositor offers it back: through its clipboard.
    support::wait_said(&dir, "terminal", "did not copy the selection", &["copied bytes=9", "clipboard offered"]);
    type_text(&mut kb, "touch \"$HOME/got-");
    ctrl_shift(&mut kb, KEY_V);
    type_text(&mut kb, "\"\n");
    let file = _home.path().join("got-pasted-42");
    let deadline = Instant::now() + DEADLINE;
    while !file.exists() {
        assert!(
            Instant::now() < deadline,
            "no {}: {:?}\n{}",
            file.display(),
            std::fs::read_dir(_home.path()).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>()),
            log_of(&dir, "terminal")
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(log_of(&dir, "terminal").contains("I pasted bytes=9\n"), "{}", log_of(&dir, "terminal"));
    type_text(&mut kb, "exit 0\n");
    wait_exit(&mut term, &dir);
}

/// A hostile Wayland client with the keyboard asks for the terminal's
/// selection (more than a small pipe holds) twenty times over pipes it
/// never reads: the terminal writes at most eight at once, refuses the
/// rest and says so, and its writers end once the pipes are closed.
#[test]
fn pastes_of_the_selection_nobody_reads_are_bounded() {
    use common::{input::App, Arg};
    let Running { t, dir, _home, mut kb, term } = Running::start("wayland-copyflood");
    let mut tablet = Tablet::plug(&t, &dir, "terminal", (WIDTH, HEIGHT));
    let (cw, ch, pad) = cell_geometry();
    // A screen of "█" (three bytes each), selected whole and copied.
    type_text(&mut kb, "l=$(printf '\\342\\226\\210%.0s' $(seq 60)); for i in $(seq 40); do echo \"$l\"; done\n");
    let lit = |f: &Frame| (0..HEIGHT).filter(|&y| f.pixel((pad + 30 * cw) as u32, y).is_some_and(|p| p & 0xff > 0x80)).count();
    support::wait_frame(&t, "a screen of blocks", &dir, "terminal", |f| lit(f) as i32 >= 15 * ch);
    tablet.drag(&t, (pad as u32 + 2, pad as u32 + 2), (WIDTH - 2, HEIGHT - 2));
    ctrl_shift(&mut kb, KEY_C);
    support::wait_said(&dir, "terminal", "did not copy the selection", &["copied bytes="]);
    let said = log_of(&dir, "terminal");
    let copied: usize = said.split("copied bytes=").nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or(0);
    assert!(copied > 4096, "copied {copied} bytes: more than a small pipe holds was wanted\n{said}");
    // Offered back: the compositor has taken the selection (it refuses one
    // from a client that has lost the keyboard, which the attacker's
    // window is about to take).
    support::wait_said(&dir, "terminal", "never offered its selection back", &["clipboard offered"]);

    // The attacker: a data device first, then a window, which takes the
    // keyboard and with it the offer of the terminal's selection.
    let pid = term.0.id();
    let threads = || std::fs::read_dir(format!("/proc/{pid}/task")).map(|d| d.count()).unwrap_or(0);
    let before = threads();
    let h = common::input::Harness { t };
    let mut a = App::start_with(&h, 2, false);
    let manager = a.c.bind("wl_data_device_manager", 3);
    let device = a.c.new_id();
    a.c.send(manager, 1, &[Arg::U(device), Arg::U(a.seat)]);
    a.show();
    let offered = |e: &common::Event| e.object == device && e.opcode == 5 && e.u32_at(0) != 0;
    let seen = a.c.history.as_ref().and_then(|h| h.iter().find(|e| offered(e)).map(|e| e.u32_at(0)));
    let offer = seen.unwrap_or_else(|| a.wait("the terminal's selection offered", offered).u32_at(0));
    let mut readers = Vec::new();
    for _ in 0..20 {
        let (reader, writer) = std::io::pipe().expect("a pipe");
        // SAFETY: fcntl on a pipe this test owns; the smallest buffer.
        unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&writer), libc::F_SETPIPE_SZ, 4096) };
        a.c.send(offer, 1, &[Arg::S("text/plain;charset=utf-8"), Arg::Fd(std::os::fd::AsRawFd::as_raw_fd(&writer))]);
        readers.push(reader);
    }
    a.c.roundtrip().expect("the receives sent");
    support::wait_said(&dir, "terminal", "never refused a paste", &["pastes of the selection are still being written; this one is refused"]);
    assert!(threads() <= before + 8, "{} threads, {before} before the pastes", threads());

    // The pipes closed, the writers end.
    drop(readers);
    let deadline = Instant::now() + DEADLINE;
    while threads() > before {
        assert!(Instant::now() < deadline, "{} threads left, {before} before the pastes", threads());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
