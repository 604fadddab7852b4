//! Linux evdev, read directly: the 24-byte `struct input_event` records a
//! `/dev/input/event*` node gives, what a device can do (the `EVIOCG*`
//! ioctls), and a per-device [`Decoder`] that turns a frame of records
//! (up to `SYN_REPORT`) into [`Action`]s the seat understands.
//!
//! Kept in the compositor rather than taken from libinput (a C library
//! with udev, which the image does not have) or the `evdev` crate (its
//! devices only open real nodes; the tests here feed a FIFO with
//! capabilities of their choosing): the part used is three ioctls and a
//! fixed record.

use std::os::fd::{AsRawFd, BorrowedFd};

/// `struct input_event` on a 64-bit kernel: a timeval (16 bytes), type,
/// code (u16 each) and value (i32).
pub const EVENT_SIZE: usize = 24;

/// The most touch slots followed on one device; contacts in higher slots
/// are ignored (screens report 10 at most).
pub const MAX_TOUCH_SLOTS: usize = 16;

/// Event types, codes and properties from `linux/input-event-codes.h`.
pub const EV_SYN: u16 = 0x00;
pub const EV_KEY: u16 = 0x01;
pub const EV_REL: u16 = 0x02;
pub const EV_ABS: u16 = 0x03;
pub const SYN_REPORT: u16 = 0;
pub const SYN_DROPPED: u16 = 3;
pub const REL_X: u16 = 0x00;
pub const REL_Y: u16 = 0x01;
pub const REL_HWHEEL: u16 = 0x06;
pub const REL_WHEEL: u16 = 0x08;
pub const REL_WHEEL_HI_RES: u16 = 0x0b;
pub const REL_HWHEEL_HI_RES: u16 = 0x0c;
pub const ABS_X: u16 = 0x00;
pub const ABS_Y: u16 = 0x01;
pub const ABS_MT_SLOT: u16 = 0x2f;
pub const ABS_MT_POSITION_X: u16 = 0x35;
pub const ABS_MT_POSITION_Y: u16 = 0x36;
pub const ABS_MT_TRACKING_ID: u16 = 0x39;
/// Codes below this are keyboard keys (KEY_*), as are codes from KEY_OK on.
pub const BTN_MISC: u16 = 0x100;
pub const BTN_LEFT: u16 = 0x110;
pub const BTN_TASK: u16 = 0x117;
pub const BTN_TOUCH: u16 = 0x14a;
pub const KEY_OK: u16 = 0x160;
pub const KEY_ENTER: u16 = 28;
pub const KEY_A: u16 = 30;
pub const KEY_TAB: u16 = 15;
pub const KEY_LEFTALT: u16 = 56;
pub const KEY_SPACE: u16 = 57;
const KEY_MAX: usize = 0x2ff;
const ABS_MAX: usize = 0x3f;
const REL_MAX: usize = 0x0f;
const INPUT_PROP_DIRECT: usize = 0x01;

/// One evdev record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawEvent {
    /// `EV_*`.
    pub kind: u16,
    /// `KEY_*`, `REL_*`, `ABS_*`, `SYN_*`...
    pub code: u16,
    /// The value (1 pressed, 0 released, 2 repeat; a delta; a position).
    pub value: i32,
}

impl RawEvent {
    /// Decodes one record (`bytes` must be [`EVENT_SIZE`] long).
    pub fn from_bytes(bytes: &[u8; EVENT_SIZE]) -> RawEvent {
        RawEvent {
            kind: u16::from_ne_bytes([bytes[16], bytes[17]]),
            code: u16::from_ne_bytes([bytes[18], bytes[19]]),
            value: i32::from_ne_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]),
        }
    }

    /// Encodes one record, the time left zero (tests and FIFOs standing in
    /// for devices).
    pub fn to_bytes(self) -> [u8; EVENT_SIZE] {
        let mut b = [0u8; EVENT_SIZE];
        b[16..18].copy_from_slice(&self.kind.to_ne_bytes());
        b[18..20].copy_from_slice(&self.code.to_ne_bytes());
        b[20..24].copy_from_slice(&self.value.to_ne_bytes());
        b
    }

    /// The `SYN_REPORT` that ends a frame.
    pub const fn sync() -> RawEvent {
        RawEvent { kind: EV_SYN, code: SYN_REPORT, value: 0 }
    }
}

