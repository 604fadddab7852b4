//! The compositor's Wayland state: globals, windows, frame scheduling.
//!
//! Every toplevel is mapped at the output's origin and configured
//! maximised to the output's size; popups are placed exactly where their
//! positioner puts them (no constraint adjustment yet). There is one
//! output and one seat (`seat0`, whose devices come from [`crate::input`]).

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use smithay::{
    backend::renderer::{element::memory::MemoryRenderBuffer, utils::on_commit_buffer_handler},
    delegate_compositor, delegate_output, delegate_seat,
    desktop::{PopupKind, PopupManager, Space, Window},
    input::{pointer::CursorImageStatus, Seat, SeatHandler, SeatState},
    output::{Mode as OutputMode, Output, PhysicalProperties, Scale, Subpixel},
    reexports::{
        calloop::{
            timer::{TimeoutAction, Timer},
            LoopHandle,
        },
        wayland_protocols::xdg::shell::server::{
            xdg_popup::XdgPopup,
            xdg_positioner::{self, XdgPositioner},
            xdg_surface::XdgSurface,
            xdg_toplevel::{self, XdgToplevel},
            xdg_wm_base::XdgWmBase,
        },
        wayland_server::{
            backend::{ClientData, ClientId, DisconnectReason},
            delegate_dispatch, delegate_global_dispatch,
            protocol::{
                wl_buffer::{self, WlBuffer},
                wl_seat::WlSeat,
                wl_shm::{self, WlShm},
                wl_shm_pool::{self, WlShmPool},
                wl_surface::WlSurface,
            },
            Client, DataInit, Dispatch, Display, DisplayHandle, Resource,
        },
    },
    utils::{Logical, Serial, Size, Transform},
    wayland::{
        buffer::BufferHandler,
        compositor::{get_parent, is_sync_subsurface, CompositorClientState, CompositorHandler, CompositorState},
        output::{OutputHandler, OutputManagerState},
        shell::xdg::{
            decoration::XdgDecorationState, PopupSurface, PositionerState, ToplevelSurface, XdgPositionerUserData, XdgShellHandler, XdgShellState,
            XdgShellSurfaceUserData, XdgSurfaceUserData, XdgWmBaseUserData,
        },
        shm::{ShmBufferUserData, ShmHandler, ShmPoolUserData, ShmState},
        viewporter::ViewporterState,
    },
};
use tracing::{debug, info, warn};

use crate::{drm::DrmBackend, headless::HeadlessBackend, input::InputState, render::Cursor, FRAME_INTERVAL};

/// What a backend says about its display, used to describe the `wl_output`.
#[derive(Debug, Clone)]
pub struct OutputInfo {
    /// The output's name (`headless-1`, or the connector's, e.g. `Virtual-1`).
    pub name: String,
    /// Manufacturer, as shown to clients.
    pub make: String,
    /// Model, as shown to clients.
    pub model: String,
    /// Size in pixels.
    pub size: (i32, i32),
    /// Refresh rate in mHz.
    pub refresh_mhz: i32,
    /// Physical size in millimetres (0 when unknown).
    pub physical_mm: (i32, i32),
}

/// The result of asking a backend to draw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RenderStatus {
    /// Drawn (or found nothing to draw: `damaged` false).
    Rendered { damaged: bool },
    /// The backend cannot take a frame now (a page flip is pending); it
    /// calls [`State::frame_done`] when it can.
    Busy,
}

// One per process: the size difference between variants does not matter.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Backend {
    Headless(HeadlessBackend),
    Drm(DrmBackend),
}

impl Backend {
    fn output_info(&self) -> OutputInfo {
        match self {
            Backend::Headless(b) => b.output_info(),
            Backend::Drm(b) => b.output_info(),
        }
    }
}

