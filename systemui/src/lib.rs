//! The system UI and the applications that come with the system, as one
//! library: drawing into `wl_shm` buffers ([`draw`]), the system font
//! ([`font`]), the terminal's emulation ([`terminal`]: a VT screen on a
//! pty, drawn with a monospaced font, keys translated with the
//! compositor's XKB keymap), the Settings application's About page
//! ([`settings`]), and each program's `main` ([`programs`]).
//!
//! The crate builds one binary, `systemui`, which is also `settings`,
//! `terminal` and `bootanimation` (links to it in the image; argv[0]
//! picks, [`programs::by_name`]): OpenHarmony's SystemUI (the status
//! bar, power menu and launcher), the boot animation (from the
//! compositor's first frame until the boot completes), and the apps the
//! launcher starts. One binary rather than four that are mostly the same
//! toolkit, tokio and zbus: the image carries their code once, and the
//! processes share its pages.

mod apps;
mod bar;
pub mod draw;
pub mod font;
pub mod programs;
mod services;
pub mod settings;
pub mod terminal;

/// The Wayland handlers every client here has alike, implemented for
/// `$ty` (which has `registry: RegistryState`, `output: OutputState` and
/// `shm: Shm` fields): outputs and shared memory as smithay-client-toolkit
/// keeps them, the registry with `[$handler, ...]` (e.g. `OutputState`,
/// `SeatState`), and `wl_surface` events ignored but for frame callbacks,
/// which call `$ty::frame_done(&mut self)` when `frame_done` is given, and
/// are ignored otherwise.
#[macro_export]
macro_rules! client_handlers {
    ($ty:ty, [$($handler:ty),*]) => {
        $crate::client_handlers!(@common $ty, [$($handler),*], |_app: &mut $ty| {});
    };
    ($ty:ty, [$($handler:ty),*], frame_done) => {
        $crate::client_handlers!(@common $ty, [$($handler),*], |app: &mut $ty| app.frame_done());
    };
    (@common $ty:ty, [$($handler:ty),*], $frame:expr) => {
        use ::smithay_client_toolkit::reexports::client::{protocol::{wl_output::{Transform, WlOutput}, wl_surface::WlSurface}, Connection as _Conn, QueueHandle as _Qh};
        impl ::smithay_client_toolkit::compositor::CompositorHandler for $ty {
            fn scale_factor_changed(&mut self, _: &_Conn, _: &_Qh<Self>, _: &WlSurface, _: i32) {}
            fn transform_changed(&mut self, _: &_Conn, _: &_Qh<Self>, _: &WlSurface, _: Transform) {}
            fn frame(&mut self, _: &_Conn, _: &_Qh<Self>, _: &WlSurface, _: u32) {
                let f = $frame;
                f(self);
            }
            fn surface_enter(&mut self, _: &_Conn, _: &_Qh<Self>, _: &WlSurface, _: &WlOutput) {}
            fn surface_leave(&mut self, _: &_Conn, _: &_Qh<Self>, _: &WlSurface, _: &WlOutput) {}
        }
        impl ::smithay_client_toolkit::output::OutputHandler for $ty {
            fn output_state(&mut self) -> &mut ::smithay_client_toolkit::output::OutputState {
                &mut self.output
            }
            fn new_output(&mut self, _: &_Conn, _: &_Qh<Self>, _: WlOutput) {}
            fn update_output(&mut self, _: &_Conn, _: &_Qh<Self>, _: WlOutput) {}
            fn output_destroyed(&mut self, _: &_Conn, _: &_Qh<Self>, _: WlOutput) {}
        }
        impl ::smithay_client_toolkit::shm::ShmHandler for $ty {
            fn shm_state(&mut self) -> &mut ::smithay_client_toolkit::shm::Shm {
                &mut self.shm
            }
        }
        impl ::smithay_client_toolkit::registry::ProvidesRegistryState for $ty {
            fn registry(&mut self) -> &mut ::smithay_client_toolkit::registry::RegistryState {
                &mut self.registry
            }
            ::smithay_client_toolkit::registry_handlers![$($handler),*];
        }
        ::smithay_client_toolkit::delegate_registry!($ty);
        ::smithay_client_toolkit::delegate_dispatch2!($ty);
    };
}
