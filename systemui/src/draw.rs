//! Drawing into a `wl_shm` ARGB8888 buffer: filled rectangles and text
//! (glyphs from a TrueType font through `ab_glyph`, blended by coverage).

use ab_glyph::{Font, FontVec, PxScale, ScaleFont};

/// A colour as `0xRRGGBB` (always opaque).
pub type Rgb = u32;

/// An ARGB8888 buffer as `wl_shm` lays it out (little-endian: B, G, R, A
/// in memory), `width` x `height` pixels, rows `width * 4` bytes apart.
#[derive(Debug)]
pub struct Canvas<'a> {
    pixels: &'a mut [u8],
    width: i32,
    height: i32,
}

impl<'a> Canvas<'a> {
    /// A canvas over `pixels`; `None` when the slice is smaller than
    /// `width * height * 4` bytes or a side is negative.
    pub fn new(pixels: &'a mut [u8], width: i32, height: i32) -> Option<Canvas<'a>> {
        let needed = usize::try_from(width).ok()?.checked_mul(usize::try_from(height).ok()?)?.checked_mul(4)?;
        (pixels.len() >= needed).then_some(Canvas { pixels, width, height })
    }

    /// The colour at (`x`, `y`), `None` outside.
    /// The canvas's width in pixels.
    pub fn width(&self) -> i32 {
        self.width
    }

    /// The canvas's height in pixels.
    pub fn height(&self) -> i32 {
        self.height
    }

    #[cfg(test)]
    pub fn get(&self, x: i32, y: i32) -> Option<Rgb> {
        let i = self.index(x, y)?;
        Some(u32::from_le_bytes([self.pixels[i], self.pixels[i + 1], self.pixels[i + 2], self.pixels[i + 3]]) & 0xff_ffff)
    }

    fn index(&self, x: i32, y: i32) -> Option<usize> {
        if x < 0 || y < 0 || x >= self.width || y >= self.height {
            return None;
        }
        Some((y as usize * self.width as usize + x as usize) * 4)
    }

    /// Fills the rectangle at (`x`, `y`) of `w` x `h` pixels (clipped).
    pub fn fill(&mut self, x: i32, y: i32, w: i32, h: i32, color: Rgb) {
        let bytes = (0xff00_0000 | color).to_le_bytes();
        for yy in y.max(0)..(y.saturating_add(h)).min(self.height) {
            for xx in x.max(0)..(x.saturating_add(w)).min(self.width) {
                if let Some(i) = self.index(xx, yy) {
                    self.pixels[i..i + 4].copy_from_slice(&bytes);
                }
            }
        }
    }

    /// Blends `color` over the pixel at (`x`, `y`) by `coverage` (0..=1).
    pub fn blend(&mut self, x: i32, y: i32, color: Rgb, coverage: f32) {
        let Some(i) = self.index(x, y) else { return };
        let a = coverage.clamp(0.0, 1.0);
        let over = |shift: u32, byte: usize| {
            let src = ((color >> shift) & 0xff) as f32;
            let dst = f32::from(self.pixels[i + byte]);
            (src * a + dst * (1.0 - a)).round() as u8
        };
        let (b, g, r) = (over(0, 0), over(8, 1), over(16, 2));
        self.pixels[i..i + 4].copy_from_slice(&[b, g, r, 0xff]);
    }
}

/// A font at one size.
#[derive(Debug)]
pub struct Text {
    font: FontVec,
    scale: PxScale,
}

impl Text {
    /// `font` (TrueType or OpenType bytes) at `px` pixels.
    pub fn new(font: Vec<u8>, px: f32) -> Result<Text, ab_glyph::InvalidFont> {
        Ok(Text { font: FontVec::try_from_vec(font)?, scale: PxScale::from(px) })
    }

    /// The width `s` takes, in pixels.
    pub fn width(&self, s: &str) -> f32 {
        let font = self.font.as_scaled(self.scale);
        let mut width = 0.0;
        let mut last = None;
        for c in s.chars() {
            let id = font.glyph_id(c);
            if let Some(prev) = last {
                width += font.kern(prev, id);
            }
            width += font.h_advance(id);
            last = Some(id);
        }
        width
    }

    /// Whether the font has a glyph for `c`.
    pub fn has(&self, c: char) -> bool {
        self.font.glyph_id(c).0 != 0
    }

