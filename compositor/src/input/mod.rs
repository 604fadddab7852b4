//! Input: the kernel's evdev devices read directly ([`evdev`]), their
//! actions given to `seat0` (OpenHarmony's multimodal input, reduced to
//! what a Wayland seat needs), and the compositor's own shortcuts.
//!
//! - Devices come from a directory (`/dev/input`) watched with inotify: a
//!   node that appears, or whose permissions change (ueventd gives it to
//!   the `input` group after devtmpfs made it), is opened and asked what
//!   it can do; one that goes (`ENODEV`) is dropped and whatever it held
//!   is released. A node that cannot be opened is named in the log once.
//! - Keyboards: the XKB keymap and key repeat come from
//!   [`KeyboardConfig`] (parameters `persist.input.keyboard.*`); clients
//!   repeat keys themselves from `wl_keyboard.repeat_info`.
//! - Pointers: mice move the pointer by their deltas, tablets (QEMU's
//!   virtio tablet) put it where they point; the compositor draws the
//!   cursor (its own arrow, or the client's cursor surface).
//! - Touch screens: contacts go to the surface under the first finger.
//! - A capability (keyboard, pointer, touch) stays once a device brought
//!   it; when the last pointer goes, the surface under it gets a leave and
//!   the cursor is the compositor's again. A device that never runs dry
//!   gets [`READS_PER_WAKE`] reads before clients are served again.
//! - Focus: a click or touch raises the window under it and gives it the
//!   keyboard; a new window takes the keyboard once it shows a buffer (an
//!   empty one would take keys unseen); `Alt+Tab` (or
//!   `Super+Tab`) brings the window at the bottom of the stack to the top,
//!   the task switcher for maximised windows.
//!
//! Every input event also counts as user activity: the power manager reads
//! the same devices itself (evdev lets several readers share a device).

pub mod evdev;

