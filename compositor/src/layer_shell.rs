//! wlr-layer-shell: the system UI's surfaces (status bar, launcher, boot
//! animation), OpenHarmony's system windows.
//!
//! Only the system UI may make them: the `zwlr_layer_shell_v1` global is
//! shown to root and to the uids given with
//! [`crate::Compositor::allow_system_ui`] (the uid from `SO_PEERCRED`),
//! to no one else; an app cannot cover the screen with an overlay or
//! reserve a bar. Layer surfaces are stacked as the protocol says
//! (background and bottom under the app windows, top and overlay over
//! them); an exclusive zone (a status bar's height) is taken from the
//! area the app windows are maximised to ([`State::window_area`]). A
//! top or overlay layer surface that asks for the keyboard (`exclusive`:
//! a lock screen) holds it while it is mapped: no window takes it, not a
//! new one and not a clicked one; an `on_demand` one gets it when it is
//! clicked or touched. Sizes, margins and exclusive zones are bounded
//! ([`MAX_LAYER_VALUE`]): past it a protocol error (smithay's arithmetic
//! on them overflows near the integers' ends).

use smithay::{
    desktop::{layer_map_for_output, LayerSurface, PopupKind, WindowSurfaceType},
    reexports::{
        wayland_protocols_wlr::layer_shell::v1::server::{
            zwlr_layer_shell_v1::ZwlrLayerShellV1,
            zwlr_layer_surface_v1::{self, ZwlrLayerSurfaceV1},
        },
        wayland_server::{
            delegate_dispatch, delegate_global_dispatch,
            protocol::{wl_output::WlOutput, wl_surface::WlSurface},
            Client, DataInit, Dispatch, DisplayHandle, Resource,
        },
    },
    utils::{Logical, Point, Rectangle, SERIAL_COUNTER},
    wayland::{
        compositor::with_states,
        shell::{
            wlr_layer::{
                KeyboardInteractivity, Layer, LayerSurface as WlrLayerSurface, LayerSurfaceData, WlrLayerShellGlobalData, WlrLayerShellHandler,
                WlrLayerShellState, WlrLayerSurfaceUserData,
            },
            xdg::PopupSurface,
        },
    },
};
use tracing::{debug, info, warn};

use crate::state::State;

impl WlrLayerShellHandler for State {
    fn shell_state(&mut self) -> &mut WlrLayerShellState {
        &mut self.layer_shell_state
    }

    fn new_layer_surface(&mut self, surface: WlrLayerSurface, _output: Option<WlOutput>, layer: Layer, namespace: String) {
        // One output: whichever the client names, the surface goes there.
        info!(%namespace, ?layer, "layer surface added");
        let surface = LayerSurface::new(surface, namespace);
        let mapped = layer_map_for_output(&self.output).map_layer(&surface);
        if let Err(err) = mapped {
            debug!(%err, "layer surface not mapped");
        }
        self.clamp_layer_sizes();
        self.relayout_windows();
    }

    fn new_popup(&mut self, _parent: WlrLayerSurface, popup: PopupSurface) {
        if let Err(err) = self.popups.track_popup(PopupKind::Xdg(popup)) {
            debug!(?err, "a layer surface's popup not tracked");
        }
    }

    fn layer_destroyed(&mut self, surface: WlrLayerSurface) {
        // (A layer whose wl_surface went first is already gone from the
        // map: see cleanup_layers.)
        let gone = {
            let mut map = layer_map_for_output(&self.output);
            let found = map.layers().find(|l| l.layer_surface() == &surface).cloned();
            if let Some(layer) = &found {
                map.unmap_layer(layer);
            }
            found
        };
        if let Some(layer) = gone {
            info!(namespace = layer.namespace(), "layer surface gone");
            self.clamp_layer_sizes();
            let had_keyboard = self.seat.get_keyboard().and_then(|k| k.current_focus()).is_some_and(|f| &f == layer.wl_surface());
            self.relayout_windows();
            if had_keyboard {
                self.focus_top();
            }
        }
        self.schedule_redraw();
    }
}

// wlr-layer-shell as smithay does it (`delegate_layer_shell!`), with the
// layer surfaces' numbers bounded first.
delegate_global_dispatch!(State: [ZwlrLayerShellV1: WlrLayerShellGlobalData] => WlrLayerShellState);
delegate_dispatch!(State: [ZwlrLayerShellV1: ()] => WlrLayerShellState);

/// The largest size, margin or exclusive zone a layer surface may ask
/// for, in pixels (outputs are at most 16,384 wide); past it the client
/// gets a protocol error.
pub const MAX_LAYER_VALUE: u32 = 1 << 16;

