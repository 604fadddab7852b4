//! `terminal`: Accord's terminal application, a Wayland client of
//! render_service. It runs the user's shell (`$SHELL`, else `/bin/sh`) on
//! a pty, shows its screen in an xdg toplevel (maximised by the
//! compositor's window policy) with DejaVu Sans Mono, and sends it the
//! keys typed, translated with the compositor's XKB keymap. The wheel
//! scrolls back through [`crate::terminal::SCROLLBACK`] lines.
//!
//! Copy and paste as terminals do: a drag with the left button selects
//! (drawn highlighted), Ctrl+Shift+C puts the selection on the clipboard
//! (`wl_data_device`, as `text/plain;charset=utf-8` and the older names),
//! Ctrl+Shift+V types the clipboard's text into the shell (bracketed when
//! the program asked for it). A paste is read at most [`MAX_PASTE`]
//! bytes, without stopping the window meanwhile.
//!
//! The launcher starts it as init's service `app.terminal` (uid `shell`,
//! as `hdc shell` runs: the device's developer shell, unprivileged). When
//! the shell exits, the terminal says how in hilog and exits; when the
//! window is closed or the compositor goes away, the shell is hung up.

use std::{
    collections::HashMap,
    fs::File,
    io::{ErrorKind, Read, Write},
    os::{fd::AsRawFd, unix::fs::FileExt},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::{
    draw::{Canvas, CellFont},
    font,
    terminal::{grid_size, keys::Keyboard, keys::MAX_KEYMAP, Screen, Size},
};
use alacritty_terminal::{
    event::{OnResize, WindowSize},
    tty::{self, ChildEvent, EventedPty, Pty},
};
use anyhow::{bail, Context};
use smithay_client_toolkit::{
    compositor::CompositorState,
    data_device_manager::{
        data_device::{DataDevice, DataDeviceHandler},
        data_offer::{DataOfferHandler, DragOffer},
        data_source::{CopyPasteSource, DataSourceHandler},
        DataDeviceManagerState, ReadPipe, WritePipe,
    },
    dispatch2::Dispatch2,
    output::OutputState,
    reexports::client::{
        globals::registry_queue_init,
        protocol::{wl_data_device::WlDataDevice, wl_data_device_manager::DndAction, wl_data_source::WlDataSource, wl_keyboard, wl_pointer, wl_seat, wl_shm},
        Connection, Proxy, QueueHandle, WEnum,
    },
    registry::RegistryState,
    seat::{
        pointer::{PointerEvent, PointerEventKind, PointerHandler},
        Capability, SeatHandler, SeatState,
    },
    shell::{
        xdg::{
            window::{Window, WindowConfigure, WindowDecorations, WindowHandler},
            XdgShell,
        },
        WaylandSurface,
    },
    shm::{slot::SlotPool, Shm},
};
use tracing::{debug, info, warn};

/// The text size, in pixels.
pub const TEXT_PX: f32 = 16.0;
/// The window size asked for when the compositor leaves it to us.
const DEFAULT_SIZE: (u32, u32) = (800, 480);
/// The largest window drawn (a larger configure is clamped).
const MAX_SIDE: u32 = 8192;
/// Bytes read from the pty before the screen is drawn again.
const READ_CHUNK: usize = 64 * 1024;
const READS_PER_TURN: usize = 4;
/// The most typed bytes held while the shell does not read them; keys
/// beyond are dropped, and said.
const MAX_PENDING_INPUT: usize = 256 * 1024;
/// How long the shell's exit status is waited for once the pty closed.
const EXIT_WAIT: Duration = Duration::from_secs(5);
/// The most bytes a paste reads; the rest is left (and said).
pub const MAX_PASTE: usize = 1024 * 1024;
/// The most pastes of our selection written at once (a thread each, until
/// its reader has it all or goes); more are refused, and said.
const MAX_COPY_WRITERS: usize = 8;
/// The text types the clipboard is offered in and looked for in, in order
/// of preference (the last ones are X11's, which some clients still use).
const TEXT_TYPES: [&str; 5] = ["text/plain;charset=utf-8", "text/plain", "UTF8_STRING", "TEXT", "STRING"];
/// evdev codes: the left button, and the C and V keys (with Ctrl+Shift,
/// copy and paste).
const BTN_LEFT: u32 = 0x110;
const KEY_C: u32 = 46;
const KEY_V: u32 = 47;

pub fn main() -> anyhow::Result<()> {
    accord_hilog::init_tracing("terminal", 0xD002901);
    let (path, bytes) = font::load_mono().with_context(|| format!("no monospaced font (looked in $ACCORD_MONO_FONT and {:?})", font::MONO_FONT_PATHS))?;
    let cells = CellFont::new(bytes, TEXT_PX).with_context(|| format!("{} does not load", path.display()))?;
    let conn = Connection::connect_to_env().context("connecting to the compositor ($WAYLAND_DISPLAY)")?;
    let status = run(conn, cells)?;
    match status {
        Some(status) => info!(%status, "the shell exited"),
        None => info!("the shell exited, its status unknown"),
    }
    Ok(())
}

/// Runs the window until the shell exits (its status) or the window is
/// closed (`None`).
fn run(conn: Connection, font: CellFont) -> anyhow::Result<Option<std::process::ExitStatus>> {
    let (globals, mut queue) = registry_queue_init(&conn).context("reading the compositor's globals")?;
    let qh = queue.handle();
    let compositor = CompositorState::bind(&globals, &qh).context("wl_compositor")?;
    let xdg = XdgShell::bind(&globals, &qh).context("xdg_wm_base")?;
    let shm = Shm::bind(&globals, &qh).context("wl_shm")?;
    let surface = compositor.create_surface(&qh);
    let window = xdg.create_window(surface, WindowDecorations::RequestServer, &qh);
    window.set_title("Terminal");
    window.set_app_id("terminal");
    window.commit();
    let pool = SlotPool::new((DEFAULT_SIZE.0 * DEFAULT_SIZE.1 * 4) as usize, &shm).context("a shared-memory pool")?;
    let mut app = App {
        registry: RegistryState::new(&globals),
        output: OutputState::new(&globals, &qh),
        seat: SeatState::new(&globals, &qh),
        data: DataDeviceManagerState::bind(&globals, &qh).map_err(|e| warn!(%e, "no wl_data_device_manager: no copy and paste")).ok(),
        device: None,
        copied: None,
        copy_writers: Arc::new(AtomicUsize::new(0)),
        paste: None,
        key_serial: 0,
        selecting: false,
        shm,
        pool,
        window,
        pointer: None,
        keys: Keyboard::default(),
        screen: Screen::new(Size { columns: 80, lines: 24 }),
        font,
        size: None,
        pty: None,
        dirty: true,
        frame_pending: false,
        to_pty: Vec::new(),
        dropped_input: false,
        repeat: Repeat::default(),
        closed: false,
    };
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        queue.flush().context("sending to the compositor")?;
        queue.dispatch_pending(&mut app).context("handling the compositor's events")?;
        if app.closed {
            info!("the window was closed: hanging up the shell");
            return Ok(None);
        }
        app.repeat_keys();
        app.read_paste(&mut buf);
        if let Some(status) = app.pump_pty(&mut buf)? {
            return Ok(status);
        }
        if let Some(title) = app.screen.take_title() {
            app.window.set_title(if title.is_empty() { "Terminal".to_owned() } else { title });
        }
        if let Err(e) = app.draw(&qh) {
            warn!("the screen not drawn: {e:#}");
        }
        queue.flush().context("sending to the compositor")?;

        let Some(guard) = queue.prepare_read() else { continue };
        let mut fds = vec![libc::pollfd { fd: guard.connection_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 }];
        if let Some(pty) = &app.pty {
            let events = libc::POLLIN | if app.to_pty.is_empty() { 0 } else { libc::POLLOUT };
            fds.push(libc::pollfd { fd: pty.file().as_raw_fd(), events, revents: 0 });
        }
        if let Some(paste) = &app.paste {
            fds.push(libc::pollfd { fd: paste.pipe.as_raw_fd(), events: libc::POLLIN, revents: 0 });
        }
        let timeout = app.repeat.next.map_or(-1, |at| at.saturating_duration_since(Instant::now()).as_millis().min(60_000) as i32);
        // SAFETY: `fds` holds valid pollfds, its length is passed.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(anyhow::Error::new(e).context("waiting for the compositor and the shell"));
            }
        } else if r > 0 && fds[0].revents != 0 {
            match guard.read() {
                Ok(_) => {}
                Err(smithay_client_toolkit::reexports::client::backend::WaylandError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(anyhow::Error::new(e).context("reading from the compositor")),
            }
        }
    }
}

