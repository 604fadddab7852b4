//! Rendering shared by the backends: the space's windows (and their popups
//! and subsurfaces) over the background, the cursor over them,
//! damage-tracked.

use smithay::{
    backend::{
        allocator::Fourcc,
        renderer::{
            damage::OutputDamageTracker,
            element::{
                memory::{MemoryRenderBuffer, MemoryRenderBufferRenderElement},
                surface::{render_elements_from_surface_tree, WaylandSurfaceRenderElement},
                Kind,
            },
            pixman::{PixmanRenderer, PixmanTarget},
            Color32F, ExportMem,
        },
    },
    desktop::{space::render_output, Space, Window},
    input::pointer::{CursorImageStatus, CursorImageSurfaceData},
    output::Output,
    reexports::wayland_server::{protocol::wl_surface::WlSurface, Resource},
    utils::{Logical, Point, Rectangle, Transform},
};

use crate::{Error, Frame, BACKGROUND};

smithay::render_elements! {
    /// What is drawn over the windows: the cursor.
    pub(crate) OverlayElement<=PixmanRenderer>;
    Surface=WaylandSurfaceRenderElement<PixmanRenderer>,
    Memory=MemoryRenderBufferRenderElement<PixmanRenderer>,
}

/// [`BACKGROUND`] as the renderer's colour type.
pub fn background_color() -> Color32F {
    let channel = |shift: u32| ((BACKGROUND >> shift) & 0xff) as f32 / 255.0;
    Color32F::new(channel(16), channel(8), channel(0), 1.0)
}

/// The cursor to draw, if any.
#[derive(Debug, Clone)]
pub(crate) enum Cursor {
    /// The compositor's arrow, its tip at the point.
    Arrow(Point<i32, Logical>, MemoryRenderBuffer),
    /// A client's cursor surface, its hotspot at the point.
    Surface(Point<i32, Logical>, WlSurface),
}

impl Cursor {
    /// What the seat's state asks for: nothing without a pointer device or
    /// when the client hides the cursor.
    pub(crate) fn choose(has_pointer: bool, status: &CursorImageStatus, at: Point<f64, Logical>, arrow: &MemoryRenderBuffer) -> Option<Cursor> {
        if !has_pointer {
            return None;
        }
        let at = at.to_i32_round();
        match status {
            CursorImageStatus::Hidden => None,
            CursorImageStatus::Named(_) => Some(Cursor::Arrow(at, arrow.clone())),
            CursorImageStatus::Surface(s) if s.is_alive() => Some(Cursor::Surface(at, s.clone())),
            CursorImageStatus::Surface(_) => Some(Cursor::Arrow(at, arrow.clone())),
        }
    }
}

/// The compositor's cursor, row by row: `B` black (the outline), `W`
/// white, `.` transparent; the tip is the top-left pixel.
const ARROW: [&str; 19] = [
    "B...........",
    "BB..........",
    "BWB.........",
    "BWWB........",
    "BWWWB.......",
    "BWWWWB......",
    "BWWWWWB.....",
    "BWWWWWWB....",
    "BWWWWWWWB...",
    "BWWWWWWWWB..",
    "BWWWWWWWWWB.",
    "BWWWWWWBBBBB",
    "BWWWBWWB....",
    "BWWBBWWB....",
    "BWB..BWWB...",
    "BB...BWWB...",
    "B.....BWWB..",
    "......BWWB..",
    ".......BB...",
];

/// The arrow's size in pixels.
pub const ARROW_SIZE: (i32, i32) = (12, 19);

/// The compositor's cursor ([`ARROW`]) as ARGB8888 (premultiplied).
pub(crate) fn arrow() -> MemoryRenderBuffer {
    let (w, h) = ARROW_SIZE;
    let mut pixels = Vec::with_capacity((w * h * 4) as usize);
    for row in ARROW {
        for c in row.bytes() {
            let v: u32 = match c {
                b'B' => 0xff00_0000,
                b'W' => 0xffff_ffff,
                _ => 0,
            };
            pixels.extend_from_slice(&v.to_le_bytes());
        }
    }
    MemoryRenderBuffer::from_slice(&pixels, Fourcc::Argb8888, (w, h), 1, Transform::Normal, None)
}

/// Reads `target` (`width` x `height` pixels) back into a [`Frame`].
pub(crate) fn read_back(renderer: &mut PixmanRenderer, target: &PixmanTarget<'_>, width: i32, height: i32) -> Result<Frame, Error> {
    let mapping = renderer.copy_framebuffer(target, Rectangle::from_size((width, height).into()), Fourcc::Xrgb8888)?;
    let bytes = renderer.map_texture(&mapping)?;
    let (w, h) = (width as usize, height as usize);
    let stride = bytes.len() / h.max(1);
    if stride < w * 4 {
        return Err(Error::Render(format!("read back {} bytes for a {width}x{height} frame", bytes.len())));
    }
    let mut pixels = Vec::with_capacity(w * h);
    for row in bytes.chunks_exact(stride).take(h) {
        pixels.extend(row[..w * 4].chunks_exact(4).map(|p| u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & 0x00ff_ffff));
    }
    Ok(Frame { width: width as u32, height: height as u32, pixels })
}

/// Draws `space` as seen on `output`, and `cursor` over it, into
/// `framebuffer`, whose content is `age` frames old (0: unknown,
/// everything is drawn). Only the damaged regions are drawn. Returns
/// whether anything was drawn.
pub(crate) fn render_space(
    renderer: &mut PixmanRenderer,
    framebuffer: &mut PixmanTarget<'_>,
    age: usize,
    space: &Space<Window>,
    output: &Output,
    cursor: Option<&Cursor>,
    tracker: &mut OutputDamageTracker,
) -> Result<bool, Error> {
    let mut overlay: Vec<OverlayElement> = Vec::new();
    match cursor {
        Some(Cursor::Arrow(at, buffer)) => {
            let e = MemoryRenderBufferRenderElement::from_buffer(renderer, at.to_f64().to_physical(1.0), buffer, None, None, None, Kind::Cursor)
                .map_err(|err| Error::Render(format!("cursor: {err:?}")))?;
            overlay.push(OverlayElement::Memory(e));
        }
        Some(Cursor::Surface(at, surface)) => {
            let hotspot = smithay::wayland::compositor::with_states(surface, |states| {
                states.data_map.get::<CursorImageSurfaceData>().and_then(|d| d.lock().ok().map(|a| a.hotspot)).unwrap_or_default()
            });
            let loc = (*at - hotspot).to_physical(1);
            overlay.extend(
                render_elements_from_surface_tree::<_, WaylandSurfaceRenderElement<PixmanRenderer>>(renderer, surface, loc, 1.0, 1.0, Kind::Cursor)
                    .into_iter()
                    .map(OverlayElement::Surface),
            );
        }
        None => {}
    }
    let result = render_output(output, renderer, framebuffer, 1.0, age, [space], &overlay, tracker, background_color())
        .map_err(|err| Error::Render(format!("{err:?}")))?;
    Ok(result.damage.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arrow_is_as_big_as_it_says() {
        assert!(ARROW.iter().all(|r| r.len() == ARROW_SIZE.0 as usize));
        assert_eq!(ARROW.len(), ARROW_SIZE.1 as usize);
    }
}
