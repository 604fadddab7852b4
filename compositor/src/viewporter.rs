//! wp_viewporter: a surface shown at a size other than its buffer's
//! (cropped with a source rectangle, scaled to a destination size).
//!
//! smithay records the viewport with the surface's state and its
//! renderer helpers draw the surface at the viewport's size, cropped and
//! scaled (`on_commit_buffer_handler` computes the surface's view from
//! it): nothing more to draw here. A destination is bounded
//! ([`MAX_VIEWPORT_SIZE`]): a window's position plus a size near `i32`'s
//! end would overflow smithay's arithmetic.

use smithay::{
    reexports::{
        wayland_protocols::wp::viewporter::server::{
            wp_viewport::{self, WpViewport},
            wp_viewporter::WpViewporter,
        },
        wayland_server::{backend::ClientId, delegate_dispatch, delegate_global_dispatch, Client, DataInit, Dispatch, DisplayHandle, Resource},
    },
    wayland::viewporter::{ViewportState, ViewporterState},
};

use crate::state::State;

/// The largest destination width or height a viewport may ask for, in
/// pixels (outputs are at most 16,384 wide); past it the client gets a
/// `bad_value` protocol error.
pub const MAX_VIEWPORT_SIZE: i32 = 1 << 16;

// wp_viewporter as smithay does it (`delegate_viewporter!`), with the
// destination bounded first.
delegate_global_dispatch!(State: [WpViewporter: ()] => ViewporterState);
delegate_dispatch!(State: [WpViewporter: ()] => ViewporterState);

impl Dispatch<WpViewport, ViewportState> for State {
    fn request(
        state: &mut Self,
        client: &Client,
        viewport: &WpViewport,
        request: wp_viewport::Request,
        data: &ViewportState,
        dh: &DisplayHandle,
        init: &mut DataInit<'_, Self>,
    ) {
        if let wp_viewport::Request::SetDestination { width, height } = &request {
            if *width > MAX_VIEWPORT_SIZE || *height > MAX_VIEWPORT_SIZE {
                viewport.post_error(wp_viewport::Error::BadValue, format!("viewport destinations are at most {MAX_VIEWPORT_SIZE} pixels wide and high"));
                return;
            }
        }
        <ViewportState as Dispatch<WpViewport, ViewportState, State>>::request(state, client, viewport, request, data, dh, init);
    }

    fn destroyed(state: &mut Self, client: ClientId, viewport: &WpViewport, data: &ViewportState) {
        <ViewportState as Dispatch<WpViewport, ViewportState, State>>::destroyed(state, client, viewport, data);
    }
}
