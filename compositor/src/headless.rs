//! The headless backend: frames are drawn into an offscreen pixman image,
//! for tests and screenshots. [`crate::Compositor::frame`] reads it back.

use smithay::{
    backend::{
        allocator::Fourcc,
        renderer::{damage::OutputDamageTracker, pixman::PixmanRenderer, Bind, Offscreen},
    },
    desktop::{Space, Window},
    output::Output,
    reexports::pixman::Image,
    utils::Transform,
};

use crate::{
    render::{read_back, render_space, Cursor},
    state::{OutputInfo, RenderStatus},
    Error,
};

/// A copy of a rendered frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height` pixels, row by row from the top left, each
    /// `0x00RRGGBB`.
    pub pixels: Vec<u32>,
}

impl Frame {
    /// The pixel at (`x`, `y`) as `0x00RRGGBB`, `None` outside the frame.
    pub fn pixel(&self, x: u32, y: u32) -> Option<u32> {
        if x >= self.width || y >= self.height {
            return None;
        }
        self.pixels.get(y as usize * self.width as usize + x as usize).copied()
    }

    /// The frame as a binary PPM (P6) image, for screenshots.
    pub fn to_ppm(&self) -> Vec<u8> {
        let mut out = format!("P6\n{} {}\n255\n", self.width, self.height).into_bytes();
        out.reserve(self.pixels.len() * 3);
        for &p in &self.pixels {
            out.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, p as u8]);
        }
        out
    }
}

/// Renders into an offscreen XRGB8888 image.
pub struct HeadlessBackend {
    renderer: PixmanRenderer,
    image: Image<'static, 'static>,
    tracker: OutputDamageTracker,
    size: (i32, i32),
    frames: u64,
}

impl std::fmt::Debug for HeadlessBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadlessBackend").field("size", &self.size).field("frames", &self.frames).finish_non_exhaustive()
    }
}

impl HeadlessBackend {
    /// An offscreen output of `width` x `height` pixels (both positive).
    pub(crate) fn new(width: i32, height: i32) -> Result<Self, Error> {
        let mut renderer = PixmanRenderer::new()?;
        let image = renderer.create_buffer(Fourcc::Xrgb8888, (width, height).into())?;
        let tracker = OutputDamageTracker::new((width, height), 1.0, Transform::Normal);
        Ok(HeadlessBackend { renderer, image, tracker, size: (width, height), frames: 0 })
    }

    pub(crate) fn output_info(&self) -> OutputInfo {
        OutputInfo { name: "headless-1".into(), make: "Accord".into(), model: "headless".into(), size: self.size, refresh_mhz: 60_000, physical_mm: (0, 0) }
    }

    /// The (simulated) screen went off or on (called on a change only; no
    /// frame is asked for while off, and [`crate::state::State`] reads
    /// it back black); on again, the next frame is drawn whole.
    pub(crate) fn set_power(&mut self, on: bool) {
        if on {
            self.frames = 0;
        }
    }

    pub(crate) fn render(&mut self, space: &Space<Window>, output: &Output, cursor: Option<&Cursor>) -> Result<RenderStatus, Error> {
        // One image, so after the first frame it always holds the last one.
        let age = if self.frames == 0 { 0 } else { 1 };
        let mut target = self.renderer.bind(&mut self.image)?;
        let damaged = render_space(&mut self.renderer, &mut target, age, space, output, cursor, &mut self.tracker)?;
        self.frames += 1;
        Ok(RenderStatus::Rendered { damaged })
    }

    /// A copy of the image, `None` before the first frame.
    pub(crate) fn capture(&mut self) -> Result<Option<Frame>, Error> {
        let (width, height) = self.size;
        if self.frames == 0 {
            return Ok(None);
        }
        let target = self.renderer.bind(&mut self.image)?;
        read_back(&mut self.renderer, &target, width, height).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_and_ppm() {
        let frame = Frame { width: 2, height: 1, pixels: vec![0x102030, 0xa0b0c0] };
        assert_eq!(frame.pixel(1, 0), Some(0xa0b0c0));
        assert_eq!(frame.pixel(2, 0), None);
        assert_eq!(frame.pixel(0, 1), None);
        assert_eq!(frame.to_ppm(), b"P6\n2 1\n255\n\x10\x20\x30\xa0\xb0\xc0".to_vec());
    }
}
