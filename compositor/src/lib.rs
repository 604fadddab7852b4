//! Compositor: `render_service`, Accord's Wayland compositor (OpenHarmony's
//! render service). This crate owns:
//!
//! - the Wayland server side ([`state`]): the listening socket, the globals
//!   clients see (`wl_compositor`, `wl_subcompositor`, `wl_shm`,
//!   `xdg_wm_base`, `wl_output` with `zxdg_output_manager_v1`, a
//!   `wl_seat` named `seat0`, copy and paste ([`selection`]:
//!   `wl_data_device_manager` and the primary selection),
//!   `zxdg_decoration_manager_v1` ([`decoration`]: always server-side,
//!   none drawn), `wp_viewporter` ([`viewporter`]) and `wp_presentation`
//!   ([`presentation`])), the window list
//!   (every toplevel maximised to the output, popups where their client
//!   asks), frame callbacks after each render;
//! - input ([`input`]): evdev keyboards, mice, tablets and touch screens
//!   read directly, focus, the task switcher shortcut, the cursor;
//! - rendering ([`render`]): one pixman (CPU) renderer, damage-tracked so
//!   only the regions that changed are drawn again, windows over a dark
//!   blue background ([`BACKGROUND`]);
//! - two backends sharing that rendering code: [`headless`] (an offscreen
//!   image, for tests and screenshots) and [`drm`] (DRM/KMS with two dumb
//!   buffers, for the device's display);
//! - the display manager (SA 4607, [`display_manager`]): the displays and
//!   screenshots, for clients through samgr;
//! - [`Compositor`], the event loop (calloop) that ties them together.
//!
//! Frames are paced by a timer ([`FRAME_INTERVAL`]) and only drawn when
//! something changed. A client that breaks the protocol gets a protocol
//! error and is disconnected; nothing a client sends panics the compositor.

pub mod decoration;
pub mod display_manager;
pub mod drm;
pub mod follow_power;
pub mod headless;
pub mod input;
pub mod layer_shell;
pub mod presentation;
pub mod render;
pub mod selection;
pub mod state;
pub mod viewporter;

use std::{
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    time::Duration,
};

use smithay::reexports::{
    calloop::{
        generic::Generic,
        timer::{TimeoutAction, Timer},
        EventLoop, Interest, Mode, PostAction, RegistrationToken,
    },
    wayland_server::{Display, ListeningSocket},
};
use tracing::{info, warn};

pub use headless::Frame;
use state::{Backend, ClientState, State};

/// The background colour behind the windows, as `0xRRGGBB`.
pub const BACKGROUND: u32 = 0x1b2b45;

/// The shortest time between two frames: 60 Hz.
pub const FRAME_INTERVAL: Duration = Duration::from_micros(16_667);

/// How long no client is accepted after accepting one failed (out of
/// descriptors, most likely).
pub const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Where the compositor's Wayland socket should go when `XDG_RUNTIME_DIR`
/// is not set.
pub const FALLBACK_RUNTIME_DIR: &str = "/run/render_service";

/// The default socket name (`WAYLAND_DISPLAY` for clients).
pub const DEFAULT_SOCKET_NAME: &str = "wayland-0";

/// The most clients one uid may have connected at once (root is not
/// counted): each costs a descriptor and its objects.
pub const MAX_CLIENTS_PER_UID: usize = 16;

/// The largest headless output accepted, in pixels on each side.
pub const MAX_HEADLESS_SIDE: u32 = 16384;