/// The range an absolute axis reports (`struct input_absinfo`'s minimum
/// and maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbsRange {
    /// The smallest value.
    pub min: i32,
    /// The largest value.
    pub max: i32,
}

impl AbsRange {
    /// `value` as a fraction of the range, clamped to 0..=1.
    pub fn fraction(self, value: i32) -> f64 {
        let span = f64::from(self.max) - f64::from(self.min);
        if span <= 0.0 {
            return 0.0;
        }
        ((f64::from(value) - f64::from(self.min)) / span).clamp(0.0, 1.0)
    }
}

/// What a device can do, as far as the compositor cares.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// The device's name (`EVIOCGNAME`).
    pub name: String,
    /// Letter keys, Enter and Space: a keyboard (a power button alone is not).
    pub keyboard: bool,
    /// Relative X/Y and a left button: a mouse or touchpad in mouse mode.
    pub relative_pointer: bool,
    /// X/Y ranges of a device that points at the whole screen without
    /// touching it (a tablet, QEMU's virtio tablet): the pointer jumps there.
    pub absolute_pointer: Option<(AbsRange, AbsRange)>,
    /// X/Y ranges of a touch screen (`INPUT_PROP_DIRECT`): contacts are
    /// touch points. `multitouch` when it reports slots (protocol B).
    pub touch: Option<(AbsRange, AbsRange)>,
    /// Whether the touch screen reports contacts in slots.
    pub multitouch: bool,
    /// Touch slots reported (1 without multitouch), at most [`MAX_TOUCH_SLOTS`].
    pub touch_slots: usize,
    /// Whether the wheel reports high-resolution steps (1/120 of a notch),
    /// so the notch events are ignored.
    pub hires_wheel: bool,
}

impl Capabilities {
    /// Whether it moves the pointer (a mouse or a tablet).
    pub fn pointer(&self) -> bool {
        self.relative_pointer || self.absolute_pointer.is_some()
    }

    /// Whether the compositor has any use for the device.
    pub fn useful(&self) -> bool {
        self.keyboard || self.pointer() || self.touch.is_some()
    }

    /// Asks the kernel what the device behind `fd` can do.
    ///
    /// # Errors
    /// The ioctl's error (`ENOTTY`: not an evdev node).
    pub fn query(fd: BorrowedFd<'_>) -> std::io::Result<Capabilities> {
        let mut name = [0u8; 256];
        ioctl_buf(fd, ioc_read(0x06, name.len()), &mut name)?;
        let name_len = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let mut types = [0u8; 4];
        ioctl_buf(fd, ioc_read(0x20, types.len()), &mut types)?;
        let mut keys = [0u8; KEY_MAX / 8 + 1];
        let mut rels = [0u8; REL_MAX / 8 + 1];
        let mut abses = [0u8; ABS_MAX / 8 + 1];
        let mut props = [0u8; 4];
        if bit(&types, EV_KEY as usize) {
            ioctl_buf(fd, ioc_read(0x20 + u32::from(EV_KEY), keys.len()), &mut keys)?;
        }
        if bit(&types, EV_REL as usize) {
            ioctl_buf(fd, ioc_read(0x20 + u32::from(EV_REL), rels.len()), &mut rels)?;
        }
        if bit(&types, EV_ABS as usize) {
            ioctl_buf(fd, ioc_read(0x20 + u32::from(EV_ABS), abses.len()), &mut abses)?;
        }
        // Old kernels lack EVIOCGPROP: no properties then.
        let _ = ioctl_buf(fd, ioc_read(0x09, props.len()), &mut props);
        let range = |axis: u16| -> std::io::Result<AbsRange> {
            let mut info = [0i32; 6];
            // SAFETY: EVIOCGABS writes one struct input_absinfo (six i32) into `info`.
            let r = unsafe { libc::ioctl(fd.as_raw_fd(), ioc_read(0x40 + u32::from(axis), 24) as _, info.as_mut_ptr()) };
            if r < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(AbsRange { min: info[1], max: info[2] })
        };
        Self::from_bits(String::from_utf8_lossy(&name[..name_len]).into_owned(), &keys, &rels, &abses, &props, range)
    }