    /// Draws `s` with its left edge at `x` and its text vertically
    /// centred on the row `middle`.
    pub fn draw(&self, canvas: &mut Canvas<'_>, s: &str, x: f32, middle: f32, color: Rgb) {
        let font = self.font.as_scaled(self.scale);
        // Centre the ascent-to-descent box on the middle row.
        let baseline = middle + (font.ascent() + font.descent()) / 2.0;
        let mut pen = x;
        let mut last = None;
        for c in s.chars() {
            let id = font.glyph_id(c);
            if let Some(prev) = last {
                pen += font.kern(prev, id);
            }
            let glyph = id.with_scale_and_position(self.scale, ab_glyph::point(pen, baseline));
            pen += font.h_advance(id);
            last = Some(id);
            let Some(outline) = self.font.outline_glyph(glyph) else { continue };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                canvas.blend(bounds.min.x as i32 + gx as i32, bounds.min.y as i32 + gy as i32, color, coverage);
            });
        }
    }
}

/// A monospaced font at one size for a grid of character cells (the
/// terminal): every glyph is rasterised once, then copied. The cache is
/// keyed by glyph, so it holds at most the font's glyph count (DejaVu
/// Sans Mono: about 3,300) whatever text is drawn.
pub struct CellFont {
    font: FontVec,
    scale: PxScale,
    cell: (i32, i32),
    ascent: f32,
    glyphs: std::collections::HashMap<ab_glyph::GlyphId, Option<Glyph>>,
}

/// One glyph's coverage (0..=255), `w` x `h`, placed at (`left`, `top`)
/// from its cell's top left corner.
struct Glyph {
    left: i32,
    top: i32,
    w: i32,
    h: i32,
    coverage: Vec<u8>,
}

impl std::fmt::Debug for CellFont {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CellFont").field("cell", &self.cell).field("cached", &self.glyphs.len()).finish()
    }
}

impl CellFont {
    /// `font` (TrueType or OpenType bytes, monospaced) at `px` pixels.
    pub fn new(font: Vec<u8>, px: f32) -> Result<CellFont, ab_glyph::InvalidFont> {
        let font = FontVec::try_from_vec(font)?;
        let scale = PxScale::from(px);
        let scaled = font.as_scaled(scale);
        let w = scaled.h_advance(scaled.glyph_id('M')).ceil().max(1.0) as i32;
        let h = (scaled.ascent() - scaled.descent() + scaled.line_gap()).ceil().max(1.0) as i32;
        let ascent = scaled.ascent();
        Ok(CellFont { font, scale, cell: (w, h), ascent, glyphs: std::collections::HashMap::new() })
    }

    /// A cell's width and height, in pixels.
    pub fn cell(&self) -> (i32, i32) {
        self.cell
    }

    /// Draws `c` in the cell whose top left corner is (`x`, `y`).
    pub fn draw(&mut self, canvas: &mut Canvas<'_>, x: i32, y: i32, c: char, color: Rgb) {
        let id = self.font.glyph_id(c);
        let (font, scale, ascent) = (&self.font, self.scale, self.ascent);
        let glyph = self.glyphs.entry(id).or_insert_with(|| {
            let outline = font.outline_glyph(id.with_scale_and_position(scale, ab_glyph::point(0.0, ascent)))?;
            let bounds = outline.px_bounds();
            let (w, h) = (bounds.width() as i32, bounds.height() as i32);
            let mut coverage = vec![0u8; (w.max(0) * h.max(0)) as usize];
            outline.draw(|gx, gy, c| {
                if let Some(cell) = coverage.get_mut(gy as usize * w as usize + gx as usize) {
                    *cell = (c.clamp(0.0, 1.0) * 255.0).round() as u8;
                }
            });
            Some(Glyph { left: bounds.min.x as i32, top: bounds.min.y as i32, w, h, coverage })
        });
        let Some(glyph) = glyph else { return };
        for gy in 0..glyph.h {
            for gx in 0..glyph.w {
                let c = glyph.coverage[(gy * glyph.w + gx) as usize];
                if c != 0 {
                    canvas.blend(x + glyph.left + gx, y + glyph.top + gy, color, f32::from(c) / 255.0);
                }
            }
        }
    }
}