/// Per-client data.
#[derive(Debug, Default)]
pub(crate) struct ClientState {
    compositor_state: CompositorClientState,
    /// The client's live shm pools and buffers: each may hold one of the
    /// compositor's descriptors (a pool's file), at most
    /// [`MAX_SHM_OBJECTS_PER_CLIENT`].
    shm_objects: AtomicUsize,
    /// The client's live surfaces, at most [`MAX_SURFACES_PER_CLIENT`].
    surfaces: AtomicUsize,
    /// Its uid's count of connected clients, given back when it
    /// disconnects.
    pub(crate) uid_clients: std::sync::Arc<AtomicUsize>,
    /// Whether it is the system UI (root, or a uid given to
    /// [`crate::Compositor::allow_system_ui`]): only it sees layer-shell.
    pub(crate) system_ui: bool,
    /// Its live data sources and devices ([`crate::selection`]).
    pub(crate) selection: crate::selection::SelectionCounts,
}

/// The most surfaces (each a wl_surface, with what its role holds) one
/// client may have at once: 2,000 toplevels cost ~15 MiB; past this the
/// client is disconnected (a protocol error on the surface past the bound).
pub const MAX_SURFACES_PER_CLIENT: usize = 512;

/// The most shm pools and buffers one client may have at once. A buffer
/// keeps its pool's file open after the pool is destroyed, so both count:
/// without a bound, one client could take every descriptor the compositor
/// may open (1024 by default) and no other client could connect.
pub const MAX_SHM_OBJECTS_PER_CLIENT: usize = 256;

/// The uid of the process at the other end of `stream` (`SO_PEERCRED`).
fn peer_uid(stream: &std::os::unix::net::UnixStream) -> std::io::Result<u32> {
    use std::os::fd::AsRawFd;
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let r = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, (&mut cred as *mut libc::ucred).cast(), &mut len) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

/// Counts one more shm pool or buffer for `client`; past the bound, a
/// protocol error on `resource` (the client is disconnected) and `false`.
fn take_shm_slot(client: &Client, resource: &impl Resource) -> bool {
    let Some(data) = client.get_data::<ClientState>() else { return true };
    if data.shm_objects.fetch_add(1, Ordering::Relaxed) >= MAX_SHM_OBJECTS_PER_CLIENT {
        resource.post_error(wl_shm::Error::InvalidFd, format!("more than {MAX_SHM_OBJECTS_PER_CLIENT} shm pools and buffers"));
        return false;
    }
    true
}