use std::{
    collections::{BTreeSet, HashMap},
    fs::File,
    io::Read,
    os::{fd::AsFd, unix::fs::OpenOptionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use smithay::{
    backend::input::{Axis, AxisSource, KeyState},
    desktop::Window,
    input::{
        keyboard::{keysyms, FilterResult, Keycode, XkbConfig},
        pointer::{AxisFrame, ButtonEvent, MotionEvent, RelativeMotionEvent},
        touch::{DownEvent, MotionEvent as TouchMotionEvent, UpEvent},
    },
    reexports::calloop::{
        generic::Generic,
        timer::{TimeoutAction, Timer},
        Interest, Mode, PostAction,
    },
    utils::{Logical, Point, SERIAL_COUNTER},
};
use tracing::{debug, info, warn};

use crate::state::State;
pub use evdev::{Action, Capabilities, Decoder, RawEvent};

/// How often a device directory that does not exist yet is looked for.
pub const DIR_RETRY: Duration = Duration::from_secs(2);

/// How many reads of up to 64 records one device gets before the event
/// loop serves its other sources.
pub const READS_PER_WAKE: usize = 8;

/// Scroll distance of one wheel notch, in surface pixels.
const NOTCH_PIXELS: f64 = 15.0;

/// The keyboard's keymap and repeat, from parameters (OpenHarmony keeps
/// keyboard settings in its input service; Accord's names are
/// `persist.input.keyboard.*`). Read when render_service starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyboardConfig {
    /// XKB layouts, comma-separated (`persist.input.keyboard.layout`, default `us`).
    pub layout: String,
    /// XKB variants, one per layout (`persist.input.keyboard.variant`).
    pub variant: String,
    /// XKB options, e.g. `ctrl:nocaps` (`persist.input.keyboard.options`).
    pub options: String,
    /// XKB model (`persist.input.keyboard.model`, default `pc105`).
    pub model: String,
    /// Delay before a held key repeats, in ms, 0..=[`MAX_REPEAT_DELAY_MS`]
    /// (`persist.input.keyboard.repeat_delay`, default 500).
    pub repeat_delay_ms: i32,
    /// Repeats per second once repeating, 0 (off)..=[`MAX_REPEAT_RATE`]
    /// (`persist.input.keyboard.repeat_rate`, default 25).
    pub repeat_rate: i32,
}

/// The longest key repeat delay accepted, in ms.
pub const MAX_REPEAT_DELAY_MS: i32 = 10_000;
/// The highest key repeat rate accepted, per second.
pub const MAX_REPEAT_RATE: i32 = 1_000;

impl Default for KeyboardConfig {
    fn default() -> Self {
        KeyboardConfig { layout: "us".into(), variant: String::new(), options: String::new(), model: "pc105".into(), repeat_delay_ms: 500, repeat_rate: 25 }
    }
}

impl KeyboardConfig {
    /// The configuration from `get(name)` (a parameter lookup): unset
    /// parameters keep the defaults; a number out of range is logged,
    /// naming the parameter, and the default kept.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> KeyboardConfig {
        let mut c = KeyboardConfig::default();
        let text = |name: &str, field: &mut String| {
            if let Some(v) = get(name).filter(|v| !v.is_empty()) {
                *field = v;
            }
        };
        text("persist.input.keyboard.layout", &mut c.layout);
        text("persist.input.keyboard.variant", &mut c.variant);
        text("persist.input.keyboard.options", &mut c.options);
        text("persist.input.keyboard.model", &mut c.model);
        let number = |name: &str, field: &mut i32, max: i32| {
            if let Some(v) = get(name).filter(|v| !v.is_empty()) {
                match v.parse::<i32>() {
                    Ok(n) if (0..=max).contains(&n) => *field = n,
                    _ => warn!("{name}={v:?} is not a number in 0..={max}: keeping {field}"),
                }
            }
        };
        number("persist.input.keyboard.repeat_delay", &mut c.repeat_delay_ms, MAX_REPEAT_DELAY_MS);
        number("persist.input.keyboard.repeat_rate", &mut c.repeat_rate, MAX_REPEAT_RATE);
        c
    }

    /// The configuration from the parameter service.
    pub fn from_params() -> KeyboardConfig {
        Self::from_lookup(|name| accord_param::client::get(name).ok())
    }

    fn xkb(&self) -> XkbConfig<'_> {
        XkbConfig {
            rules: "",
            model: &self.model,
            layout: &self.layout,
            variant: &self.variant,
            options: (!self.options.is_empty()).then(|| self.options.clone()),
        }
    }
}

/// The input side of [`State`]: devices, pointer position, cursor.
#[derive(Debug, Default)]
pub(crate) struct InputState {
    pub(crate) keyboard_config: KeyboardConfig,
    /// Where devices are looked for (`None`: only devices added by hand).
    dir: Option<PathBuf>,
    /// Open devices by node name, with their capabilities.
    open: HashMap<String, Capabilities>,
    /// Nodes that could not be opened or are of no use, until the
    /// directory changes.
    skipped: BTreeSet<String>,
    /// Nodes already named in the log as unusable.
    warned: BTreeSet<String>,
    /// Whether the inotify watch is set up.
    watching: bool,
    /// The pointer's position on the output.
    pub(crate) pointer: Point<f64, Logical>,
    /// Keys (evdev codes) pressed for a compositor shortcut: their
    /// releases are not passed on either.
    suppressed: BTreeSet<u32>,
}

impl InputState {
    /// Whether a pointer device is present (the cursor is drawn).
    pub(crate) fn has_pointer(&self) -> bool {
        self.open.values().any(Capabilities::pointer)
    }
}