/// A paste being read: the pipe from the clipboard's owner and the bytes
/// so far.
struct Paste {
    pipe: ReadPipe,
    text: Vec<u8>,
    /// Keys typed meanwhile, sent after the text.
    typed_after: Vec<u8>,
}

/// Key repeat, done by the client as Wayland has it: after `delay` ms
/// held, the key is sent again `rate` times a second.
#[derive(Debug, Default)]
struct Repeat {
    rate: i32,
    delay: i32,
    key: Option<u32>,
    next: Option<Instant>,
}

struct App {
    registry: RegistryState,
    output: OutputState,
    seat: SeatState,
    /// Copy and paste: the manager, the seat's data device, the text on
    /// the clipboard while it is ours, a paste being read.
    data: Option<DataDeviceManagerState>,
    device: Option<DataDevice>,
    copied: Option<(CopyPasteSource, String)>,
    /// Pastes of our selection being written ([`MAX_COPY_WRITERS`]).
    copy_writers: Arc<AtomicUsize>,
    paste: Option<Paste>,
    /// The last key press's serial (setting the clipboard needs one).
    key_serial: u32,
    /// The left button is down and drags the selection.
    selecting: bool,
    shm: Shm,
    pool: SlotPool,
    window: Window,
    pointer: Option<wl_pointer::WlPointer>,
    keys: Keyboard,
    screen: Screen,
    font: CellFont,
    /// The window's size once configured.
    size: Option<(u32, u32)>,
    /// The shell's pty, from the first configure on.
    pty: Option<Pty>,
    dirty: bool,
    /// A frame callback is awaited: drawing again waits for it, so a
    /// program printing fast costs one frame per compositor frame.
    frame_pending: bool,
    /// Typed bytes the shell has not read yet.
    to_pty: Vec<u8>,
    dropped_input: bool,
    repeat: Repeat,
    closed: bool,
}