impl Dispatch<ZwlrLayerSurfaceV1, WlrLayerSurfaceUserData> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        surface: &ZwlrLayerSurfaceV1,
        request: zwlr_layer_surface_v1::Request,
        data: &WlrLayerSurfaceUserData,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        let unsigned: [u32; 4];
        let values: &[u32] = match &request {
            zwlr_layer_surface_v1::Request::SetSize { width, height } => {
                unsigned = [*width, *height, 0, 0];
                &unsigned
            }
            zwlr_layer_surface_v1::Request::SetExclusiveZone { zone } => {
                unsigned = [zone.unsigned_abs(), 0, 0, 0];
                &unsigned
            }
            zwlr_layer_surface_v1::Request::SetMargin { top, right, bottom, left } => {
                unsigned = [top.unsigned_abs(), right.unsigned_abs(), bottom.unsigned_abs(), left.unsigned_abs()];
                &unsigned
            }
            _ => &[],
        };
        if values.iter().any(|v| *v > MAX_LAYER_VALUE) {
            surface.post_error(zwlr_layer_surface_v1::Error::InvalidSize, format!("layer surface sizes, margins and zones are at most {MAX_LAYER_VALUE}"));
            return;
        }
        <WlrLayerShellState as Dispatch<ZwlrLayerSurfaceV1, WlrLayerSurfaceUserData, State>>::request(state, client, surface, request, data, dh, init);
    }

    fn destroyed(
        state: &mut Self,
        client: smithay::reexports::wayland_server::backend::ClientId,
        surface: &ZwlrLayerSurfaceV1,
        data: &WlrLayerSurfaceUserData,
    ) {
        <WlrLayerShellState as Dispatch<ZwlrLayerSurfaceV1, WlrLayerSurfaceUserData, State>>::destroyed(state, client, surface, data);
    }
}

/// Whether `surface`'s layer surface has had its first configure.
fn initial_configure_sent(surface: &WlSurface) -> bool {
    with_states(surface, |states| states.data_map.get::<LayerSurfaceData>().and_then(|d| d.lock().ok().map(|a| a.initial_configure_sent)).unwrap_or(true))
}

/// What is under a point of the output, top first.
#[derive(Debug, Clone)]
pub(crate) enum Under {
    /// A layer surface (the system UI).
    Layer(LayerSurface),
    /// An app window.
    Window(smithay::desktop::Window),
}

impl State {
    /// The area app windows are maximised to: the output less the layer
    /// surfaces' exclusive zones.
    pub(crate) fn window_area(&self) -> Rectangle<i32, Logical> {
        let output = Rectangle::from_size(self.output_size());
        let zone = layer_map_for_output(&self.output).non_exclusive_zone();
        // Bars that leave nothing (or zones reaching outside the output):
        // windows get the whole output, or what of the zone is on it.
        zone.intersection(output).filter(|z| z.size.w > 0 && z.size.h > 0).unwrap_or(output)
    }

    /// Layer surfaces the arrangement sized past the output (exclusive
    /// zones that add up to more than it leave a negative size, which
    /// goes out as a huge unsigned one) get sizes within the output, and
    /// are told again.
    pub(crate) fn clamp_layer_sizes(&self) {
        let out = self.output_size();
        let map = layer_map_for_output(&self.output);
        for layer in map.layers() {
            let surface = layer.layer_surface();
            let clamped = surface.with_pending_state(|s| match s.size {
                Some(size) if size.w < 0 || size.h < 0 || size.w > out.w || size.h > out.h => {
                    s.size = Some((size.w.clamp(0, out.w), size.h.clamp(0, out.h)).into());
                    true
                }
                _ => false,
            });
            if clamped {
                warn!(namespace = layer.namespace(), "a layer surface sized past the output (exclusive zones add up to more than it): clamped");
                if initial_configure_sent(layer.wl_surface()) {
                    surface.send_pending_configure();
                }
            }
        }
    }

    /// The mapped top or overlay layer surface that holds the keyboard
    /// (`exclusive` interactivity: a lock screen), the topmost if several.
    pub(crate) fn exclusive_layer(&self) -> Option<LayerSurface> {
        let map = layer_map_for_output(&self.output);
        let found = map.layers().rev().find(|l| {
            matches!(l.layer(), Layer::Top | Layer::Overlay)
                && l.cached_state().keyboard_interactivity == KeyboardInteractivity::Exclusive
                && !l.bbox().is_empty()
        });
        found.cloned()
    }

    /// Puts every window in [`State::window_area`] (after a bar came or
    /// went), keeping their stacking order; each is told its new size.
    pub(crate) fn relayout_windows(&mut self) {
        let area = self.window_area();
        // Bottom to top: mapping raises, so the order comes out the same.
        let windows: Vec<_> = self.space.elements().cloned().collect();
        for window in windows {
            if let Some(toplevel) = window.toplevel() {
                toplevel.with_pending_state(|s| s.size = Some(area.size));
                if toplevel.is_initial_configure_sent() {
                    toplevel.send_pending_configure();
                }
            }
            self.space.map_element(window, area.loc, false);
        }
        self.schedule_redraw();
    }

