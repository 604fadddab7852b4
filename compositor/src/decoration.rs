//! xdg-decoration: who draws a window's title bar and borders.
//!
//! Accord maximises every app window and the system UI draws the chrome
//! (status bar, task switcher), so no window has decorations of its own:
//! every toplevel is told `server_side` (the client draws none), whatever
//! it asks for, and the compositor draws none either. A client that does
//! not bind the global (or ignores the answer) may still draw its own.

use smithay::{
    delegate_xdg_decoration,
    reexports::wayland_protocols::xdg::decoration::zv1::server::zxdg_toplevel_decoration_v1::Mode,
    wayland::shell::xdg::{decoration::XdgDecorationHandler, ToplevelSurface},
};

use crate::state::State;

impl State {
    /// Sets `server_side` on `toplevel`; once its first configure is out,
    /// a configure says so (the protocol wants one in answer to each
    /// request, a changed mode or not). Before it, the first configure
    /// carries the mode.
    fn server_side(toplevel: &ToplevelSurface) {
        toplevel.with_pending_state(|s| s.decoration_mode = Some(Mode::ServerSide));
        if toplevel.is_initial_configure_sent() {
            toplevel.send_configure();
        }
    }
}

impl XdgDecorationHandler for State {
    fn new_decoration(&mut self, toplevel: ToplevelSurface) {
        State::server_side(&toplevel);
    }

    fn request_mode(&mut self, toplevel: ToplevelSurface, mode: Mode) {
        tracing::debug!(?mode, "decoration mode asked for: server_side it is");
        State::server_side(&toplevel);
    }

    fn unset_mode(&mut self, toplevel: ToplevelSurface) {
        State::server_side(&toplevel);
    }
}

delegate_xdg_decoration!(State);