/// Everything that can go wrong while setting the compositor up or running it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Wayland socket could not be created (name taken, directory missing...).
    #[error("cannot listen on the Wayland socket {path}: {source}")]
    Socket {
        /// The socket's full path.
        path: PathBuf,
        /// Why.
        #[source]
        source: smithay::reexports::wayland_server::BindError,
    },
    /// A file system or system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The event loop could not be created or a source not added to it.
    #[error("event loop: {0}")]
    EventLoop(#[source] smithay::reexports::calloop::Error),
    /// The pixman renderer failed (creation, binding a buffer, reading pixels).
    #[error("renderer: {0}")]
    Renderer(#[from] smithay::backend::renderer::pixman::PixmanError),
    /// Rendering a frame failed.
    #[error("rendering a frame: {0}")]
    Render(String),
    /// A headless size out of range (each side 1..=[`MAX_HEADLESS_SIDE`]).
    #[error("invalid output size {0}x{1} (each side must be 1..={MAX_HEADLESS_SIDE})")]
    InvalidSize(u32, u32),
    /// No `/dev/dri/card*` has a connected display (the message says what was tried).
    #[error("no usable DRM device: {0}")]
    NoDisplay(String),
    /// A DRM/KMS operation failed.
    #[error("DRM: {context}: {source}")]
    Drm {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        #[source]
        source: smithay::backend::drm::DrmError,
    },
    /// A dumb buffer could not be created or exported.
    #[error("dumb buffer: {context}: {source}")]
    Buffer {
        /// What was being done.
        context: &'static str,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
}

/// Where the Wayland socket is created.
#[derive(Debug, Clone)]
pub struct SocketConfig {
    /// The directory (normally `$XDG_RUNTIME_DIR`).
    pub dir: PathBuf,
    /// The socket's name inside it (what clients put in `WAYLAND_DISPLAY`).
    pub name: String,
}

impl SocketConfig {
    /// `name` in `$XDG_RUNTIME_DIR`, or in [`FALLBACK_RUNTIME_DIR`] (created
    /// with mode 0755 if missing) when that variable is unset or empty.
    pub fn from_env(name: &str) -> Result<Self, Error> {
        let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => {
                let dir = PathBuf::from(FALLBACK_RUNTIME_DIR);
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o755)
                    .create(&dir)
                    .map_err(|source| Error::Io { context: format!("creating {}", dir.display()), source })?;
                dir
            }
        };
        Ok(SocketConfig { dir, name: name.to_owned() })
    }

    /// The socket's full path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(&self.name)
    }
}

/// A running compositor: its event loop, Wayland display and backend.
///
/// Drive it with [`Compositor::dispatch`] in a loop (the service and the
/// tests). It is not `Send`: create it on the thread that runs it.
pub struct Compositor {
    event_loop: EventLoop<'static, State>,
    state: State,
    socket_path: PathBuf,
    power: ScreenPowerSender,
    display_requests: display_manager::DisplayRequestSender,
}

/// Screen power (OpenHarmony's display power states as far as a screen
/// without a backlight has them: DIM counts as on). Off disables the
/// CRTC (DRM) and withholds frame callbacks, so clients stop drawing; on
/// again, the whole output is drawn anew.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenPower {
    On,
    Off,
}

/// Sends [`ScreenPower`] changes to a running compositor from any thread;
/// sending fails once the compositor is gone.
pub type ScreenPowerSender = smithay::reexports::calloop::channel::Sender<ScreenPower>;

impl std::fmt::Debug for Compositor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compositor").field("socket_path", &self.socket_path).finish_non_exhaustive()
    }
}

impl Compositor {
    /// A compositor rendering into an offscreen image of `width` x `height`
    /// pixels (each side 1..=[`MAX_HEADLESS_SIDE`]), listening on `socket`.
    pub fn headless(width: u32, height: u32, socket: &SocketConfig) -> Result<Self, Error> {
        if width == 0 || height == 0 || width > MAX_HEADLESS_SIDE || height > MAX_HEADLESS_SIDE {
            return Err(Error::InvalidSize(width, height));
        }
        let backend = headless::HeadlessBackend::new(width as i32, height as i32)?;
        Self::with_backend(|_| Ok(Backend::Headless(backend)), socket)
    }

    /// A compositor on the first `/dev/dri/card*` with a connected display
    /// (see [`drm`] for how the card, connector and mode are chosen),
    /// listening on `socket`.
    pub fn drm(socket: &SocketConfig) -> Result<Self, Error> {
        Self::with_backend(|handle| drm::DrmBackend::open(handle).map(Backend::Drm), socket)
    }