impl App {
    fn window_size(&self) -> WindowSize {
        let (cw, ch) = self.font.cell();
        let s = self.screen.size();
        WindowSize {
            num_lines: s.lines.min(u16::MAX as usize) as u16,
            num_cols: s.columns.min(u16::MAX as usize) as u16,
            cell_width: cw as u16,
            cell_height: ch as u16,
        }
    }

    fn configured(&mut self, w: u32, h: u32) {
        self.size = Some((w, h));
        self.screen.resize(grid_size(w, h, self.font.cell()));
        let size = self.window_size();
        match &mut self.pty {
            Some(pty) => pty.on_resize(size),
            None => match spawn_shell(size) {
                Ok(pty) => {
                    info!(pid = pty.child().id(), columns = size.num_cols, lines = size.num_lines, "the shell started");
                    self.pty = Some(pty);
                }
                Err(e) => {
                    warn!("the shell did not start: {e:#}");
                    self.screen.feed(format!("terminal: the shell did not start: {e:#}\r\n").as_bytes());
                }
            },
        }
        self.dirty = true;
    }

    fn type_key(&mut self, key: u32) {
        let bytes = self.keys.bytes(key, self.screen.app_cursor());
        self.send(bytes);
    }

    /// Queues `bytes` for the shell, as typed; while a paste is being
    /// read, after it (keys typed then come after the pasted text).
    fn send(&mut self, bytes: Vec<u8>) {
        if bytes.is_empty() {
            return;
        }
        if let Some(paste) = &mut self.paste {
            if paste.typed_after.len() + bytes.len() <= MAX_PENDING_INPUT {
                paste.typed_after.extend_from_slice(&bytes);
            }
            return;
        }
        if self.to_pty.len() + bytes.len() > MAX_PENDING_INPUT {
            if !self.dropped_input {
                warn!("the shell reads no input: typed keys dropped");
                self.dropped_input = true;
            }
            return;
        }
        self.dropped_input = false;
        self.to_pty.extend_from_slice(&bytes);
        self.screen.scroll_to_bottom();
        self.dirty = true;
    }