/// An shm pool or buffer of `client` is gone.
fn release_shm_slot(state: &State, client: ClientId) {
    if let Ok(data) = state.display_handle.backend_handle().get_client_data(client) {
        if let Some(data) = data.downcast_ref::<ClientState>() {
            let _ = data.shm_objects.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

impl ClientState {
    /// A new client's state, holding its uid's count (see [`State::admit`]).
    pub(crate) fn counted(admitted: Admitted) -> ClientState {
        ClientState { uid_clients: admitted.uid_clients, system_ui: admitted.system_ui, ..ClientState::default() }
    }
}

impl ClientData for ClientState {
    fn initialized(&self, client_id: ClientId) {
        debug!(?client_id, "client connected");
    }

    fn disconnected(&self, client_id: ClientId, reason: DisconnectReason) {
        debug!(?client_id, ?reason, "client disconnected");
        self.uid_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The compositor's state, the event loop's data.
pub struct State {
    pub(crate) display_handle: DisplayHandle,
    pub(crate) loop_handle: LoopHandle<'static, State>,
    compositor_state: CompositorState,
    shm_state: ShmState,
    xdg_shell_state: XdgShellState,
    pub(crate) layer_shell_state: smithay::wayland::shell::wlr_layer::WlrLayerShellState,
    _output_manager_state: OutputManagerState,
    /// Clipboard and primary selection ([`crate::selection`]).
    pub(crate) selection: crate::selection::Selection,
    _decoration_state: XdgDecorationState,
    _viewporter_state: ViewporterState,
    /// presentation-time ([`crate::presentation`]).
    pub(crate) presentation: crate::presentation::Presentation,
    seat_state: SeatState<State>,
    pub(crate) seat: Seat<State>,
    pub(crate) space: Space<Window>,
    pub(crate) popups: PopupManager,
    pub(crate) output: Output,
    pub(crate) backend: Backend,
    needs_redraw: bool,
    timer_armed: bool,
    last_frame: Option<Instant>,
    pub(crate) start: Instant,
    pub(crate) frames_rendered: u64,
    /// Whether the screen is on (screen power, following the power
    /// manager); while off, [`State::redraw`] asks the backend for nothing.
    pub(crate) screen_on: bool,
    /// The display manager's listeners, told of each display change
    /// (OpenHarmony's display listeners, SA 4607).
    pub(crate) display_listeners: crate::display_manager::DisplayListeners,
    /// Input devices, pointer position ([`crate::input`]).
    pub(crate) input: InputState,
    /// What the client under the pointer wants as the cursor.
    pub(crate) cursor: CursorImageStatus,
    /// The compositor's own cursor image.
    arrow: MemoryRenderBuffer,
    /// New windows that have not shown a buffer yet (they get the
    /// keyboard when they do).
    unshown: Vec<Window>,
    /// Connected clients per uid.
    clients_per_uid: std::collections::HashMap<u32, std::sync::Arc<AtomicUsize>>,
    /// The uids besides root that are the system UI (layer-shell).
    pub(crate) system_ui_uids: Vec<u32>,
}

/// A connection let in by [`State::admit`].
#[derive(Debug)]
pub(crate) struct Admitted {
    /// Its uid's count of clients (the client gives its one back).
    uid_clients: std::sync::Arc<AtomicUsize>,
    /// Whether its uid is the system UI's.
    system_ui: bool,
}

impl State {
    pub(crate) fn new(display: &Display<State>, loop_handle: LoopHandle<'static, State>, backend: Backend) -> State {
        let dh = display.handle();
        let compositor_state = CompositorState::new::<State>(&dh);
        let shm_state = ShmState::new::<State>(&dh, Vec::new());
        let xdg_shell_state = XdgShellState::new::<State>(&dh);
        // Shown to the system UI only (decided when it connected).
        let layer_shell_state = smithay::wayland::shell::wlr_layer::WlrLayerShellState::new_with_filter::<State, _>(&dh, |client| {
            client.get_data::<ClientState>().is_some_and(|d| d.system_ui)
        });
        let output_manager_state = OutputManagerState::new_with_xdg_output::<State>(&dh);
        let selection = crate::selection::Selection::new(&dh);
        let decoration_state = XdgDecorationState::new::<State>(&dh);
        let viewporter_state = ViewporterState::new::<State>(&dh);
        let presentation = crate::presentation::Presentation::new(&dh);
        let mut seat_state = SeatState::new();
        let seat = seat_state.new_wl_seat(&dh, "seat0");

        let info = backend.output_info();
        let output = Output::new(
            info.name.clone(),
            PhysicalProperties { size: info.physical_mm.into(), subpixel: Subpixel::Unknown, make: info.make.clone(), model: info.model.clone() },
        );
        let mode = OutputMode { size: info.size.into(), refresh: info.refresh_mhz };
        output.change_current_state(Some(mode), Some(Transform::Normal), Some(Scale::Integer(1)), Some((0, 0).into()));
        output.set_preferred(mode);
        output.create_global::<State>(&dh);
        let mut space = Space::default();
        space.map_output(&output, (0, 0));
        info!(output = %info.name, width = info.size.0, height = info.size.1, refresh_mhz = info.refresh_mhz, "output ready");

        State {
            display_handle: dh,
            loop_handle,
            compositor_state,
            shm_state,
            xdg_shell_state,
            layer_shell_state,
            _output_manager_state: output_manager_state,
            selection,
            _decoration_state: decoration_state,
            _viewporter_state: viewporter_state,
            presentation,
            seat_state,
            seat,
            space,
            popups: PopupManager::default(),
            output,
            backend,
            needs_redraw: false,
            timer_armed: false,
            last_frame: None,
            start: Instant::now(),
            frames_rendered: 0,
            screen_on: true,
            display_listeners: std::sync::Arc::new(accord_safwk::subscribers::Subscribers::new("display listeners", accord_display::SUB_BOUNDS)),
            input: InputState::default(),
            cursor: CursorImageStatus::default_named(),
            arrow: crate::render::arrow(),
            unshown: Vec::new(),
            clients_per_uid: std::collections::HashMap::new(),
            system_ui_uids: Vec::new(),
        }
    }

    /// The output's size in logical coordinates (scale is 1).
    pub(crate) fn output_size(&self) -> Size<i32, Logical> {
        self.output.current_mode().map(|m| m.size.to_logical(1)).unwrap_or_default()
    }

    /// Asks for a frame: drawn when the frame timer fires, at most one per
    /// [`FRAME_INTERVAL`].
    pub(crate) fn schedule_redraw(&mut self) {
        self.needs_redraw = true;
        if self.timer_armed {
            return;
        }
        let now = Instant::now();
        let deadline = self.last_frame.map(|t| t + FRAME_INTERVAL).filter(|d| *d > now).unwrap_or(now);
        match self.loop_handle.insert_source(Timer::from_deadline(deadline), |_, _, state| {
            state.timer_armed = false;
            state.redraw();
            TimeoutAction::Drop
        }) {
            Ok(_) => self.timer_armed = true,
            Err(err) => warn!(error = %err.error, "cannot arm the frame timer"),
        }
    }

    /// Turns the screen on or off ([`crate::ScreenPower`]); on again, the
    /// whole output is drawn anew.
    pub(crate) fn set_screen_power(&mut self, on: bool) {
        if on == self.screen_on {
            return;
        }
        let result = match &mut self.backend {
            Backend::Headless(b) => {
                b.set_power(on);
                Ok(())
            }
            Backend::Drm(b) => b.set_power(on),
        };
        match result {
            Ok(()) => {
                self.screen_on = on;
                self.display_listeners.send(&crate::display_manager::display_info(&self.backend.output_info(), on));
                // A page flip queued before is not waited for any more.
                self.flip_lost();
                if on {
                    self.schedule_redraw();
                }
            }
            Err(err) => warn!(%err, on, "screen power not changed"),
        }
    }

    /// Answers the display manager SA.
    pub(crate) fn answer_display_request(&mut self, request: crate::display_manager::DisplayRequest) {
        use crate::display_manager::{display_info, DisplayRequest};
        match request {
            DisplayRequest::Displays(reply) => {
                let _ = reply.send(vec![display_info(&self.backend.output_info(), self.screen_on)]);
            }
            DisplayRequest::Capture(id, reply) => {
                let result = if id != 0 {
                    Err(accord_display::DisplayError::NoSuchDisplay(id))
                } else {
                    // Before the first frame the screen is black too.
                    match self.screen_frame() {
                        Ok(frame) => Ok(frame.unwrap_or_else(|| self.black_frame())),
                        Err(e) => Err(accord_display::DisplayError::Failed(e.to_string())),
                    }
                };
                let _ = reply.send(result);
            }
        }
    }

    /// An all-black frame of the output's size.
    fn black_frame(&self) -> crate::Frame {
        let (w, h) = self.backend.output_info().size;
        crate::Frame { width: w as u32, height: h as u32, pixels: vec![0; (w * h).max(0) as usize] }
    }

    /// A copy of the screen: the last frame drawn, black while the screen
    /// is off; `None` before the first frame.
    pub(crate) fn screen_frame(&mut self) -> Result<Option<crate::Frame>, crate::Error> {
        if !self.screen_on {
            return Ok(Some(self.black_frame()));
        }
        match &mut self.backend {
            Backend::Headless(b) => b.capture(),
            Backend::Drm(b) => b.capture(),
        }
    }

    /// Counts a new connection against its uid's bound
    /// ([`crate::MAX_CLIENTS_PER_UID`], root not bound; the uid from
    /// `SO_PEERCRED`): the uid's count, which the client gives back when
    /// it disconnects, and whether it is the system UI; or `None`:
    /// refused (past the bound, or no credentials).
    pub(crate) fn admit(&mut self, stream: &std::os::unix::net::UnixStream) -> Option<Admitted> {
        let uid = match peer_uid(stream) {
            Ok(uid) => uid,
            Err(e) => {
                warn!(%e, "a client whose credentials cannot be read: refused");
                return None;
            }
        };
        self.clients_per_uid.retain(|_, n| n.load(Ordering::Relaxed) > 0);
        let count = self.clients_per_uid.entry(uid).or_default().clone();
        if count.fetch_add(1, Ordering::Relaxed) >= crate::MAX_CLIENTS_PER_UID && uid != 0 {
            count.fetch_sub(1, Ordering::Relaxed);
            debug!(uid, "a client past its uid's {} refused", crate::MAX_CLIENTS_PER_UID);
            return None;
        }
        Some(Admitted { uid_clients: count, system_ui: uid == 0 || self.system_ui_uids.contains(&uid) })
    }

    /// The backend can take a frame again (its page flip completed).
    pub(crate) fn frame_done(&mut self) {
        if self.needs_redraw {
            self.schedule_redraw();
        }
    }

    fn redraw(&mut self) {
        // Off: no frame, and no frame callbacks (clients stop drawing);
        // the frame is drawn when the screen comes back on.
        if !self.needs_redraw || !self.screen_on {
            return;
        }
        let cursor = Cursor::choose(self.input.has_pointer(), &self.cursor, self.input.pointer, &self.arrow);
        let result = match &mut self.backend {
            Backend::Headless(b) => b.render(&self.space, &self.output, cursor.as_ref()),
            Backend::Drm(b) => b.render(&self.space, &self.output, cursor.as_ref()),
        };
        match result {
            Ok(RenderStatus::Busy) => return,
            Ok(RenderStatus::Rendered { damaged }) => {
                if damaged {
                    self.frames_rendered += 1;
                }
                // A changed DRM frame is on screen at its page flip.
                let flip_queued = damaged && matches!(self.backend, Backend::Drm(_));
                self.frame_feedback(flip_queued);
            }
            Err(err) => warn!(%err, "frame not rendered"),
        }
        self.needs_redraw = false;
        self.last_frame = Some(Instant::now());
        self.send_frame_callbacks();
    }

    fn send_frame_callbacks(&self) {
        let now = self.start.elapsed();
        let output = &self.output;
        for window in self.space.elements() {
            window.send_frame(output, now, Some(Duration::ZERO), |_, _| Some(output.clone()));
        }
        self.send_layer_frames(now);
        // A client's cursor surface is drawn too: it gets its frames.
        if let CursorImageStatus::Surface(surface) = &self.cursor {
            if self.input.has_pointer() {
                smithay::desktop::utils::send_frames_surface_tree(surface, output, now, Some(Duration::ZERO), |_, _| Some(output.clone()));
            }
        }
    }

    /// Housekeeping after each event-loop dispatch: drop dead windows and
    /// popups, send what is queued to clients.
    pub(crate) fn after_dispatch(&mut self) {
        self.space.refresh();
        self.popups.cleanup();
        self.cleanup_layers();
        if let Err(err) = self.display_handle.flush_clients() {
            debug!(%err, "flushing clients");
        }
    }

    /// A commit in a layer surface's tree: the layer surface's
    /// ([`State::layer_commit`]). Returns whether it was one.
    fn layer_commit_of_tree(&mut self, surface: &WlSurface) -> bool {
        let mut root = surface.clone();
        while let Some(parent) = get_parent(&root) {
            root = parent;
        }
        self.layer_commit(&root)
    }

    fn window_for_root(&self, root: &WlSurface) -> Option<Window> {
        self.space.elements().find(|w| w.toplevel().is_some_and(|t| t.wl_surface() == root)).cloned()
    }
}

impl CompositorHandler for State {
    fn compositor_state(&mut self) -> &mut CompositorState {
        &mut self.compositor_state
    }

    fn client_compositor_state<'a>(&self, client: &'a Client) -> &'a CompositorClientState {
        // Every client is inserted by `Compositor` with a `ClientState`.
        &client.get_data::<ClientState>().expect("every client is inserted with ClientState").compositor_state
    }

    fn new_surface(&mut self, surface: &WlSurface) {
        let Some(client) = surface.client() else { return };
        let Some(data) = client.get_data::<ClientState>() else { return };
        if data.surfaces.fetch_add(1, Ordering::Relaxed) >= MAX_SURFACES_PER_CLIENT {
            debug!("a client with {MAX_SURFACES_PER_CLIENT} surfaces made another: disconnected");
            // libwayland's no_memory lives on wl_display, which a handler
            // cannot post on: the error goes on the surface, its message
            // saying why.
            surface.post_error(2u32, format!("more than {MAX_SURFACES_PER_CLIENT} surfaces (out of memory for this client)"));
        }
    }

    fn destroyed(&mut self, surface: &WlSurface) {
        if let Some(client) = surface.client() {
            if let Some(data) = client.get_data::<ClientState>() {
                let _ = data.surfaces.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
        }
    }

    fn commit(&mut self, surface: &WlSurface) {
        on_commit_buffer_handler::<Self>(surface);
        if !is_sync_subsurface(surface) && !self.layer_commit_of_tree(surface) {
            let mut root = surface.clone();
            while let Some(parent) = get_parent(&root) {
                root = parent;
            }
            if let Some(window) = self.window_for_root(&root) {
                window.on_commit();
                if let Some(toplevel) = window.toplevel() {
                    if !toplevel.is_initial_configure_sent() {
                        toplevel.send_configure();
                    }
                }
                // A new window takes the keyboard once it shows something:
                // an empty one would take keys unseen.
                if let Some(i) = self.unshown.iter().position(|w| *w == window) {
                    if !window.bbox().is_empty() {
                        self.unshown.swap_remove(i);
                        self.focus_window(&window);
                    }
                }
            }
        }
        self.popups.commit(surface);
        if let Some(PopupKind::Xdg(popup)) = self.popups.find_popup(surface) {
            if !popup.is_initial_configure_sent() {
                if let Err(err) = popup.send_configure() {
                    debug!(?err, "popup configure not sent");
                }
            }
        }
        self.schedule_redraw();
    }
}

impl BufferHandler for State {
    fn buffer_destroyed(&mut self, _buffer: &WlBuffer) {}
}

impl ShmHandler for State {
    fn shm_state(&self) -> &ShmState {
        &self.shm_state
    }
}

/// How deep popups may nest (a popup whose parent is a popup whose parent
/// is ...); a client that goes deeper gets a protocol error.
pub const MAX_POPUP_DEPTH: usize = 16;

/// How many popups deep `surface` is (1: its parent is not a popup),
/// counted up to one past [`MAX_POPUP_DEPTH`].
fn popup_depth(surface: &PopupSurface) -> usize {
    let mut depth = 1;
    let mut parent = surface.get_parent_surface();
    while let Some(p) = parent {
        if depth > MAX_POPUP_DEPTH {
            break;
        }
        parent = match smithay::wayland::compositor::with_states(&p, |states| {
            states.data_map.get::<smithay::wayland::shell::xdg::XdgPopupSurfaceData>().and_then(|d| d.lock().ok().map(|a| a.parent.clone()))
        }) {
            // The parent is a popup: one level more.
            Some(grandparent) => {
                depth += 1;
                grandparent
            }
            None => None,
        };
    }
    depth
}

impl XdgShellHandler for State {
    fn xdg_shell_state(&mut self) -> &mut XdgShellState {
        &mut self.xdg_shell_state
    }

    fn new_toplevel(&mut self, surface: ToplevelSurface) {
        let area = self.window_area();
        surface.with_pending_state(|state| {
            state.size = Some(area.size);
            state.states.set(xdg_toplevel::State::Maximized);
        });
        let window = Window::new_wayland_window(surface);
        self.space.map_element(window.clone(), area.loc, false);
        // It takes the keyboard when its first buffer comes (commit).
        self.unshown.push(window);
    }

    fn toplevel_destroyed(&mut self, surface: ToplevelSurface) {
        if let Some(window) = self.window_for_root(surface.wl_surface()) {
            self.space.unmap_elem(&window);
            self.unshown.retain(|w| *w != window);
        }
        self.focus_top();
        self.schedule_redraw();
    }

    fn new_popup(&mut self, surface: PopupSurface, positioner: PositionerState) {
        // A chain of popups, each the parent of the next, costs more per
        // popup the deeper it goes (tracking, drawing): menus nest a few
        // deep, so past MAX_POPUP_DEPTH the client is cut off.
        let depth = popup_depth(&surface);
        if depth > MAX_POPUP_DEPTH {
            debug!(depth, "popup nested too deep: client disconnected");
            surface.xdg_popup().post_error(
                smithay::reexports::wayland_protocols::xdg::shell::server::xdg_popup::Error::InvalidGrab,
                format!("popups nest at most {MAX_POPUP_DEPTH} deep"),
            );
            return;
        }
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
        });
        if let Err(err) = self.popups.track_popup(PopupKind::Xdg(surface)) {
            debug!(?err, "popup not tracked");
        }
    }

    fn popup_destroyed(&mut self, _surface: PopupSurface) {
        self.schedule_redraw();
    }

    fn reposition_request(&mut self, surface: PopupSurface, positioner: PositionerState, token: u32) {
        surface.with_pending_state(|state| {
            state.geometry = positioner.get_geometry();
            state.positioner = positioner;
        });
        surface.send_repositioned(token);
    }

    fn grab(&mut self, _surface: PopupSurface, _seat: WlSeat, _serial: Serial) {
        // Not carried out yet: the popup shows, but input is not confined
        // to it and it is not dismissed by a click elsewhere.
        debug!("popup grab requested: not carried out (popups are not grabbed yet)");
    }

    fn maximize_request(&mut self, surface: ToplevelSurface) {
        // Already maximised; the protocol wants a configure in reply.
        if surface.is_initial_configure_sent() {
            surface.send_configure();
        }
    }

    fn unmaximize_request(&mut self, surface: ToplevelSurface) {
        // Windows stay maximised; answer with the unchanged state.
        if surface.is_initial_configure_sent() {
            surface.send_configure();
        }
    }
}

impl OutputHandler for State {}

impl SeatHandler for State {
    type KeyboardFocus = WlSurface;
    type PointerFocus = WlSurface;
    type TouchFocus = WlSurface;

    fn seat_state(&mut self) -> &mut SeatState<Self> {
        &mut self.seat_state
    }

    fn focus_changed(&mut self, seat: &Seat<Self>, focused: Option<&WlSurface>) {
        self.selection_focus(seat, focused);
    }

    fn cursor_image(&mut self, _seat: &Seat<Self>, image: CursorImageStatus) {
        self.cursor = image;
        self.schedule_redraw();
    }
}

delegate_compositor!(State);
// wl_shm as smithay does it (`delegate_shm!`), with the pools and buffers
// counted per client.
delegate_global_dispatch!(State: [WlShm: ()] => ShmState);

impl Dispatch<WlShm, ()> for State {
    fn request(state: &mut Self, client: &Client, shm: &WlShm, request: wl_shm::Request, data: &(), dh: &DisplayHandle, init: &mut DataInit<'_, Self>) {
        if matches!(request, wl_shm::Request::CreatePool { .. }) && !take_shm_slot(client, shm) {
            return;
        }
        <ShmState as Dispatch<WlShm, (), State>>::request(state, client, shm, request, data, dh, init);
    }
}

impl Dispatch<WlShmPool, ShmPoolUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        pool: &WlShmPool,
        request: wl_shm_pool::Request,
        data: &ShmPoolUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if matches!(request, wl_shm_pool::Request::CreateBuffer { .. }) && !take_shm_slot(client, pool) {
            return;
        }
        <ShmState as Dispatch<WlShmPool, ShmPoolUserData, State>>::request(state, client, pool, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, pool: &WlShmPool, data: &ShmPoolUserData) {
        release_shm_slot(state, client.clone());
        <ShmState as Dispatch<WlShmPool, ShmPoolUserData, State>>::destroyed(state, client, pool, data);
    }
}

impl Dispatch<WlBuffer, ShmBufferUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        buffer: &WlBuffer,
        request: wl_buffer::Request,
        data: &ShmBufferUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        <ShmState as Dispatch<WlBuffer, ShmBufferUserData, State>>::request(state, client, buffer, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, buffer: &WlBuffer, data: &ShmBufferUserData) {
        release_shm_slot(state, client.clone());
        <ShmState as Dispatch<WlBuffer, ShmBufferUserData, State>>::destroyed(state, client, buffer, data);
    }
}
// xdg-shell as smithay does it (`delegate_xdg_shell!`), with the
// positioner's numbers bounded first: smithay's placement arithmetic
// overflows on values near i32's ends.
delegate_global_dispatch!(State: [XdgWmBase: ()] => XdgShellState);
delegate_dispatch!(State: [XdgWmBase: XdgWmBaseUserData] => XdgShellState);
delegate_dispatch!(State: [XdgPopup: XdgShellSurfaceUserData] => XdgShellState);
delegate_dispatch!(State: [XdgSurface: XdgSurfaceUserData] => XdgShellState);
delegate_dispatch!(State: [XdgToplevel: XdgShellSurfaceUserData] => XdgShellState);

