//! Rendering shared by the backends: the space's windows (and their popups
//! and subsurfaces) over the background, damage-tracked.

use smithay::{
    backend::renderer::{
        damage::OutputDamageTracker,
        element::surface::WaylandSurfaceRenderElement,
        pixman::{PixmanRenderer, PixmanTarget},
        Color32F,
    },
    desktop::{space::render_output, Space, Window},
    output::Output,
};

use crate::{Error, BACKGROUND};

/// [`BACKGROUND`] as the renderer's colour type.
pub fn background_color() -> Color32F {
    let channel = |shift: u32| ((BACKGROUND >> shift) & 0xff) as f32 / 255.0;
    Color32F::new(channel(16), channel(8), channel(0), 1.0)
}

/// Draws `space` as seen on `output` into `framebuffer`, whose content is
/// `age` frames old (0: unknown, everything is drawn). Only the damaged
/// regions are drawn. Returns whether anything was drawn.
pub(crate) fn render_space(
    renderer: &mut PixmanRenderer,
    framebuffer: &mut PixmanTarget<'_>,
    age: usize,
    space: &Space<Window>,
    output: &Output,
    tracker: &mut OutputDamageTracker,
) -> Result<bool, Error> {
    let no_custom: &[WaylandSurfaceRenderElement<PixmanRenderer>] = &[];
    let result = render_output(output, renderer, framebuffer, 1.0, age, [space], no_custom, tracker, background_color())
        .map_err(|err| Error::Render(format!("{err:?}")))?;
    Ok(result.damage.is_some())
}