    fn with_backend(
        make_backend: impl FnOnce(&smithay::reexports::calloop::LoopHandle<'static, State>) -> Result<Backend, Error>,
        socket: &SocketConfig,
    ) -> Result<Self, Error> {
        let event_loop: EventLoop<'static, State> = EventLoop::try_new().map_err(Error::EventLoop)?;
        let display: Display<State> =
            Display::new().map_err(|e| Error::Io { context: "creating the Wayland display".into(), source: std::io::Error::other(e.to_string()) })?;
        let handle = event_loop.handle();
        let backend = make_backend(&handle)?;
        let state = State::new(&display, handle.clone(), backend);

        let socket_path = socket.path();
        let listener = ListeningSocket::bind_absolute(socket_path.clone()).map_err(|source| Error::Socket { path: socket_path.clone(), source })?;
        info!(socket = %socket_path.display(), "listening");
        // The listener's token, for the callback to enable it again after a pause.
        let listener_token: std::rc::Rc<std::cell::Cell<Option<RegistrationToken>>> = std::rc::Rc::default();
        let token_in_callback = listener_token.clone();
        let token = handle
            .insert_source(Generic::new(listener, Interest::READ, Mode::Level), move |_, listener, state: &mut State| {
                loop {
                    match listener.accept() {
                        Ok(Some(stream)) => {
                            // Who it is, from the kernel; past its uid's
                            // bound the connection is closed at once.
                            let Some(admitted) = state.admit(&stream) else { continue };
                            let data = ClientState::counted(admitted);
                            if let Err(err) = state.display_handle.insert_client(stream, std::sync::Arc::new(data)) {
                                warn!(%err, "cannot add a client");
                            }
                        }
                        Ok(None) => break,
                        Err(err) => {
                            // Out of descriptors (EMFILE, ENFILE): the
                            // connection still waits, the socket stays
                            // readable; paused, the loop does not spin.
                            warn!(%err, "accepting a client; not accepting for {ACCEPT_PAUSE:?}");
                            let Some(token) = token_in_callback.get() else { break };
                            let resume = state.loop_handle.insert_source(Timer::from_duration(ACCEPT_PAUSE), move |_, _, state: &mut State| {
                                if let Err(err) = state.loop_handle.enable(&token) {
                                    warn!(%err, "cannot accept clients again");
                                }
                                TimeoutAction::Drop
                            });
                            if resume.is_ok() {
                                return Ok(PostAction::Disable);
                            }
                            break;
                        }
                    }
                }
                Ok(PostAction::Continue)
            })
            .map_err(|e| Error::EventLoop(e.error))?;
        listener_token.set(Some(token));
        handle
            .insert_source(Generic::new(display, Interest::READ, Mode::Level), |_, display, state: &mut State| {
                // SAFETY: the display is not dropped while the event loop dispatches it.
                if let Err(err) = unsafe { display.get_mut().dispatch_clients(state) } {
                    warn!(%err, "dispatching clients");
                }
                Ok(PostAction::Continue)
            })
            .map_err(|e| Error::EventLoop(e.error))?;

        let (power, power_rx) = smithay::reexports::calloop::channel::channel::<ScreenPower>();
        handle
            .insert_source(power_rx, |event, _, state: &mut State| {
                if let smithay::reexports::calloop::channel::Event::Msg(p) = event {
                    state.set_screen_power(p == ScreenPower::On);
                }
            })
            .map_err(|e| Error::EventLoop(e.error))?;

        let (requests, display_rx) = smithay::reexports::calloop::channel::channel::<display_manager::DisplayRequest>();
        let display_requests = display_manager::DisplayRequestSender::new(requests, state.display_listeners.clone());
        handle
            .insert_source(display_rx, |event, _, state: &mut State| {
                if let smithay::reexports::calloop::channel::Event::Msg(request) = event {
                    state.answer_display_request(request);
                }
            })
            .map_err(|e| Error::EventLoop(e.error))?;

        let mut compositor = Compositor { event_loop, state, socket_path, power, display_requests };
        compositor.state.schedule_redraw();
        Ok(compositor)
    }

    /// A handle that turns the screen on and off from another thread (the
    /// binary's power-manager listener).
    pub fn screen_power(&self) -> ScreenPowerSender {
        self.power.clone()
    }

    /// A handle for the display manager SA ([`display_manager::spawn`]) to
    /// ask this compositor about its displays from another thread.
    pub fn display_requests(&self) -> display_manager::DisplayRequestSender {
        self.display_requests.clone()
    }

    /// The Wayland socket's full path.
    pub fn socket_path(&self) -> &Path {
        &self.socket_path
    }

    /// Runs the event loop once: waits up to `timeout` (`None`: until
    /// something happens) for events, handles them, flushes clients.
    pub fn dispatch(&mut self, timeout: Option<Duration>) -> Result<(), Error> {
        self.event_loop
            .dispatch(timeout, &mut self.state)
            .map_err(|e| Error::Io { context: "dispatching the event loop".into(), source: std::io::Error::other(e.to_string()) })?;
        self.state.after_dispatch();
        Ok(())
    }

    /// The last rendered frame, headless only (`None` on DRM, or before the
    /// first frame).
    pub fn frame(&mut self) -> Result<Option<Frame>, Error> {
        match self.state.backend {
            Backend::Headless(_) => self.state.screen_frame(),
            Backend::Drm(_) => Ok(None),
        }
    }

    /// The number of frames rendered so far (ones with damage).
    pub fn frames_rendered(&self) -> u64 {
        self.state.frames_rendered
    }

    /// Sets the keymap and key repeat used when a keyboard is next added
    /// (call before [`Compositor::watch_input`]).
    pub fn set_keyboard_config(&mut self, config: input::KeyboardConfig) {
        self.state.input.keyboard_config = config;
    }

    /// Watches `dir` (`/dev/input`) for evdev devices and reads every
    /// keyboard, pointer and touch screen in it, now and as they come.
    pub fn watch_input(&mut self, dir: &Path) {
        self.state.watch_input_dir(dir.to_owned());
    }

    /// Reads `file` as an input device with capabilities `caps`, whatever
    /// the file is (a FIFO giving evdev records stands in for a device in
    /// tests). The device is dropped at end of file. Returns its name in
    /// the log.
    pub fn add_input_device(&mut self, file: std::fs::File, caps: input::Capabilities) -> String {
        self.state.add_manual_device(file, caps)
    }

    /// The pointer's position on the output, in pixels.
    pub fn pointer_position(&self) -> (f64, f64) {
        (self.state.input.pointer.x, self.state.input.pointer.y)
    }

    /// Lets the members of group `gid` connect (as well as the
    /// compositor's own uid, and root): the socket goes to that group
    /// with mode 0660 (it is created 0755 and owner-only writable, and a
    /// connect needs write permission). The compositor must be in the
    /// group (its supplementary groups), or this fails.
    pub fn share_socket(&self, gid: u32) -> Result<(), Error> {
        use std::os::unix::fs::PermissionsExt;
        let io = |context: String| move |source| Error::Io { context, source };
        std::os::unix::fs::chown(&self.socket_path, None, Some(gid)).map_err(io(format!("giving {} to group {gid}", self.socket_path.display())))?;
        std::fs::set_permissions(&self.socket_path, std::fs::Permissions::from_mode(0o660)).map_err(io(format!("making {} 0660", self.socket_path.display())))
    }

    /// Makes the clients of `uids` the system UI (root always is): they
    /// see wlr-layer-shell ([`layer_shell`]), no one else does. Applies
    /// to clients that connect from now on.
    pub fn allow_system_ui(&mut self, uids: &[u32]) {
        self.state.system_ui_uids = uids.to_vec();
    }

    /// The area app windows are maximised to (the output less the system
    /// UI's exclusive zones): x, y, width, height in pixels.
    pub fn window_area(&self) -> (i32, i32, i32, i32) {
        let a = self.state.window_area();
        (a.loc.x, a.loc.y, a.size.w, a.size.h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_and_sizes() {
        let config = SocketConfig { dir: "/tmp/x".into(), name: "wayland-3".into() };
        assert_eq!(config.path(), PathBuf::from("/tmp/x/wayland-3"));
        let config = SocketConfig { dir: "/nonexistent-dir-for-test".into(), name: "w".into() };
        assert!(matches!(Compositor::headless(0, 10, &config), Err(Error::InvalidSize(0, 10))));
        assert!(matches!(Compositor::headless(10, MAX_HEADLESS_SIDE + 1, &config), Err(Error::InvalidSize(..))));
        assert!(matches!(Compositor::headless(10, 10, &config), Err(Error::Socket { .. })));
    }

    #[test]
    fn background_colour_round_trips() {
        let c = render::background_color();
        let to8 = |f: f32| (f * 255.0).round() as u32;
        assert_eq!(to8(c.r()) << 16 | to8(c.g()) << 8 | to8(c.b()), BACKGROUND);
    }
}