    /// Ctrl+Shift+C: the selection goes on the clipboard.
    fn copy(&mut self, qh: &QueueHandle<App>) {
        let Some(text) = self.screen.selection_text() else {
            debug!("copy: nothing is selected");
            return;
        };
        let (Some(data), Some(device)) = (&self.data, &self.device) else {
            warn!("copy: the compositor has no clipboard (wl_data_device_manager)");
            return;
        };
        let source = data.create_copy_paste_source(qh, TEXT_TYPES);
        source.set_selection(device, self.key_serial);
        info!(bytes = text.len(), "copied");
        self.copied = Some((source, text));
    }

    /// Ctrl+Shift+V: the clipboard's text is asked for; [`App::read_paste`]
    /// types it once it has all come.
    fn start_paste(&mut self) {
        let Some(offer) = self.device.as_ref().and_then(|d| d.data().selection_offer()) else {
            // Copied a moment ago, the compositor's offer of it not here
            // yet: the clipboard is ours, and its text is at hand.
            if let Some((_, text)) = &self.copied {
                info!(bytes = text.len(), "pasted (own selection)");
                let bytes = self.screen.paste_bytes(&text.clone());
                self.send(bytes);
            } else {
                debug!("paste: the clipboard is empty");
            }
            return;
        };
        let Some(mime) = offer.with_mime_types(|types| TEXT_TYPES.iter().find(|t| types.iter().any(|m| m == *t)).map(|t| t.to_string())) else {
            info!("paste: the clipboard holds no text");
            return;
        };
        match offer.receive(mime) {
            Ok(pipe) => {
                if let Err(e) = nix::fcntl::fcntl(pipe.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)) {
                    warn!(%e, "paste: the pipe cannot be made non-blocking");
                    return;
                }
                self.paste = Some(Paste { pipe, text: Vec::new(), typed_after: Vec::new() });
            }
            Err(e) => warn!(%e, "paste: the clipboard cannot be read"),
        }
    }

    /// Reads what the paste's pipe has; at its end (or at [`MAX_PASTE`])
    /// the text is typed into the shell.
    fn read_paste(&mut self, buf: &mut [u8]) {
        let Some(paste) = &mut self.paste else { return };
        let done = loop {
            match paste.pipe.read(buf) {
                Ok(0) => break true,
                Ok(n) => {
                    let room = MAX_PASTE - paste.text.len();
                    paste.text.extend_from_slice(&buf[..n.min(room)]);
                    if n >= room {
                        warn!("paste: more than {MAX_PASTE} bytes on the clipboard; the rest is left");
                        break true;
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!(%e, "paste: reading the clipboard");
                    break true;
                }
            }
        };
        if done {
            if let Some(paste) = self.paste.take() {
                let text = String::from_utf8_lossy(&paste.text);
                info!(bytes = paste.text.len(), "pasted");
                let bytes = self.screen.paste_bytes(&text);
                self.send(bytes);
                self.send(paste.typed_after);
            }
        }
    }

    /// The cell of the view under surface position (`x`, `y`), and whether
    /// it is the cell's right half.
    fn cell_at(&self, x: f64, y: f64) -> (usize, usize, bool) {
        use crate::terminal::PADDING;
        let (cw, ch) = self.font.cell();
        let (cw, ch) = (f64::from(cw.max(1)), f64::from(ch.max(1)));
        let cx = ((x - f64::from(PADDING)) / cw).max(0.0);
        let cy = ((y - f64::from(PADDING)) / ch).max(0.0);
        (cx as usize, cy as usize, cx.fract() >= 0.5)
    }

    fn repeat_keys(&mut self) {
        let (Some(key), Some(at)) = (self.repeat.key, self.repeat.next) else { return };
        let now = Instant::now();
        if now < at {
            return;
        }
        self.type_key(key);
        let period = Duration::from_millis(1000 / self.repeat.rate.max(1) as u64);
        // A late wake-up sends one repeat, not a burst.
        self.repeat.next = Some((at + period).max(now));
    }

    /// Moves bytes between the pty and the screen. `Some(status)` once the
    /// shell is gone.
    fn pump_pty(&mut self, buf: &mut [u8]) -> anyhow::Result<Option<Option<std::process::ExitStatus>>> {
        let Some(pty) = &mut self.pty else { return Ok(None) };
        if !self.to_pty.is_empty() {
            match pty.file().write(&self.to_pty) {
                Ok(n) => {
                    self.to_pty.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                // The shell is going: the read below sees it.
                Err(e) => debug!(%e, "writing to the pty"),
            }
        }
        for _ in 0..READS_PER_TURN {
            match pty.file().read(buf) {
                Ok(0) => return Ok(Some(wait_exit(pty))),
                Ok(n) => {
                    self.screen.feed(&buf[..n]);
                    self.dirty = true;
                    let reply = self.screen.take_reply();
                    if self.to_pty.len() + reply.len() <= MAX_PENDING_INPUT {
                        self.to_pty.extend_from_slice(&reply);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // EIO: every process holding the pty's other side is gone.
                Err(e) if e.raw_os_error() == Some(libc::EIO) => return Ok(Some(wait_exit(pty))),
                Err(e) => bail!("reading the pty: {e}"),
            }
        }
        Ok(None)
    }

    /// The compositor showed the last frame: the next may be drawn.
    fn frame_done(&mut self) {
        self.frame_pending = false;
    }

    fn draw(&mut self, qh: &QueueHandle<App>) -> anyhow::Result<()> {
        let Some((w, h)) = self.size.filter(|_| self.dirty && !self.frame_pending) else { return Ok(()) };
        let (w, h) = (w as i32, h as i32);
        let (buffer, pixels) = self.pool.create_buffer(w, h, w * 4, wl_shm::Format::Argb8888).context("a buffer for the screen")?;
        let mut canvas = Canvas::new(pixels, w, h).context("the buffer is smaller than the window")?;
        self.screen.draw(&mut canvas, &mut self.font);
        let surface = self.window.wl_surface();
        surface.damage_buffer(0, 0, w, h);
        surface.frame(qh, smithay_client_toolkit::compositor::FrameCallbackData(surface.clone()));
        buffer.attach_to(surface).context("attaching the screen's buffer")?;
        self.window.commit();
        self.dirty = false;
        self.frame_pending = true;
        Ok(())
    }
}

/// Starts the shell on a new pty of `size`.
fn spawn_shell(size: WindowSize) -> anyhow::Result<Pty> {
    let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".to_owned());
    let env = HashMap::from([("TERM".to_owned(), "xterm-256color".to_owned()), ("COLORTERM".to_owned(), "truecolor".to_owned())]);
    let working_directory = std::env::var_os("HOME").map(Into::into).filter(|p: &std::path::PathBuf| p.is_dir());
    let options = tty::Options { shell: Some(tty::Shell::new(shell.clone(), Vec::new())), working_directory, drain_on_exit: false, env };
    tty::new(&options, size, 0).with_context(|| format!("starting {shell} on a pty"))
}

/// The shell's exit status, once the pty says it is gone.
fn wait_exit(pty: &mut Pty) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + EXIT_WAIT;
    while Instant::now() < deadline {
        if let Some(ChildEvent::Exited(status)) = pty.next_child_event() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    warn!("the pty closed but the shell has not exited");
    None
}

/// `wl_keyboard`'s user data: its events go to the app's [`Keyboard`].
struct KeyboardData;

impl Dispatch2<wl_keyboard::WlKeyboard, App> for KeyboardData {
    fn event(&self, app: &mut App, _: &wl_keyboard::WlKeyboard, event: wl_keyboard::Event, _: &Connection, qh: &QueueHandle<App>) {
        use wl_keyboard::{Event, KeyState, KeymapFormat};
        match event {
            Event::Keymap { format, fd, size } => {
                if format != WEnum::Value(KeymapFormat::XkbV1) {
                    warn!(?format, "a keymap in a format other than XKB v1: keys are not translated");
                    return;
                }
                let size = size as usize;
                if size > MAX_KEYMAP {
                    warn!(size, "the compositor's keymap is too big: keys are not translated");
                    return;
                }
                // Read at offsets: the compositor may share one open file
                // between clients, so its offset is not ours to move.
                let mut text = vec![0u8; size];
                match File::from(fd).read_exact_at(&mut text, 0) {
                    Ok(()) => match app.keys.set_keymap(&text) {
                        Ok(()) => debug!(size, "keymap taken"),
                        Err(e) => warn!("{e}: keys are not translated"),
                    },
                    Err(e) => warn!(%e, "the keymap does not read: keys are not translated"),
                }
            }
            Event::Key { key, state, serial, .. } => match state {
                WEnum::Value(KeyState::Pressed) if app.keys.ctrl_shift() && (key == KEY_C || key == KEY_V) => {
                    app.key_serial = serial;
                    if key == KEY_C {
                        app.copy(qh);
                    } else {
                        app.start_paste();
                    }
                }
                WEnum::Value(KeyState::Pressed) => {
                    app.key_serial = serial;
                    app.type_key(key);
                    if app.repeat.rate > 0 && app.keys.repeats(key) {
                        app.repeat.key = Some(key);
                        app.repeat.next = Some(Instant::now() + Duration::from_millis(app.repeat.delay.max(0) as u64));
                    }
                }
                _ if app.repeat.key == Some(key) => app.repeat = Repeat { key: None, next: None, ..app.repeat },
                _ => {}
            },
            Event::Modifiers { mods_depressed, mods_latched, mods_locked, group, .. } => {
                app.keys.set_modifiers(mods_depressed, mods_latched, mods_locked, group)
            }
            Event::RepeatInfo { rate, delay } => {
                app.repeat.rate = rate.max(0);
                app.repeat.delay = delay.max(0);
            }
            Event::Leave { .. } => app.repeat = Repeat { key: None, next: None, ..app.repeat },
            Event::Enter { .. } => info!("keyboard focus"),
            _ => {}
        }
    }
}

impl WindowHandler for App {
    fn request_close(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window) {
        self.closed = true;
    }

    fn configure(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window, configure: WindowConfigure, _serial: u32) {
        let w = configure.new_size.0.map_or(DEFAULT_SIZE.0, |v| v.get()).min(MAX_SIDE);
        let h = configure.new_size.1.map_or(DEFAULT_SIZE.1, |v| v.get()).min(MAX_SIDE);
        if self.size != Some((w, h)) {
            self.configured(w, h);
        }
        // A configure wants a commit answering it.
        self.dirty = true;
        self.frame_pending = false;
    }
}

impl SeatHandler for App {
    fn seat_state(&mut self) -> &mut SeatState {
        &mut self.seat
    }
    fn new_seat(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat) {}
    fn new_capability(&mut self, _: &Connection, qh: &QueueHandle<Self>, seat: wl_seat::WlSeat, capability: Capability) {
        // The seat's data device (the clipboard), once: seats present at
        // the start come here, not to `new_seat`.
        if self.device.is_none() {
            self.device = self.data.as_ref().map(|d| d.get_data_device(qh, &seat));
        }
        match capability {
            Capability::Keyboard => {
                seat.get_keyboard(qh, KeyboardData);
            }
            Capability::Pointer if self.pointer.is_none() => match self.seat.get_pointer(qh, &seat) {
                Ok(p) => {
                    debug!("pointer bound");
                    self.pointer = Some(p);
                }
                Err(e) => warn!(%e, "no pointer: no wheel, no selection"),
            },
            _ => {}
        }
    }
    fn remove_capability(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat, capability: Capability) {
        if capability == Capability::Pointer {
            if let Some(p) = self.pointer.take() {
                if p.version() >= 3 {
                    p.release();
                }
            }
        }
    }
    fn remove_seat(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat) {}
}

impl PointerHandler for App {
    fn pointer_frame(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_pointer::WlPointer, events: &[PointerEvent]) {
        for e in events {
            let (column, line, right) = self.cell_at(e.position.0, e.position.1);
            match &e.kind {
                PointerEventKind::Axis { vertical, .. } => {
                    // Three lines a wheel step; up (negative) goes back.
                    let steps = if vertical.discrete != 0 { vertical.discrete } else { (vertical.absolute / 10.0).round() as i32 };
                    if steps != 0 {
                        self.screen.scroll(-steps.saturating_mul(3));
                        self.dirty = true;
                    }
                }
                PointerEventKind::Press { button: BTN_LEFT, .. } => {
                    self.screen.select_start(column, line, right);
                    self.selecting = true;
                    self.dirty = true;
                }
                PointerEventKind::Motion { .. } if self.selecting => {
                    self.screen.select_to(column, line, right);
                    self.dirty = true;
                }
                PointerEventKind::Release { button: BTN_LEFT, .. } | PointerEventKind::Leave { .. } if self.selecting => {
                    self.screen.select_to(column, line, right);
                    self.selecting = false;
                    self.dirty = true;
                    if let Some(text) = self.screen.selection_text() {
                        debug!(bytes = text.len(), "selected");
                    }
                }
                _ => {}
            }
        }
    }
}

impl DataSourceHandler for App {
    fn accept_mime(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataSource, _: Option<String>) {}

    /// Someone pastes our selection: written on a thread of its own, so a
    /// reader that is slow (or is this window, reading in its loop) does
    /// not stop the window.
    fn send_request(&mut self, _: &Connection, _: &QueueHandle<Self>, source: &WlDataSource, mime: String, mut fd: WritePipe) {
        let Some((_, text)) = self.copied.as_ref().filter(|(s, _)| s.inner() == source) else { return };
        if !TEXT_TYPES.contains(&mime.as_str()) {
            debug!(mime, "copy: asked for a type not offered");
            return;
        }
        let writers = self.copy_writers.clone();
        if writers.fetch_add(1, Ordering::AcqRel) >= MAX_COPY_WRITERS {
            writers.fetch_sub(1, Ordering::AcqRel);
            warn!("copy: {MAX_COPY_WRITERS} pastes of the selection are still being written; this one is refused");
            return;
        }
        let text = text.clone().into_bytes();
        let spawned = std::thread::Builder::new().name("copy".into()).spawn(move || {
            if let Err(e) = fd.write_all(&text) {
                debug!(%e, "copy: the reader went away");
            }
            drop(fd);
            writers.fetch_sub(1, Ordering::AcqRel);
        });
        if let Err(e) = spawned {
            self.copy_writers.fetch_sub(1, Ordering::AcqRel);
            warn!(%e, "copy: no thread to write the selection");
        }
    }

    fn cancelled(&mut self, _: &Connection, _: &QueueHandle<Self>, source: &WlDataSource) {
        if self.copied.as_ref().is_some_and(|(s, _)| s.inner() == source) {
            self.copied = None;
        }
    }

    fn dnd_dropped(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataSource) {}
    fn dnd_finished(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataSource) {}
    fn action(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataSource, _: DndAction) {}
}

/// The clipboard is read when pasting; drag and drop is not taken.
impl DataDeviceHandler for App {
    fn enter(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataDevice, _: f64, _: f64, _: &WlSurface) {}
    fn leave(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataDevice) {}
    fn motion(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataDevice, _: f64, _: f64) {}
    fn selection(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataDevice) {
        if self.device.as_ref().is_some_and(|d| d.data().selection_offer().is_some()) {
            debug!("clipboard offered");
        }
    }
    fn drop_performed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &WlDataDevice) {}
}

impl DataOfferHandler for App {
    fn source_actions(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &mut DragOffer, _: DndAction) {}
    fn selected_action(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &mut DragOffer, _: DndAction) {}
}

crate::client_handlers!(App, [OutputState, SeatState], frame_done);