    /// A commit on `surface`: if it is a layer surface, its first commit
    /// is answered with a configure, and the layers are arranged again
    /// (its size, anchors or exclusive zone may have changed). Returns
    /// whether it was one.
    pub(crate) fn layer_commit(&mut self, surface: &WlSurface) -> bool {
        let (layer, zone_before, zone_after) = {
            let mut map = layer_map_for_output(&self.output);
            let Some(layer) = map.layer_for_surface(surface, WindowSurfaceType::TOPLEVEL).cloned() else { return false };
            let before = map.non_exclusive_zone();
            map.arrange();
            (layer, before, map.non_exclusive_zone())
        };
        self.clamp_layer_sizes();
        if !initial_configure_sent(surface) {
            layer.layer_surface().send_configure();
        }
        if zone_before != zone_after {
            self.relayout_windows();
        }
        // A lock screen or a dialog of the system UI takes the keyboard;
        // one that stops asking for it (or is unmapped) gives it back.
        let holder = self.exclusive_layer();
        let focus = self.seat.get_keyboard().and_then(|k| k.current_focus());
        match holder {
            Some(l) if focus.as_ref() != Some(l.wl_surface()) => self.focus_top(),
            None if focus.as_ref() == Some(layer.wl_surface()) && layer.cached_state().keyboard_interactivity != KeyboardInteractivity::OnDemand => {
                self.focus_top()
            }
            _ => {}
        }
        true
    }

    /// The topmost thing under `pos`: overlay and top layers, then the
    /// windows, then bottom and background layers.
    pub(crate) fn under(&self, pos: Point<f64, Logical>) -> Option<Under> {
        let map = layer_map_for_output(&self.output);
        for layer in [Layer::Overlay, Layer::Top] {
            if let Some(l) = map.layer_under(layer, pos) {
                return Some(Under::Layer(l.clone()));
            }
        }
        if let Some((w, _)) = self.space.element_under(pos) {
            return Some(Under::Window(w.clone()));
        }
        for layer in [Layer::Bottom, Layer::Background] {
            if let Some(l) = map.layer_under(layer, pos) {
                return Some(Under::Layer(l.clone()));
            }
        }
        None
    }

    /// The surface under `pos` (a window's, a layer surface's, or one of
    /// their popups or subsurfaces) and its origin, in output coordinates.
    pub(crate) fn surface_under(&self, pos: Point<f64, Logical>) -> Option<(WlSurface, Point<f64, Logical>)> {
        match self.under(pos)? {
            Under::Layer(layer) => {
                let loc = layer_map_for_output(&self.output).layer_geometry(&layer)?.loc;
                layer.surface_under(pos - loc.to_f64(), WindowSurfaceType::ALL).map(|(s, p)| (s, (p + loc).to_f64()))
            }
            Under::Window(window) => {
                let loc = self.space.element_location(&window)?;
                window.surface_under(pos - loc.to_f64(), WindowSurfaceType::ALL).map(|(s, p)| (s, (p + loc).to_f64()))
            }
        }
    }

    /// A click or touch at `pos`: a window under it is raised and takes
    /// the keyboard; a layer surface takes it if it asked to
    /// (`on_demand`); a layer surface that did not leaves focus alone.
    pub(crate) fn focus_at(&mut self, pos: Point<f64, Logical>) {
        match self.under(pos) {
            Some(Under::Window(w)) => self.focus_window(&w),
            Some(Under::Layer(layer)) if layer.can_receive_keyboard_focus() && self.exclusive_layer().is_none_or(|l| l == layer) => {
                if let Some(keyboard) = self.seat.get_keyboard() {
                    keyboard.set_focus(self, Some(layer.wl_surface().clone()), SERIAL_COUNTER.next_serial());
                }
            }
            _ => {}
        }
    }

    /// Frame callbacks for every layer surface (after a frame).
    pub(crate) fn send_layer_frames(&self, now: std::time::Duration) {
        let output = &self.output;
        for layer in layer_map_for_output(output).layers() {
            layer.send_frame(output, now, Some(std::time::Duration::ZERO), |_, _| Some(output.clone()));
        }
    }

    /// Drops layer surfaces that are gone (their client, or their
    /// wl_surface before the layer object): the app area and the keyboard
    /// are given back as when one is destroyed.
    pub(crate) fn cleanup_layers(&mut self) {
        let (before, after) = {
            let mut map = layer_map_for_output(&self.output);
            let before = map.len();
            map.cleanup();
            (before, map.len())
        };
        if before != after {
            self.clamp_layer_sizes();
            self.relayout_windows();
            let focus = self.seat.get_keyboard().and_then(|k| k.current_focus());
            if !focus.is_some_and(|f| f.is_alive()) {
                self.focus_top();
            }
        }
    }
}
