//! Keys to bytes for the pty, on the client side of Wayland's keyboard
//! model: the compositor sends its XKB keymap (`wl_keyboard.keymap`, text
//! in a file descriptor) and the modifier state; this module parses the
//! keymap with `kbvm` (a pure-Rust XKB implementation, so the terminal
//! stays a static binary without libxkbcommon) and turns each key press
//! into what a VT220-style terminal sends: the character in the current
//! layout (Ctrl and Alt applied), or an escape sequence for the editing
//! and cursor keys.

use kbvm::{
    lookup::LookupTable,
    syms,
    xkb::{diagnostic::Diagnostic, Context},
    Components, GroupIndex, Keycode, ModifierMask,
};

/// The largest keymap accepted from the compositor, in bytes (a stock
/// XKB keymap is about 60 KiB).
pub const MAX_KEYMAP: usize = 4 * 1024 * 1024;

/// Why a keymap was not taken.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the keymap is {0} bytes, more than the {MAX_KEYMAP} accepted")]
    TooBig(usize),
    #[error("the keymap does not parse: {0}")]
    Parse(String),
}

/// The keyboard's layout and state, as the compositor last said.
#[derive(Default)]
pub struct Keyboard {
    table: Option<LookupTable>,
    state: Components,
}

impl std::fmt::Debug for Keyboard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyboard").field("keymap", &self.table.is_some()).finish()
    }
}

impl Keyboard {
    /// Takes the keymap text (XKB v1, as `wl_keyboard.keymap` carries it;
    /// a trailing NUL is allowed). On error the previous keymap stays.
    pub fn set_keymap(&mut self, text: &[u8]) -> Result<(), Error> {
        if text.len() > MAX_KEYMAP {
            return Err(Error::TooBig(text.len()));
        }
        let text = text.strip_suffix(b"\0").unwrap_or(text);
        let mut diagnostics: Vec<Diagnostic> = Vec::new();
        let keymap = Context::default().keymap_from_bytes(&mut diagnostics, None, text).map_err(|e| Error::Parse(e.to_string()))?;
        self.table = Some(keymap.to_builder().build_lookup_table());
        self.state = Components::default();
        Ok(())
    }

    /// Whether a keymap was taken.
    pub fn has_keymap(&self) -> bool {
        self.table.is_some()
    }

    /// Takes `wl_keyboard.modifiers`.
    pub fn set_modifiers(&mut self, pressed: u32, latched: u32, locked: u32, group: u32) {
        self.state.mods_pressed = ModifierMask(pressed);
        self.state.mods_latched = ModifierMask(latched);
        self.state.mods_locked = ModifierMask(locked);
        self.state.group_locked = GroupIndex(group);
        self.state.update_effective();
    }

    /// Whether Ctrl and Shift are both held (the terminal's own
    /// shortcuts: Ctrl+Shift+C copies, Ctrl+Shift+V pastes).
    pub fn ctrl_shift(&self) -> bool {
        let held = self.state.mods;
        held.contains(ModifierMask::CONTROL) && held.contains(ModifierMask::SHIFT)
    }

    /// Whether the key (an evdev code, as `wl_keyboard.key` gives it)
    /// repeats while held.
    pub fn repeats(&self, key: u32) -> bool {
        self.table.as_ref().is_some_and(|t| t.repeats(Keycode::from_evdev(key)))
    }

