//! The status bar: a layer surface along the top of the screen that keeps
//! its height for itself (the exclusive zone: app windows go below it),
//! showing the time, redrawn when the minute changes.

use std::os::fd::AsFd;

use anyhow::Context;
use smithay_client_toolkit::{
    compositor::{CompositorHandler, CompositorState},
    delegate_registry,
    output::{OutputHandler, OutputState},
    reexports::client::{
        globals::registry_queue_init,
        protocol::{wl_output, wl_shm, wl_surface},
        Connection, QueueHandle,
    },
    registry::{ProvidesRegistryState, RegistryState},
    registry_handlers,
    shell::{
        wlr_layer::{Anchor, KeyboardInteractivity, Layer, LayerShell, LayerShellHandler, LayerSurface, LayerSurfaceConfigure},
        WaylandSurface,
    },
    shm::{slot::SlotPool, Shm, ShmHandler},
};
use tracing::{debug, info};

use crate::draw::{Canvas, Rgb, Text};

/// The bar's height in pixels (at scale 1), which it keeps from app
/// windows.
pub const HEIGHT: u32 = 32;

/// The bar's colour.
pub const COLOR: Rgb = 0x0b0f14;

/// The text's colour.
pub const TEXT_COLOR: Rgb = 0xe8eaed;

/// The text's size in pixels.
pub const TEXT_PX: f32 = 18.0;

/// The layer surface's namespace (what the compositor logs it as).
pub const NAMESPACE: &str = "statusbar";

/// Why the bar stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The compositor does not show this uid layer-shell: connecting again
    /// will not help.
    #[error("the compositor offers no layer-shell to uid {0}: only the system UI's uid may have it (render_service --system-ui-uid {0})")]
    NoLayerShell(u32),
    /// The connection failed (the compositor went away, most likely).
    #[error("{0:#}")]
    Lost(#[from] anyhow::Error),
}

/// Runs the bar on `conn` until the compositor closes it (`Ok`) or the
/// connection fails (`Err`: [`Error::Lost`], the caller connects again).
pub fn run(conn: Connection, text: Option<&Text>) -> Result<(), Error> {
    let (globals, mut queue) = registry_queue_init(&conn).context("reading the compositor's globals")?;
    let qh = queue.handle();
    let compositor = CompositorState::bind(&globals, &qh).context("wl_compositor")?;
    let Ok(layer_shell) = LayerShell::bind(&globals, &qh) else {
        // SAFETY: getuid has no preconditions.
        let uid = unsafe { libc::getuid() };
        return Err(Error::NoLayerShell(uid));
    };
    let shm = Shm::bind(&globals, &qh).context("wl_shm")?;
    let surface = compositor.create_surface(&qh);
    let layer = layer_shell.create_layer_surface(&qh, surface, Layer::Top, Some(NAMESPACE), None);
    layer.set_anchor(Anchor::TOP | Anchor::LEFT | Anchor::RIGHT);
    layer.set_size(0, HEIGHT);
    layer.set_exclusive_zone(HEIGHT as i32);
    layer.set_keyboard_interactivity(KeyboardInteractivity::None);
    layer.commit();
    let pool = SlotPool::new((1280 * HEIGHT * 4) as usize, &shm).context("a shared-memory pool")?;
    let mut bar =
        Bar { registry: RegistryState::new(&globals), output: OutputState::new(&globals, &qh), shm, pool, layer, width: 0, closed: false, shown: None };
    loop {
        queue.flush().context("sending to the compositor")?;
        queue.dispatch_pending(&mut bar).context("handling the compositor's events")?;
        if bar.closed {
            info!("the compositor closed the status bar");
            return Ok(());
        }
        let now = Clock::now();
        if bar.width > 0 && bar.shown != Some(now.minute_key()) {
            bar.draw(text, &now)?;
            queue.flush().context("sending to the compositor")?;
        }
        let Some(guard) = queue.prepare_read() else { continue };
        let mut fds = [libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&guard.connection_fd().as_fd()), events: libc::POLLIN, revents: 0 }];
        // Wake at the next minute (a little after, so the clock has turned).
        let timeout = now.ms_to_next_minute() + 20;
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 1, timeout) };
        if r > 0 {
            guard.read().context("reading from the compositor")?;
        } else if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(anyhow::Error::new(e).context("waiting for the compositor").into());
            }
        }
    }
}

struct Bar {
    registry: RegistryState,
    output: OutputState,
    shm: Shm,
    pool: SlotPool,
    layer: LayerSurface,
    /// The width the compositor gave (0 before the first configure).
    width: u32,
    closed: bool,
    /// The minute on the bar, once drawn.
    shown: Option<i64>,
}

