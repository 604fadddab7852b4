//! The system UI's shared pieces and its applications' code: drawing
//! into `wl_shm` buffers ([`draw`]), the system font ([`font`]), and the
//! terminal application ([`terminal`]: a VT screen on a pty, drawn with a
//! monospaced font, keys translated with the compositor's XKB keymap).
//!
//! The crate builds two binaries: `systemui` (OpenHarmony's SystemUI: the
//! status bar, power menu and launcher) and `terminal` (the terminal app
//! the launcher starts, the on-device counterpart of `hdc shell`).

pub mod draw;
pub mod font;
pub mod terminal;