    /// Classifies a device from its capability bitmaps (`keys`, `rels`,
    /// `abses`, `props` as `EVIOCGBIT`/`EVIOCGPROP` fill them) and its
    /// absolute axes' ranges.
    pub fn from_bits(
        name: String,
        keys: &[u8],
        rels: &[u8],
        abses: &[u8],
        props: &[u8],
        range: impl Fn(u16) -> std::io::Result<AbsRange>,
    ) -> std::io::Result<Capabilities> {
        let has_key = |k: u16| bit(keys, k as usize);
        let mut caps = Capabilities { name, ..Default::default() };
        caps.keyboard = has_key(KEY_A) && has_key(KEY_ENTER) && has_key(KEY_SPACE);
        caps.relative_pointer = bit(rels, REL_X as usize) && bit(rels, REL_Y as usize) && has_key(BTN_LEFT);
        caps.hires_wheel = bit(rels, REL_WHEEL_HI_RES as usize);
        let direct = bit(props, INPUT_PROP_DIRECT);
        if bit(abses, ABS_MT_POSITION_X as usize) && bit(abses, ABS_MT_POSITION_Y as usize) && bit(abses, ABS_MT_SLOT as usize) && direct {
            caps.touch = Some((range(ABS_MT_POSITION_X)?, range(ABS_MT_POSITION_Y)?));
            caps.multitouch = true;
            let slots = range(ABS_MT_SLOT)?;
            caps.touch_slots = usize::try_from(slots.max.saturating_add(1)).unwrap_or(1).clamp(1, MAX_TOUCH_SLOTS);
        } else if bit(abses, ABS_X as usize) && bit(abses, ABS_Y as usize) {
            let ranges = (range(ABS_X)?, range(ABS_Y)?);
            if direct && has_key(BTN_TOUCH) {
                caps.touch = Some(ranges);
                caps.touch_slots = 1;
            } else if has_key(BTN_LEFT) || has_key(BTN_TOUCH) {
                caps.absolute_pointer = Some(ranges);
            }
        }
        Ok(caps)
    }
}

/// The button a pointer's evdev button code is to clients: a tablet's
/// touch (`BTN_TOUCH`) is a left click.
fn button_code(code: u16) -> u16 {
    if code == BTN_TOUCH {
        BTN_LEFT
    } else {
        code
    }
}

/// Whether `code` is a keyboard key (not a button).
fn is_key(code: u16) -> bool {
    !(BTN_MISC..KEY_OK).contains(&code)
}

fn bit(bits: &[u8], n: usize) -> bool {
    bits.get(n / 8).is_some_and(|b| b & (1 << (n % 8)) != 0)
}

/// `_IOC(_IOC_READ, 'E', nr, len)`, the same on x86_64 and aarch64.
fn ioc_read(nr: u32, len: usize) -> u32 {
    (2 << 30) | ((len as u32 & 0x3fff) << 16) | (u32::from(b'E') << 8) | nr
}

fn ioctl_buf(fd: BorrowedFd<'_>, request: u32, buf: &mut [u8]) -> std::io::Result<()> {
    // SAFETY: the request's size field is `buf.len()`; the kernel writes at most that.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request as _, buf.as_mut_ptr()) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// What a frame of records means to the seat. Positions are fractions
/// (0..=1) of the device's range, mapped to the output by the seat.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// A keyboard key (evdev code, `KEY_*`); `pressed` false is a release.
    /// Kernel auto-repeats are dropped: clients repeat keys themselves
    /// (`wl_keyboard.repeat_info`).
    Key { code: u32, pressed: bool },
    /// A pointer button (`BTN_LEFT`...).
    Button { code: u32, pressed: bool },
    /// Relative pointer motion, in device units (pixels, unaccelerated).
    Motion { dx: f64, dy: f64 },
    /// The pointer goes to this point of the screen.
    MoveTo { x: f64, y: f64 },
    /// Scrolling, in 1/120 of a wheel notch; positive is down or right.
    Scroll { vertical: i32, horizontal: i32 },
    /// A finger touches (slot, position).
    TouchDown { slot: u32, x: f64, y: f64 },
    /// A touching finger moves.
    TouchMotion { slot: u32, x: f64, y: f64 },
    /// A finger is lifted.
    TouchUp { slot: u32 },
    /// The end of a group of touch actions.
    TouchFrame,
    /// Events were lost and touch contacts are unknown: cancel them.
    TouchCancel,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    active: bool,
    was_active: bool,
    moved: bool,
    x: i32,
    y: i32,
}