/// The power symbol (IEC 5009: a ring open at the top, a bar through
/// the gap), centred on (`cx`, `cy`), the ring's radius `r` pixels,
/// antialiased.
pub fn power_icon(canvas: &mut Canvas<'_>, cx: f32, cy: f32, r: f32, color: Rgb) {
    const HALF_STROKE: f32 = 1.1;
    let reach = (r + 2.0).ceil() as i32;
    for dy in -reach..=reach {
        for dx in -reach..=reach {
            // The pixel's centre, relative to the icon's.
            let (px, py) = (dx as f32 + 0.5 - (cx - cx.floor()), dy as f32 + 0.5 - (cy - cy.floor()));
            let d = (px * px + py * py).sqrt();
            // The ring, less 40 degrees either side of straight up.
            let in_gap = py < 0.0 && px.abs() < -py * 0.84;
            let ring = if in_gap { 0.0 } else { (HALF_STROKE + 0.5 - (d - r).abs()).clamp(0.0, 1.0) };
            // The bar: from the centre up past the ring.
            let bar = if py <= 0.5 && py >= -(r + 1.5) { (HALF_STROKE + 0.5 - px.abs()).clamp(0.0, 1.0) } else { 0.0 };
            let coverage = ring.max(bar);
            if coverage > 0.0 {
                canvas.blend(cx.floor() as i32 + dx, cy.floor() as i32 + dy, color, coverage);
            }
        }
    }
}

/// The applications symbol: three rows of three dots, centred on
/// (`cx`, `cy`).
pub fn apps_icon(canvas: &mut Canvas<'_>, cx: i32, cy: i32, color: Rgb) {
    const DOT: i32 = 4;
    const STEP: i32 = 7;
    for row in -1..=1 {
        for col in -1..=1 {
            canvas.fill(cx + col * STEP - DOT / 2, cy + row * STEP - DOT / 2, DOT, DOT, color);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_clips_and_lays_out_as_wl_shm_does() {
        let mut buf = vec![0u8; 4 * 3 * 4];
        let mut c = Canvas::new(&mut buf, 4, 3).unwrap();
        c.fill(-2, 1, 4, 10, 0x123456);
        assert_eq!(c.get(0, 0), Some(0));
        assert_eq!(c.get(1, 2), Some(0x123456));
        assert_eq!(c.get(2, 1), Some(0));
        assert_eq!(c.get(4, 0), None);
        // B, G, R, A in memory.
        assert_eq!(&buf[16..20], &[0x56, 0x34, 0x12, 0xff]);
        assert!(Canvas::new(&mut [0u8; 7], 1, 2).is_none());
        assert!(Canvas::new(&mut [0u8; 8], -1, 2).is_none());
    }

    #[test]
    fn text_covers_pixels_where_it_is_drawn() {
        let Some(font) = crate::font::load() else {
            panic!("no font: install fonts-dejavu-core (rootfs/setup-host.sh)");
        };
        let text = Text::new(font.1, 18.0).unwrap();
        let mut buf = vec![0u8; 100 * 32 * 4];
        let mut c = Canvas::new(&mut buf, 100, 32).unwrap();
        let w = text.width("12:34");
        assert!(w > 20.0 && w < 100.0, "{w}");
        text.draw(&mut c, "12:34", 2.0, 16.0, 0xffffff);
        let lit: Vec<(i32, i32)> = (0..32).flat_map(|y| (0..100).map(move |x| (x, y))).filter(|&(x, y)| c.get(x, y).unwrap() > 0x808080).collect();
        assert!(lit.len() > 30, "{} pixels lit", lit.len());
        // Within the text's box, vertically around the middle row.
        assert!(lit.iter().all(|&(x, y)| x >= 2 && (x as f32) <= 2.0 + w + 1.0 && (3..29).contains(&y)), "{lit:?}");
    }

    #[test]
    fn the_power_icon_is_a_ring_open_at_the_top_with_a_bar() {
        let mut buf = vec![0u8; 40 * 40 * 4];
        let mut c = Canvas::new(&mut buf, 40, 40).unwrap();
        power_icon(&mut c, 20.0, 20.0, 8.0, 0xffffff);
        let lit = |c: &Canvas<'_>, x: i32, y: i32| c.get(x, y).unwrap() > 0x808080;
        // The ring at its bottom, left and right; the bar above the centre.
        assert!(lit(&c, 20, 28) && lit(&c, 12, 20) && lit(&c, 28, 20), "ring");
        assert!(lit(&c, 20, 14) && lit(&c, 20, 19), "bar");
        // The gap either side of the bar at the top, and the inside empty.
        assert!(!lit(&c, 17, 12) && !lit(&c, 23, 12), "gap");
        assert!(!lit(&c, 16, 22) && !lit(&c, 24, 22), "inside");
        // Nothing far outside.
        assert!((0..40).all(|i| !lit(&c, i, 0) && !lit(&c, 0, i)), "outside");
    }
}