impl Bar {
    fn draw(&mut self, text: Option<&Text>, now: &Clock) -> anyhow::Result<()> {
        let (w, h) = (self.width as i32, HEIGHT as i32);
        let (buffer, pixels) = self.pool.create_buffer(w, h, w * 4, wl_shm::Format::Argb8888).context("a buffer for the bar")?;
        let mut canvas = Canvas::new(pixels, w, h).context("the buffer is smaller than the bar")?;
        canvas.fill(0, 0, w, h, COLOR);
        if let Some(text) = text {
            // The time on the left, as on a phone.
            text.draw(&mut canvas, &now.hh_mm(), 12.0, h as f32 / 2.0, TEXT_COLOR);
        }
        let surface = self.layer.wl_surface();
        surface.damage_buffer(0, 0, w, h);
        buffer.attach_to(surface).context("attaching the bar's buffer")?;
        self.layer.commit();
        if self.shown.is_none() {
            info!(width = w, height = h, "status bar shown");
        }
        self.shown = Some(now.minute_key());
        Ok(())
    }
}

/// The local time, read once.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    tm: libc::tm,
    /// Milliseconds into the current minute.
    ms_in_minute: i64,
    secs: i64,
}

impl Clock {
    /// Now, in the local time zone (`TZ`, `/etc/localtime`; UTC without).
    pub fn now() -> Clock {
        let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        let secs = since.as_secs() as i64;
        // SAFETY: a zeroed tm is a valid out-parameter for localtime_r.
        let mut tm: libc::tm = unsafe { std::mem::zeroed() };
        // musl marks time_t deprecated for 32-bit targets' sake; it is
        // 64-bit on every target of the image.
        #[allow(deprecated)]
        let t = secs as libc::time_t;
        // SAFETY: both pointers are valid for the call.
        unsafe { libc::localtime_r(&t, &mut tm) };
        Clock { tm, ms_in_minute: i64::from(tm.tm_sec) * 1000 + i64::from(since.subsec_millis()), secs }
    }

    /// `HH:MM`, 24-hour.
    pub fn hh_mm(&self) -> String {
        format!("{:02}:{:02}", self.tm.tm_hour, self.tm.tm_min)
    }

    /// A number that changes when the minute does.
    pub fn minute_key(&self) -> i64 {
        (self.secs - i64::from(self.tm.tm_sec)) / 60
    }

    /// Milliseconds until the next minute begins (1..=60,000).
    pub fn ms_to_next_minute(&self) -> i32 {
        (60_000 - self.ms_in_minute).clamp(1, 60_000) as i32
    }
}

impl LayerShellHandler for Bar {
    fn closed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &LayerSurface) {
        self.closed = true;
    }

    fn configure(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &LayerSurface, configure: LayerSurfaceConfigure, _serial: u32) {
        debug!(width = configure.new_size.0, height = configure.new_size.1, "configured");
        if configure.new_size.0 != self.width {
            self.width = configure.new_size.0;
            // Drawn again at the new width.
            self.shown = None;
        }
    }
}

impl CompositorHandler for Bar {
    fn scale_factor_changed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: i32) {}
    fn transform_changed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: wl_output::Transform) {}
    fn frame(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: u32) {}
    fn surface_enter(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: &wl_output::WlOutput) {}
    fn surface_leave(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &wl_surface::WlSurface, _: &wl_output::WlOutput) {}
}

impl OutputHandler for Bar {
    fn output_state(&mut self) -> &mut OutputState {
        &mut self.output
    }
    fn new_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
    fn update_output(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
    fn output_destroyed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_output::WlOutput) {}
}

impl ShmHandler for Bar {
    fn shm_state(&mut self) -> &mut Shm {
        &mut self.shm
    }
}

impl ProvidesRegistryState for Bar {
    fn registry(&mut self) -> &mut RegistryState {
        &mut self.registry
    }
    registry_handlers![OutputState];
}

delegate_registry!(Bar);
smithay_client_toolkit::delegate_dispatch2!(Bar);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clock_turns_with_the_minute() {
        let c = Clock::now();
        assert_eq!(c.hh_mm().len(), 5);
        assert!((1..=60_000).contains(&c.ms_to_next_minute()));
        let later = Clock { secs: c.secs + i64::from(c.ms_to_next_minute()) / 1000 + 1, ..c };
        let later = Clock { tm: libc::tm { tm_sec: ((later.secs - c.secs + i64::from(c.tm.tm_sec)) % 60) as i32, ..c.tm }, ..later };
        assert_eq!(later.minute_key(), c.minute_key() + 1);
    }
}