/// Turns one device's records into [`Action`]s, frame by frame; remembers
/// what is held down, to release it when the device goes or events are
/// lost (`SYN_DROPPED`).
#[derive(Debug)]
pub struct Decoder {
    caps: Capabilities,
    dx: i32,
    dy: i32,
    wheel: i32,
    hwheel: i32,
    abs: (i32, i32),
    abs_moved: bool,
    slots: Vec<Slot>,
    slot: usize,
    /// Keys and buttons down, in press order.
    held: Vec<u16>,
    /// This frame's buttons (evdev code, pressed), passed on after its
    /// motion (a click lands where the frame moved the pointer).
    buttons: Vec<(u16, bool)>,
    /// Between SYN_DROPPED and the next SYN_REPORT: records are discarded.
    dropping: bool,
}

impl Decoder {
    /// A decoder for a device with these capabilities.
    pub fn new(caps: Capabilities) -> Decoder {
        let slots = vec![Slot::default(); caps.touch_slots.max(1)];
        Decoder {
            caps,
            dx: 0,
            dy: 0,
            wheel: 0,
            hwheel: 0,
            abs: (0, 0),
            abs_moved: false,
            slots,
            slot: 0,
            held: Vec::new(),
            buttons: Vec::new(),
            dropping: false,
        }
    }

    /// The device's capabilities.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Feeds one record; a finished frame's actions are appended to `out`.
    pub fn feed(&mut self, ev: RawEvent, out: &mut Vec<Action>) {
        if self.dropping {
            if ev.kind == EV_SYN && ev.code == SYN_REPORT {
                self.dropping = false;
                self.discard_frame();
            }
            return;
        }
        match ev.kind {
            EV_SYN if ev.code == SYN_REPORT => self.finish_frame(out),
            EV_SYN if ev.code == SYN_DROPPED => {
                // The kernel's buffer overflowed: what is held is unknown.
                // This frame's buttons were never passed on: undone first.
                for (code, pressed) in std::mem::take(&mut self.buttons).into_iter().rev() {
                    if pressed {
                        self.held.retain(|&c| c != code);
                    } else {
                        self.held.push(code);
                    }
                }
                self.discard_frame();
                self.release_all(out);
                self.dropping = true;
            }
            EV_KEY => self.key(ev.code, ev.value, out),
            EV_REL => match ev.code {
                REL_X => self.dx = self.dx.saturating_add(ev.value),
                REL_Y => self.dy = self.dy.saturating_add(ev.value),
                REL_WHEEL if !self.caps.hires_wheel => self.wheel = self.wheel.saturating_add(ev.value.saturating_mul(120)),
                REL_HWHEEL if !self.caps.hires_wheel => self.hwheel = self.hwheel.saturating_add(ev.value.saturating_mul(120)),
                REL_WHEEL_HI_RES if self.caps.hires_wheel => self.wheel = self.wheel.saturating_add(ev.value),
                REL_HWHEEL_HI_RES if self.caps.hires_wheel => self.hwheel = self.hwheel.saturating_add(ev.value),
                _ => {}
            },
            EV_ABS => self.abs(ev.code, ev.value),
            _ => {}
        }
    }