/// A device node's name counter: hand-added devices get `manual-<n>`.
static MANUAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl State {
    /// Watches `dir` for evdev nodes (`event*`); if it does not exist yet,
    /// it is looked for every [`DIR_RETRY`].
    pub(crate) fn watch_input_dir(&mut self, dir: PathBuf) {
        self.input.dir = Some(dir);
        self.start_watch();
    }

    fn start_watch(&mut self) {
        let Some(dir) = self.input.dir.clone() else { return };
        match accord_power::input::watch_dir(&dir) {
            Ok(fd) => {
                let file = File::from(fd);
                let inserted = self.loop_handle.insert_source(Generic::new(file, Interest::READ, Mode::Level), |_, file, state: &mut State| {
                    let mut buf = [0u8; 4096];
                    // SAFETY: the file stays open while the source exists.
                    let f = unsafe { file.get_mut() };
                    loop {
                        match f.read(&mut buf) {
                            Ok(n) if n > 0 => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                            other => {
                                // EOF or an error on inotify: look again later.
                                warn!(?other, "input directory watch failed; watching again in {DIR_RETRY:?}");
                                state.input.watching = false;
                                state.retry_watch();
                                return Ok(PostAction::Remove);
                            }
                        }
                    }
                    // Something came, went or changed: every node may be usable now.
                    state.input.skipped.clear();
                    state.scan_input();
                    Ok(PostAction::Continue)
                });
                match inserted {
                    Ok(_) => {
                        self.input.watching = true;
                        info!(dir = %dir.display(), "watching for input devices");
                    }
                    Err(e) => warn!(error = %e.error, "cannot watch the input directory"),
                }
            }
            Err(e) => {
                debug!(dir = %dir.display(), %e, "no input directory yet");
                self.retry_watch();
            }
        }
        self.scan_input();
    }

    fn retry_watch(&mut self) {
        let r = self.loop_handle.insert_source(Timer::from_duration(DIR_RETRY), |_, _, state: &mut State| {
            if !state.input.watching {
                state.start_watch();
            }
            TimeoutAction::Drop
        });
        if let Err(e) = r {
            warn!(error = %e.error, "cannot arm the input directory timer");
        }
    }

    /// Opens every `event*` node of the directory not open or skipped yet.
    fn scan_input(&mut self) {
        let Some(dir) = self.input.dir.clone() else { return };
        let Ok(entries) = std::fs::read_dir(&dir) else { return };
        let mut names: Vec<String> = entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("event")).collect();
        names.sort();
        for name in names {
            if self.input.open.contains_key(&name) || self.input.skipped.contains(&name) {
                continue;
            }
            let path = dir.join(&name);
            let opened = open_device(&path).and_then(|file| Capabilities::query(file.as_fd()).map(|caps| (file, caps)));
            match opened {
                Ok((file, caps)) if caps.useful() => self.add_device(name, file, caps),
                Ok((_, caps)) => {
                    if self.input.warned.insert(name.clone()) {
                        debug!(device = %path.display(), name = %caps.name, "not a keyboard, pointer or touch screen: ignored");
                    }
                    self.input.skipped.insert(name);
                }
                Err(e) => {
                    if self.input.warned.insert(name.clone()) {
                        warn!(device = %path.display(), %e, "input device not usable (retried when its node changes)");
                    }
                    self.input.skipped.insert(name);
                }
            }
        }
    }

    /// Reads `file` (an evdev node, or anything that gives the same
    /// records) as a device with `caps`, whatever the node says.
    pub(crate) fn add_manual_device(&mut self, file: File, caps: Capabilities) -> String {
        let name = format!("manual-{}", MANUAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        self.add_device(name.clone(), file, caps);
        name
    }

    fn add_device(&mut self, name: String, file: File, caps: Capabilities) {
        info!(device = %name, name = %caps.name, keyboard = caps.keyboard, pointer = caps.pointer(), touch = caps.touch.is_some(), "input device added");
        let mut decoder = Decoder::new(caps.clone());
        let mut partial: Vec<u8> = Vec::new();
        let source_name = name.clone();
        let inserted = self.loop_handle.insert_source(Generic::new(file, Interest::READ, Mode::Level), move |_, file, state: &mut State| {
            let mut buf = [0u8; evdev::EVENT_SIZE * 64];
            let mut actions = Vec::new();
            // SAFETY: the file stays open while the source exists.
            let f = unsafe { file.get_mut() };
            // At most READS_PER_WAKE reads, then the other sources (clients)
            // are served: a device that never runs dry does not starve them.
            let mut reads = 0;
            let gone = loop {
                reads += 1;
                if reads > READS_PER_WAKE {
                    break None;
                }
                match f.read(&mut buf) {
                    Ok(0) => break Some("end of file".to_string()),
                    Ok(n) => {
                        partial.extend_from_slice(&buf[..n]);
                        let whole = partial.len() - partial.len() % evdev::EVENT_SIZE;
                        for rec in partial[..whole].chunks_exact(evdev::EVENT_SIZE) {
                            let rec: &[u8; evdev::EVENT_SIZE] = rec.try_into().unwrap_or(&[0; evdev::EVENT_SIZE]);
                            decoder.feed(RawEvent::from_bytes(rec), &mut actions);
                        }
                        partial.drain(..whole);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break None,
                    Err(e) => break Some(e.to_string()),
                }
            };
            for a in actions.drain(..) {
                state.apply_input(a);
            }
            match gone {
                None => Ok(PostAction::Continue),
                Some(why) => {
                    decoder.release_all(&mut actions);
                    for a in actions {
                        state.apply_input(a);
                    }
                    info!(device = %source_name, %why, "input device gone");
                    state.remove_device(&source_name);
                    Ok(PostAction::Remove)
                }
            }
        });
        if let Err(e) = inserted {
            warn!(device = %name, error = %e.error, "cannot read the input device");
            return;
        }
        // A capability, once a device brought it, stays when the device
        // goes: clients keep their objects (a new wl_keyboard per re-plug
        // would keep each old keymap's memfd open while a client holds it).
        if caps.keyboard && self.seat.get_keyboard().is_none() {
            self.add_keyboard();
        }
        if caps.pointer() {
            if self.seat.get_pointer().is_none() {
                self.seat.add_pointer();
            }
            self.schedule_redraw();
        }
        if caps.touch.is_some() && self.seat.get_touch().is_none() {
            self.seat.add_touch();
        }
        self.input.open.insert(name, caps);
    }

    fn add_keyboard(&mut self) {
        let config = self.input.keyboard_config.clone();
        let added = self.seat.add_keyboard(config.xkb(), config.repeat_delay_ms, config.repeat_rate);
        if let Err(e) = added {
            warn!(layout = %config.layout, variant = %config.variant, options = %config.options, model = %config.model, ?e,
                "the keymap from persist.input.keyboard.* does not compile: using the default (us)");
            let fallback = KeyboardConfig { repeat_delay_ms: config.repeat_delay_ms, repeat_rate: config.repeat_rate, ..KeyboardConfig::default() };
            if let Err(e) = self.seat.add_keyboard(fallback.xkb(), fallback.repeat_delay_ms, fallback.repeat_rate) {
                warn!(?e, "no keymap compiles (is the XKB data installed?): keyboards are not used");
                return;
            }
        }
        if let Some(window) = self.space.elements().last().cloned() {
            self.focus_window(&window);
        }
    }

    fn remove_device(&mut self, name: &str) {
        let Some(caps) = self.input.open.remove(name) else { return };
        if caps.pointer() && !self.input.has_pointer() {
            // No pointer left: the surface under it is left, and the next
            // pointer starts with the compositor's arrow, not the cursor a
            // client chose.
            if let Some(pointer) = self.seat.get_pointer() {
                let time = self.now_ms();
                pointer.motion(self, None, &MotionEvent { location: self.input.pointer, serial: SERIAL_COUNTER.next_serial(), time });
                pointer.frame(self);
            }
            self.cursor = smithay::input::pointer::CursorImageStatus::default_named();
            self.schedule_redraw();
        }
        // A node with the same name may have come meanwhile.
        self.input.skipped.clear();
        self.scan_input();
    }

    fn now_ms(&self) -> u32 {
        self.start.elapsed().as_millis() as u32
    }

    /// Raises `window` and gives it the keyboard.
    pub(crate) fn focus_window(&mut self, window: &Window) {
        self.space.raise_element(window, true);
        for w in self.space.elements() {
            if let Some(t) = w.toplevel() {
                if t.is_initial_configure_sent() {
                    t.send_pending_configure();
                }
            }
        }
        // A lock screen (an exclusive layer surface) keeps the keyboard.
        let target = match self.exclusive_layer() {
            Some(layer) => Some(layer.wl_surface().clone()),
            None => window.toplevel().map(|t| t.wl_surface().clone()),
        };
        if let (Some(keyboard), Some(target)) = (self.seat.get_keyboard(), target) {
            if keyboard.current_focus().as_ref() != Some(&target) {
                keyboard.set_focus(self, Some(target), SERIAL_COUNTER.next_serial());
            }
        }
        self.schedule_redraw();
    }

    /// Gives the keyboard to the exclusive layer surface if one is
    /// mapped, else to the window on top (after one went away).
    pub(crate) fn focus_top(&mut self) {
        if let Some(layer) = self.exclusive_layer() {
            if let Some(keyboard) = self.seat.get_keyboard() {
                keyboard.set_focus(self, Some(layer.wl_surface().clone()), SERIAL_COUNTER.next_serial());
            }
            return;
        }
        match self.space.elements().last().cloned() {
            Some(w) => self.focus_window(&w),
            None => {
                if let Some(keyboard) = self.seat.get_keyboard() {
                    keyboard.set_focus(self, None, SERIAL_COUNTER.next_serial());
                }
            }
        }
    }

    fn output_point(&self, x: f64, y: f64) -> Point<f64, Logical> {
        let size = self.output_size();
        (x * f64::from((size.w - 1).max(0)), y * f64::from((size.h - 1).max(0))).into()
    }

    /// Gives one decoded action to the seat.
    pub(crate) fn apply_input(&mut self, action: Action) {
        let time = self.now_ms();
        match action {
            Action::Key { code, pressed } => {
                let Some(keyboard) = self.seat.get_keyboard() else { return };
                let state = if pressed { KeyState::Pressed } else { KeyState::Released };
                let shortcut = keyboard.input(self, Keycode::new(code + 8), state, SERIAL_COUNTER.next_serial(), time, |state, mods, keysym| {
                    if !pressed {
                        // The release of a key whose press was the
                        // compositor's is the compositor's too.
                        return if state.input.suppressed.remove(&code) { FilterResult::Intercept(false) } else { FilterResult::Forward };
                    }
                    if (mods.alt || mods.logo) && keysym.modified_sym().raw() == keysyms::KEY_Tab {
                        state.input.suppressed.insert(code);
                        return FilterResult::Intercept(true);
                    }
                    FilterResult::Forward
                });
                if shortcut == Some(true) {
                    // The task switcher: the bottom window comes to the top.
                    let bottom = self.space.elements().next().cloned();
                    if let Some(w) = bottom {
                        self.focus_window(&w);
                    }
                }
            }
            Action::Motion { dx, dy } => {
                let size = self.output_size();
                let p = self.input.pointer + Point::from((dx, dy));
                self.input.pointer = (p.x.clamp(0.0, f64::from(size.w - 1)), p.y.clamp(0.0, f64::from(size.h - 1))).into();
                self.pointer_moved(time, Some((dx, dy)));
            }
            Action::MoveTo { x, y } => {
                self.input.pointer = self.output_point(x, y);
                self.pointer_moved(time, None);
            }
            Action::Button { code, pressed } => {
                let Some(pointer) = self.seat.get_pointer() else { return };
                if pressed {
                    self.focus_at(self.input.pointer);
                }
                let state = if pressed { smithay::backend::input::ButtonState::Pressed } else { smithay::backend::input::ButtonState::Released };
                pointer.button(self, &ButtonEvent { serial: SERIAL_COUNTER.next_serial(), time, button: code, state });
                pointer.frame(self);
            }
            Action::Scroll { vertical, horizontal } => {
                let Some(pointer) = self.seat.get_pointer() else { return };
                let mut frame = AxisFrame::new(time).source(AxisSource::Wheel);
                if vertical != 0 {
                    frame = frame.v120(Axis::Vertical, vertical).value(Axis::Vertical, f64::from(vertical) * NOTCH_PIXELS / 120.0);
                }
                if horizontal != 0 {
                    frame = frame.v120(Axis::Horizontal, horizontal).value(Axis::Horizontal, f64::from(horizontal) * NOTCH_PIXELS / 120.0);
                }
                pointer.axis(self, frame);
                pointer.frame(self);
            }
            Action::TouchDown { slot, x, y } => {
                let Some(touch) = self.seat.get_touch() else { return };
                let location = self.output_point(x, y);
                self.focus_at(location);
                let under = self.surface_under(location);
                touch.down(self, under, &DownEvent { slot: Some(slot).into(), location, serial: SERIAL_COUNTER.next_serial(), time });
            }
            Action::TouchMotion { slot, x, y } => {
                let Some(touch) = self.seat.get_touch() else { return };
                let location = self.output_point(x, y);
                let under = self.surface_under(location);
                touch.motion(self, under, &TouchMotionEvent { slot: Some(slot).into(), location, time });
            }
            Action::TouchUp { slot } => {
                let Some(touch) = self.seat.get_touch() else { return };
                touch.up(self, &UpEvent { slot: Some(slot).into(), serial: SERIAL_COUNTER.next_serial(), time });
            }
            Action::TouchFrame => {
                if let Some(touch) = self.seat.get_touch() {
                    touch.frame(self);
                }
            }
            Action::TouchCancel => {
                if let Some(touch) = self.seat.get_touch() {
                    touch.cancel(self);
                }
            }
        }
    }

    fn pointer_moved(&mut self, time: u32, delta: Option<(f64, f64)>) {
        let Some(pointer) = self.seat.get_pointer() else { return };
        let location = self.input.pointer;
        let under = self.surface_under(location);
        pointer.motion(self, under.clone(), &MotionEvent { location, serial: SERIAL_COUNTER.next_serial(), time });
        if let Some((dx, dy)) = delta {
            let d = Point::from((dx, dy));
            pointer.relative_motion(self, under, &RelativeMotionEvent { delta: d, delta_unaccel: d, utime: u64::from(time) * 1000 });
        }
        pointer.frame(self);
        // The cursor is drawn by the compositor.
        self.schedule_redraw();
    }
}

fn open_device(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOFOLLOW).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyboard_config_from_parameters() {
        let c = KeyboardConfig::from_lookup(|_| None);
        assert_eq!(c, KeyboardConfig::default());
        let c = KeyboardConfig::from_lookup(|name| match name {
            "persist.input.keyboard.layout" => Some("de,us".into()),
            "persist.input.keyboard.options" => Some("ctrl:nocaps".into()),
            "persist.input.keyboard.repeat_delay" => Some("250".into()),
            "persist.input.keyboard.repeat_rate" => Some("-3".into()),
            _ => None,
        });
        assert_eq!((c.layout.as_str(), c.options.as_str(), c.repeat_delay_ms, c.repeat_rate), ("de,us", "ctrl:nocaps", 250, 25));
        assert_eq!(c.xkb().options.as_deref(), Some("ctrl:nocaps"));
    }
}
