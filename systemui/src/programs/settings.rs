//! `settings`: Accord's Settings application, its About page
//! (OpenHarmony's Settings > About device), a Wayland client of
//! render_service. It shows the device's `const.` parameters, kernel,
//! uptime and memory, the use of `/data` and `/`, the power mode and
//! battery (SAs 3301 and 3302), and every system ability samgr knows
//! with its state and process, read again every [`REFRESH`].
//!
//! The launcher starts it as init's service `app.settings`, uid
//! `app_settings` (20010002): samgr's policy lets that uid list the SAs
//! and reach the power manager, nothing more. What it shows is also
//! summed up in hilog (`hilog -x -T settings`: each section's count and
//! first row), a line each time that summary changes.

use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd},
    sync::{Arc, Mutex},
    time::Duration,
};

use crate::{
    draw::{Canvas, Text},
    font,
    settings::{self, Section},
};
use anyhow::Context;
use smithay_client_toolkit::{
    compositor::CompositorState,
    output::OutputState,
    reexports::client::{globals::registry_queue_init, protocol::wl_shm, Connection, QueueHandle},
    registry::RegistryState,
    shell::{
        xdg::{
            window::{Window, WindowConfigure, WindowDecorations, WindowHandler},
            XdgShell,
        },
        WaylandSurface,
    },
    shm::{slot::SlotPool, Shm},
};
use tracing::{info, warn};

/// How often the page is read again.
const REFRESH: Duration = Duration::from_secs(5);
/// The size asked for when the compositor leaves it to us, and the
/// largest drawn.
const DEFAULT_SIZE: (u32, u32) = (900, 600);
const MAX_SIDE: u32 = 8192;

pub fn main() -> anyhow::Result<()> {
    accord_hilog::init_tracing("settings", 0xD002903);
    let fonts = font::load().map(|(_, bytes)| (Text::new(bytes.clone(), 18.0), Text::new(bytes, 15.0)));
    let (heading, text) = match fonts {
        Some((Ok(h), Ok(t))) => (Some(h), Some(t)),
        _ => {
            warn!(looked_in = ?font::FONT_PATHS, "no usable font: the page has no text");
            (None, None)
        }
    };
    let page: Arc<Mutex<Vec<Section>>> = Arc::new(Mutex::new(Vec::new()));
    let (mut wake_rx, wake_tx) = std::io::pipe().context("a pipe")?;
    let seen = page.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("a tokio runtime")?;
    std::thread::Builder::new().name("gather".into()).spawn(move || {
        let mut wake_tx = wake_tx;
        rt.block_on(async move {
            let mut said = String::new();
            loop {
                let mut sections = tokio::task::spawn_blocking(settings::gather_local).await.unwrap_or_default();
                sections.extend(settings::gather_services().await);
                // The page is drawn again on any change (the uptime moves
                // every minute); hilog is told only when the summary
                // changes, not every few seconds.
                let summary = settings::summary(&sections);
                if summary != said {
                    info!("{summary}");
                    said = summary;
                }
                let changed = seen.lock().map(|mut p| std::mem::replace(&mut *p, sections.clone()) != sections).unwrap_or(false);
                if changed {
                    let _ = std::io::Write::write_all(&mut wake_tx, b"x");
                }
                tokio::time::sleep(REFRESH).await;
            }
        });
    })?;

    let conn = Connection::connect_to_env().context("connecting to the compositor ($WAYLAND_DISPLAY)")?;
    let (globals, mut queue) = registry_queue_init(&conn).context("reading the compositor's globals")?;
    let qh = queue.handle();
    let compositor = CompositorState::bind(&globals, &qh).context("wl_compositor")?;
    let xdg = XdgShell::bind(&globals, &qh).context("xdg_wm_base")?;
    let shm = Shm::bind(&globals, &qh).context("wl_shm")?;
    let window = xdg.create_window(compositor.create_surface(&qh), WindowDecorations::RequestServer, &qh);
    window.set_title("Settings");
    window.set_app_id("settings");
    window.commit();
    let pool = SlotPool::new((DEFAULT_SIZE.0 * DEFAULT_SIZE.1 * 4) as usize, &shm).context("a shared-memory pool")?;
    let mut app =
        App { registry: RegistryState::new(&globals), output: OutputState::new(&globals, &qh), shm, pool, window, size: None, dirty: true, closed: false };
    loop {
        queue.flush().context("sending to the compositor")?;
        queue.dispatch_pending(&mut app).context("handling the compositor's events")?;
        if app.closed {
            info!("closed");
            return Ok(());
        }
        if let (Some((w, h)), true) = (app.size, app.dirty) {
            let sections = page.lock().map(|p| p.clone()).unwrap_or_default();
            if let Err(e) = app.draw(w, h, heading.as_ref(), text.as_ref(), &sections) {
                warn!("the page not drawn: {e:#}");
            }
            app.dirty = false;
        }
        queue.flush().context("sending to the compositor")?;
        let Some(guard) = queue.prepare_read() else { continue };
        let mut fds = [
            libc::pollfd { fd: guard.connection_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: wake_rx.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        // SAFETY: two valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, -1) };
        if r > 0 && fds[1].revents != 0 {
            let _ = wake_rx.read(&mut [0u8; 64]);
            app.dirty = true;
        }
        if r > 0 && fds[0].revents != 0 {
            match guard.read() {
                Ok(_) => {}
                Err(smithay_client_toolkit::reexports::client::backend::WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(anyhow::Error::new(e).context("reading from the compositor")),
            }
        }
    }
}

struct App {
    registry: RegistryState,
    output: OutputState,
    shm: Shm,
    pool: SlotPool,
    window: Window,
    size: Option<(u32, u32)>,
    dirty: bool,
    closed: bool,
}

impl App {
    fn draw(&mut self, w: u32, h: u32, heading: Option<&Text>, text: Option<&Text>, sections: &[Section]) -> anyhow::Result<()> {
        let (w, h) = (w as i32, h as i32);
        let (buffer, pixels) = self.pool.create_buffer(w, h, w * 4, wl_shm::Format::Argb8888).context("a buffer for the page")?;
        let mut canvas = Canvas::new(pixels, w, h).context("the buffer is smaller than the window")?;
        settings::draw(&mut canvas, heading, text, sections);
        let surface = self.window.wl_surface();
        surface.damage_buffer(0, 0, w, h);
        buffer.attach_to(surface).context("attaching the page's buffer")?;
        self.window.commit();
        Ok(())
    }
}

impl WindowHandler for App {
    fn request_close(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window) {
        self.closed = true;
    }

    fn configure(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &Window, configure: WindowConfigure, _serial: u32) {
        let w = configure.new_size.0.map_or(DEFAULT_SIZE.0, |v| v.get()).min(MAX_SIDE);
        let h = configure.new_size.1.map_or(DEFAULT_SIZE.1, |v| v.get()).min(MAX_SIDE);
        self.size = Some((w, h));
        self.dirty = true;
    }
}

crate::client_handlers!(App, [OutputState]);