    fn key(&mut self, code: u16, value: i32, out: &mut Vec<Action>) {
        let pressed = match value {
            0 => false,
            1 => true,
            // 2 is the kernel's auto-repeat: clients repeat by themselves.
            _ => return,
        };
        let was_held = self.held.contains(&code);
        if pressed == was_held {
            return;
        }
        if code == BTN_TOUCH && self.caps.touch.is_some() {
            if !self.caps.multitouch {
                self.slots[0].active = pressed;
                self.slots[0].moved = true;
            }
        } else if (BTN_LEFT..=BTN_TASK).contains(&code) || (code == BTN_TOUCH && self.caps.absolute_pointer.is_some()) {
            if !self.caps.relative_pointer && self.caps.absolute_pointer.is_none() {
                return;
            }
            self.buttons.push((code, pressed));
        } else if is_key(code) {
            if !self.caps.keyboard {
                return;
            }
            out.push(Action::Key { code: u32::from(code), pressed });
        } else {
            return;
        }
        if pressed {
            self.held.push(code);
        } else {
            self.held.retain(|&c| c != code);
        }
    }

    fn abs(&mut self, code: u16, value: i32) {
        if self.caps.multitouch {
            match code {
                ABS_MT_SLOT => self.slot = usize::try_from(value).unwrap_or(usize::MAX),
                ABS_MT_TRACKING_ID => {
                    if let Some(s) = self.slots.get_mut(self.slot) {
                        s.active = value >= 0;
                        s.moved = true;
                    }
                }
                ABS_MT_POSITION_X => {
                    if let Some(s) = self.slots.get_mut(self.slot) {
                        s.x = value;
                        s.moved = true;
                    }
                }
                ABS_MT_POSITION_Y => {
                    if let Some(s) = self.slots.get_mut(self.slot) {
                        s.y = value;
                        s.moved = true;
                    }
                }
                _ => {}
            }
            return;
        }
        match code {
            ABS_X => self.abs.0 = value,
            ABS_Y => self.abs.1 = value,
            _ => return,
        }
        if self.caps.touch.is_some() {
            self.slots[0].x = self.abs.0;
            self.slots[0].y = self.abs.1;
            self.slots[0].moved = true;
        } else {
            self.abs_moved = true;
        }
    }

    fn finish_frame(&mut self, out: &mut Vec<Action>) {
        if (self.dx != 0 || self.dy != 0) && self.caps.relative_pointer {
            out.push(Action::Motion { dx: f64::from(self.dx), dy: f64::from(self.dy) });
        }
        if self.abs_moved {
            if let Some((rx, ry)) = self.caps.absolute_pointer {
                out.push(Action::MoveTo { x: rx.fraction(self.abs.0), y: ry.fraction(self.abs.1) });
            }
        }
        for (code, pressed) in self.buttons.drain(..) {
            out.push(Action::Button { code: u32::from(button_code(code)), pressed });
        }
        if self.wheel != 0 || self.hwheel != 0 {
            // evdev: wheel up is positive; Wayland: down is positive.
            out.push(Action::Scroll { vertical: self.wheel.saturating_neg(), horizontal: self.hwheel });
        }
        if let Some((rx, ry)) = self.caps.touch {
            let mut any = false;
            for (i, s) in self.slots.iter_mut().enumerate() {
                if !s.moved {
                    continue;
                }
                let (slot, x, y) = (i as u32, rx.fraction(s.x), ry.fraction(s.y));
                match (s.was_active, s.active) {
                    (false, true) => out.push(Action::TouchDown { slot, x, y }),
                    (true, true) => out.push(Action::TouchMotion { slot, x, y }),
                    (true, false) => out.push(Action::TouchUp { slot }),
                    (false, false) => continue,
                }
                any = true;
                s.was_active = s.active;
                s.moved = false;
            }
            if any {
                out.push(Action::TouchFrame);
            }
        }
        self.discard_frame();
    }

    fn discard_frame(&mut self) {
        self.dx = 0;
        self.dy = 0;
        self.wheel = 0;
        self.hwheel = 0;
        self.abs_moved = false;
        self.buttons.clear();
        for s in &mut self.slots {
            s.moved = false;
        }
    }