    /// The bytes a press of `key` (an evdev code) sends to the program:
    /// empty for a modifier or a key with nothing to send. `app_cursor`:
    /// the program asked for application cursor keys (`ESC O A`).
    pub fn bytes(&self, key: u32, app_cursor: bool) -> Vec<u8> {
        let Some(table) = &self.table else { return Vec::new() };
        let lookup = table.lookup(self.state.group, self.state.mods, Keycode::from_evdev(key));
        let alt = lookup.remaining_mods().contains(ModifierMask::ALT);
        let mut out = Vec::new();
        for props in lookup {
            if let Some(seq) = special(props.keysym(), app_cursor) {
                out.extend_from_slice(seq);
            } else if let Some(c) = props.char() {
                if alt {
                    out.push(0x1b);
                }
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
        out
    }
}

/// The sequence of an editing, cursor or function key, or `None` for a
/// key that sends its character.
fn special(sym: kbvm::Keysym, app_cursor: bool) -> Option<&'static [u8]> {
    let cursor = |normal: &'static [u8], app: &'static [u8]| Some(if app_cursor { app } else { normal });
    match sym {
        syms::Return | syms::KP_Enter => Some(b"\r"),
        syms::BackSpace => Some(b"\x7f"),
        syms::Tab => Some(b"\t"),
        syms::ISO_Left_Tab => Some(b"\x1b[Z"),
        syms::Escape => Some(b"\x1b"),
        syms::Up | syms::KP_Up => cursor(b"\x1b[A", b"\x1bOA"),
        syms::Down | syms::KP_Down => cursor(b"\x1b[B", b"\x1bOB"),
        syms::Right | syms::KP_Right => cursor(b"\x1b[C", b"\x1bOC"),
        syms::Left | syms::KP_Left => cursor(b"\x1b[D", b"\x1bOD"),
        syms::Home | syms::KP_Home => cursor(b"\x1b[H", b"\x1bOH"),
        syms::End | syms::KP_End => cursor(b"\x1b[F", b"\x1bOF"),
        syms::Insert | syms::KP_Insert => Some(b"\x1b[2~"),
        syms::Delete | syms::KP_Delete => Some(b"\x1b[3~"),
        syms::Page_Up | syms::KP_Page_Up => Some(b"\x1b[5~"),
        syms::Page_Down | syms::KP_Page_Down => Some(b"\x1b[6~"),
        syms::F1 => Some(b"\x1bOP"),
        syms::F2 => Some(b"\x1bOQ"),
        syms::F3 => Some(b"\x1bOR"),
        syms::F4 => Some(b"\x1bOS"),
        syms::F5 => Some(b"\x1b[15~"),
        syms::F6 => Some(b"\x1b[17~"),
        syms::F7 => Some(b"\x1b[18~"),
        syms::F8 => Some(b"\x1b[19~"),
        syms::F9 => Some(b"\x1b[20~"),
        syms::F10 => Some(b"\x1b[21~"),
        syms::F11 => Some(b"\x1b[23~"),
        syms::F12 => Some(b"\x1b[24~"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small keymap in the text form compositors send: a, 1, Return,
    /// Up, Shift and Control, with the usual modifier map.
    const KEYMAP: &str = r#"xkb_keymap {
        xkb_keycodes { <AE01> = 10; <AC01> = 38; <RTRN> = 36; <UP> = 111; <LFSH> = 50; <LCTL> = 37; <LALT> = 64; };
        xkb_types { include "basic" };
        xkb_compat { include "complete" };
        xkb_symbols {
            key <AE01> { [ 1, exclam ] };
            key <AC01> { type = "ALPHABETIC", [ a, A ] };
            key <RTRN> { [ Return ] };
            key <UP> { [ Up ] };
            key <LFSH> { [ Shift_L ] };
            key <LCTL> { [ Control_L ] };
            key <LALT> { [ Alt_L ] };
            modifier_map Shift { Shift_L };
            modifier_map Control { Control_L };
            modifier_map Mod1 { Alt_L };
        };
    };"#;

    // evdev codes are XKB keycodes minus 8.
    const A: u32 = 30;
    const ONE: u32 = 2;
    const ENTER: u32 = 28;
    const UP: u32 = 103;

    #[test]
    fn keys_become_bytes() {
        let mut k = Keyboard::default();
        assert!(k.bytes(A, false).is_empty(), "no keymap yet");
        k.set_keymap(KEYMAP.as_bytes()).unwrap();
        assert_eq!(k.bytes(A, false), b"a");
        assert_eq!(k.bytes(ENTER, false), b"\r");
        assert_eq!(k.bytes(UP, false), b"\x1b[A");
        assert_eq!(k.bytes(UP, true), b"\x1bOA");
        k.set_modifiers(ModifierMask::SHIFT.0, 0, 0, 0);
        assert_eq!(k.bytes(A, false), b"A");
        assert_eq!(k.bytes(ONE, false), b"!");
        k.set_modifiers(ModifierMask::CONTROL.0, 0, 0, 0);
        assert_eq!(k.bytes(A, false), [1u8]);
        k.set_modifiers(ModifierMask::ALT.0, 0, 0, 0);
        assert_eq!(k.bytes(A, false), b"\x1ba");
        // Caps Lock.
        k.set_modifiers(0, 0, ModifierMask::LOCK.0, 0);
        assert_eq!(k.bytes(A, false), b"A");
        assert_eq!(k.bytes(ONE, false), b"1");
    }

    #[test]
    fn bad_keymaps_are_refused_and_the_old_one_kept() {
        let mut k = Keyboard::default();
        k.set_keymap(KEYMAP.as_bytes()).unwrap();
        assert!(matches!(k.set_keymap(b"xkb_keymap { garbage"), Err(Error::Parse(_))));
        assert!(matches!(k.set_keymap(&vec![b' '; MAX_KEYMAP + 1]), Err(Error::TooBig(_))));
        assert_eq!(k.bytes(A, false), b"a");
    }
}