/// The largest absolute value an xdg_positioner takes for a size, an
/// anchor rectangle or an offset, in pixels (outputs are at most 16,384
/// wide); past it the client gets a protocol error.
pub const MAX_POSITIONER_VALUE: i32 = 1 << 20;

impl Dispatch<XdgPositioner, XdgPositionerUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        positioner: &XdgPositioner,
        request: xdg_positioner::Request,
        data: &XdgPositionerUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        let values: &[i32] = match &request {
            xdg_positioner::Request::SetSize { width, height } => &[*width, *height],
            xdg_positioner::Request::SetAnchorRect { x, y, width, height } => &[*x, *y, *width, *height],
            xdg_positioner::Request::SetOffset { x, y } => &[*x, *y],
            xdg_positioner::Request::SetParentSize { parent_width, parent_height } => &[*parent_width, *parent_height],
            _ => &[],
        };
        if values.iter().any(|v| v.unsigned_abs() > MAX_POSITIONER_VALUE as u32) {
            positioner.post_error(xdg_positioner::Error::InvalidInput, format!("positioner values are at most {MAX_POSITIONER_VALUE} in magnitude"));
            return;
        }
        <XdgShellState as Dispatch<XdgPositioner, XdgPositionerUserData, State>>::request(state, client, positioner, request, data, dh, init);
    }
}
delegate_output!(State);
delegate_seat!(State);