    /// Releases everything held (keys, buttons) and cancels touch contacts:
    /// the device went away or its events were lost.
    pub fn release_all(&mut self, out: &mut Vec<Action>) {
        for code in std::mem::take(&mut self.held) {
            if code == BTN_TOUCH && self.caps.touch.is_some() {
                continue;
            }
            if is_key(code) {
                out.push(Action::Key { code: u32::from(code), pressed: false });
            } else {
                out.push(Action::Button { code: u32::from(button_code(code)), pressed: false });
            }
        }
        if self.slots.iter().any(|s| s.was_active) {
            out.push(Action::TouchCancel);
        }
        for s in &mut self.slots {
            *s = Slot::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: u16, code: u16, value: i32) -> RawEvent {
        RawEvent { kind, code, value }
    }

    fn run(d: &mut Decoder, evs: &[RawEvent]) -> Vec<Action> {
        let mut out = Vec::new();
        for e in evs {
            d.feed(*e, &mut out);
        }
        out
    }

    fn keyboard() -> Capabilities {
        Capabilities { keyboard: true, ..Default::default() }
    }

    #[test]
    fn records_round_trip() {
        let e = ev(EV_ABS, ABS_MT_POSITION_Y, -7);
        assert_eq!(RawEvent::from_bytes(&e.to_bytes()), e);
    }

    #[test]
    fn keys_are_passed_once_and_repeats_dropped() {
        let mut d = Decoder::new(keyboard());
        let out = run(&mut d, &[ev(EV_KEY, KEY_A, 1), RawEvent::sync(), ev(EV_KEY, KEY_A, 2), ev(EV_KEY, KEY_A, 1), ev(EV_KEY, KEY_A, 0), RawEvent::sync()]);
        assert_eq!(out, [Action::Key { code: 30, pressed: true }, Action::Key { code: 30, pressed: false }]);
        // A release of a key never pressed is not passed on.
        assert!(run(&mut d, &[ev(EV_KEY, KEY_ENTER, 0)]).is_empty());
        // A keyboard's mouse buttons are not a pointer.
        assert!(run(&mut d, &[ev(EV_KEY, BTN_LEFT, 1), RawEvent::sync()]).is_empty());
    }

    #[test]
    fn relative_motion_is_summed_per_frame_and_wheel_is_flipped() {
        let caps = Capabilities { relative_pointer: true, ..Default::default() };
        let mut d = Decoder::new(caps);
        let out = run(&mut d, &[ev(EV_REL, REL_X, 3), ev(EV_REL, REL_X, 2), ev(EV_REL, REL_Y, -1), ev(EV_REL, REL_WHEEL, 1), RawEvent::sync()]);
        assert_eq!(out, [Action::Motion { dx: 5.0, dy: -1.0 }, Action::Scroll { vertical: -120, horizontal: 0 }]);
        assert_eq!(run(&mut d, &[ev(EV_KEY, BTN_LEFT, 1), RawEvent::sync()]), [Action::Button { code: 0x110, pressed: true }]);
        // Keys on a mouse are not a keyboard.
        assert!(run(&mut d, &[ev(EV_KEY, KEY_A, 1), RawEvent::sync()]).is_empty());
    }

    #[test]
    fn hires_wheels_count_only_their_fine_steps() {
        let caps = Capabilities { relative_pointer: true, hires_wheel: true, ..Default::default() };
        let mut d = Decoder::new(caps);
        let out = run(&mut d, &[ev(EV_REL, REL_WHEEL, 1), ev(EV_REL, REL_WHEEL_HI_RES, 60), ev(EV_REL, REL_HWHEEL_HI_RES, -30), RawEvent::sync()]);
        assert_eq!(out, [Action::Scroll { vertical: -60, horizontal: -30 }]);
    }

    #[test]
    fn a_tablet_moves_the_pointer_to_a_fraction_of_the_screen() {
        let r = AbsRange { min: 0, max: 32767 };
        let caps = Capabilities { absolute_pointer: Some((r, r)), ..Default::default() };
        let mut d = Decoder::new(caps);
        let out = run(&mut d, &[ev(EV_ABS, ABS_X, 32767), ev(EV_ABS, ABS_Y, 0), RawEvent::sync()]);
        assert_eq!(out, [Action::MoveTo { x: 1.0, y: 0.0 }]);
        // Out of range values are clamped; a tablet's touch is a left click.
        let out = run(&mut d, &[ev(EV_ABS, ABS_X, 99999), ev(EV_KEY, BTN_TOUCH, 1), RawEvent::sync()]);
        assert_eq!(out, [Action::MoveTo { x: 1.0, y: 0.0 }, Action::Button { code: 0x110, pressed: true }]);
    }

    #[test]
    fn multitouch_slots_become_touch_points() {
        let r = AbsRange { min: 0, max: 100 };
        let caps = Capabilities { touch: Some((r, r)), multitouch: true, touch_slots: 2, ..Default::default() };
        let mut d = Decoder::new(caps);
        let down = [
            ev(EV_ABS, ABS_MT_SLOT, 0),
            ev(EV_ABS, ABS_MT_TRACKING_ID, 7),
            ev(EV_ABS, ABS_MT_POSITION_X, 50),
            ev(EV_ABS, ABS_MT_POSITION_Y, 25),
            ev(EV_ABS, ABS_MT_SLOT, 1),
            ev(EV_ABS, ABS_MT_TRACKING_ID, 8),
            ev(EV_ABS, ABS_MT_POSITION_X, 100),
            ev(EV_ABS, ABS_MT_POSITION_Y, 100),
            ev(EV_KEY, BTN_TOUCH, 1),
            RawEvent::sync(),
        ];
        assert_eq!(run(&mut d, &down), [Action::TouchDown { slot: 0, x: 0.5, y: 0.25 }, Action::TouchDown { slot: 1, x: 1.0, y: 1.0 }, Action::TouchFrame]);
        let out = run(
            &mut d,
            &[ev(EV_ABS, ABS_MT_SLOT, 0), ev(EV_ABS, ABS_MT_POSITION_X, 0), ev(EV_ABS, ABS_MT_SLOT, 1), ev(EV_ABS, ABS_MT_TRACKING_ID, -1), RawEvent::sync()],
        );
        assert_eq!(out, [Action::TouchMotion { slot: 0, x: 0.0, y: 0.25 }, Action::TouchUp { slot: 1 }, Action::TouchFrame]);
        // A slot past the device's count is ignored, not a panic.
        assert!(run(&mut d, &[ev(EV_ABS, ABS_MT_SLOT, 40), ev(EV_ABS, ABS_MT_TRACKING_ID, 3), ev(EV_ABS, ABS_MT_SLOT, -2), RawEvent::sync()]).is_empty());
    }

    #[test]
    fn single_touch_screens_use_slot_zero() {
        let r = AbsRange { min: 0, max: 10 };
        let caps = Capabilities { touch: Some((r, r)), touch_slots: 1, ..Default::default() };
        let mut d = Decoder::new(caps);
        let out = run(&mut d, &[ev(EV_KEY, BTN_TOUCH, 1), ev(EV_ABS, ABS_X, 5), ev(EV_ABS, ABS_Y, 10), RawEvent::sync()]);
        assert_eq!(out, [Action::TouchDown { slot: 0, x: 0.5, y: 1.0 }, Action::TouchFrame]);
        let out = run(&mut d, &[ev(EV_KEY, BTN_TOUCH, 0), RawEvent::sync()]);
        assert_eq!(out, [Action::TouchUp { slot: 0 }, Action::TouchFrame]);
    }

    #[test]
    fn lost_events_release_what_is_held_and_skip_the_broken_frame() {
        let r = AbsRange { min: 0, max: 10 };
        let caps = Capabilities { keyboard: true, relative_pointer: true, touch: Some((r, r)), multitouch: true, touch_slots: 1, ..Default::default() };
        let mut d = Decoder::new(caps);
        run(&mut d, &[ev(EV_KEY, KEY_A, 1), ev(EV_KEY, BTN_LEFT, 1), ev(EV_ABS, ABS_MT_TRACKING_ID, 1), RawEvent::sync()]);
        let out = run(&mut d, &[ev(EV_SYN, SYN_DROPPED, 0), ev(EV_REL, REL_X, 9), ev(EV_KEY, KEY_ENTER, 1), RawEvent::sync()]);
        assert_eq!(out, [Action::Key { code: 30, pressed: false }, Action::Button { code: 0x110, pressed: false }, Action::TouchCancel]);
        // After the next report, records count again.
        assert_eq!(run(&mut d, &[ev(EV_REL, REL_X, 1), RawEvent::sync()]), [Action::Motion { dx: 1.0, dy: 0.0 }]);
    }

    #[test]
    fn a_click_in_a_lost_frame_is_never_passed_on_nor_released() {
        let mut d = Decoder::new(Capabilities { relative_pointer: true, ..Default::default() });
        let out = run(&mut d, &[ev(EV_KEY, BTN_LEFT, 1), ev(EV_SYN, SYN_DROPPED, 0), RawEvent::sync()]);
        assert!(out.is_empty(), "{out:?}");
        let mut out = Vec::new();
        d.release_all(&mut out);
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn classification_from_bitmaps() {
        let set = |bits: &[u16], len: usize| {
            let mut v = vec![0u8; len];
            for &b in bits {
                v[b as usize / 8] |= 1 << (b % 8);
            }
            v
        };
        let range = |_| Ok(AbsRange { min: 0, max: 32767 });
        let keys = set(&[KEY_A, KEY_ENTER, KEY_SPACE], 96);
        let kb = Capabilities::from_bits("kb".into(), &keys, &[], &[], &[], range).unwrap();
        assert!(kb.keyboard && !kb.relative_pointer && kb.useful());
        // A power button is of no use here.
        let power = Capabilities::from_bits("pwr".into(), &set(&[116], 96), &[], &[], &[], range).unwrap();
        assert!(!power.useful());
        // QEMU's virtio tablet: absolute X/Y and buttons, not direct.
        let tablet = Capabilities::from_bits("tablet".into(), &set(&[BTN_LEFT], 96), &[], &set(&[ABS_X, ABS_Y], 8), &[], range).unwrap();
        assert!(tablet.absolute_pointer.is_some() && tablet.touch.is_none());
        // A direct multitouch screen.
        let abs = set(&[ABS_X, ABS_Y, ABS_MT_SLOT, ABS_MT_POSITION_X, ABS_MT_POSITION_Y, ABS_MT_TRACKING_ID], 8);
        let slots = |a| Ok(AbsRange { min: 0, max: if a == ABS_MT_SLOT { 9 } else { 4095 } });
        let ts = Capabilities::from_bits("ts".into(), &set(&[BTN_TOUCH], 96), &[], &abs, &[1 << INPUT_PROP_DIRECT], slots).unwrap();
        assert!(ts.multitouch && ts.touch_slots == 10 && ts.absolute_pointer.is_none());
    }

    proptest::proptest! {
        /// Whatever a device sends, what reaches the seat is consistent:
        /// no release without its press, no press twice, touch points
        /// down once and up once; and after release_all nothing is held.
        #[test]
        fn any_records_give_consistent_actions(records in proptest::collection::vec((0u16..4, 0u16..0x300, -3i32..40_000), 0..400)) {
            let r = AbsRange { min: 0, max: 30_000 };
            let caps = Capabilities { keyboard: true, relative_pointer: true, touch: Some((r, r)), multitouch: true, touch_slots: 4, ..Default::default() };
            let mut d = Decoder::new(caps);
            let mut out = Vec::new();
            for (kind, code, value) in records {
                d.feed(RawEvent { kind, code, value }, &mut out);
            }
            d.release_all(&mut out);
            let mut down = std::collections::BTreeSet::new();
            let mut touching = std::collections::BTreeSet::new();
            for a in &out {
                match *a {
                    Action::Key { code, pressed } | Action::Button { code, pressed } => {
                        if pressed {
                            proptest::prop_assert!(down.insert(code), "{code} pressed twice");
                        } else {
                            proptest::prop_assert!(down.remove(&code), "{code} released unpressed");
                        }
                    }
                    Action::TouchDown { slot, x, y } => {
                        proptest::prop_assert!(touching.insert(slot) && (0.0..=1.0).contains(&x) && (0.0..=1.0).contains(&y));
                    }
                    Action::TouchMotion { slot, .. } => proptest::prop_assert!(touching.contains(&slot)),
                    Action::TouchUp { slot } => proptest::prop_assert!(touching.remove(&slot)),
                    Action::TouchCancel => touching.clear(),
                    _ => {}
                }
            }
            proptest::prop_assert!(down.is_empty() && touching.is_empty(), "still held: {down:?} {touching:?}");
        }
    }
}
