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
//! layer surface that asks for the keyboard (`exclusive`) gets it while
//! it is mapped; an `on_demand` one when it is clicked or touched.

use smithay::{
    delegate_layer_shell,
    desktop::{layer_map_for_output, LayerSurface, PopupKind, WindowSurfaceType},
    reexports::wayland_server::protocol::{wl_output::WlOutput, wl_surface::WlSurface},
    utils::{Logical, Point, Rectangle, SERIAL_COUNTER},
    wayland::{
        compositor::with_states,
        shell::{
            wlr_layer::{KeyboardInteractivity, Layer, LayerSurface as WlrLayerSurface, LayerSurfaceData, WlrLayerShellHandler, WlrLayerShellState},
            xdg::PopupSurface,
        },
    },
};
use tracing::{debug, info};

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
        self.relayout_windows();
    }

    fn new_popup(&mut self, _parent: WlrLayerSurface, popup: PopupSurface) {
        if let Err(err) = self.popups.track_popup(PopupKind::Xdg(popup)) {
            debug!(?err, "a layer surface's popup not tracked");
        }
    }

    fn layer_destroyed(&mut self, surface: WlrLayerSurface) {
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
            let had_keyboard = self.seat.get_keyboard().and_then(|k| k.current_focus()).is_some_and(|f| &f == layer.wl_surface());
            self.relayout_windows();
            if had_keyboard {
                self.focus_top();
            }
        }
        self.schedule_redraw();
    }
}

delegate_layer_shell!(State);

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
        let zone = layer_map_for_output(&self.output).non_exclusive_zone();
        if zone.size.w <= 0 || zone.size.h <= 0 {
            // Bars that leave nothing: windows get the whole output.
            return Rectangle::from_size(self.output_size());
        }
        zone
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
        let initial_sent = with_states(surface, |states| {
            states.data_map.get::<LayerSurfaceData>().and_then(|d| d.lock().ok().map(|a| a.initial_configure_sent)).unwrap_or(true)
        });
        if !initial_sent {
            layer.layer_surface().send_configure();
        }
        if zone_before != zone_after {
            self.relayout_windows();
        }
        // A lock screen or a dialog of the system UI takes the keyboard.
        let exclusive = layer.cached_state().keyboard_interactivity == KeyboardInteractivity::Exclusive;
        if exclusive && !layer.bbox().is_empty() {
            if let Some(keyboard) = self.seat.get_keyboard() {
                if keyboard.current_focus().as_ref() != Some(layer.wl_surface()) {
                    keyboard.set_focus(self, Some(layer.wl_surface().clone()), SERIAL_COUNTER.next_serial());
                }
            }
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
            Some(Under::Layer(layer)) if layer.can_receive_keyboard_focus() => {
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

    /// Drops layer surfaces whose client is gone.
    pub(crate) fn cleanup_layers(&self) {
        layer_map_for_output(&self.output).cleanup();
    }
}
