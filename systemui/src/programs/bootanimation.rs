//! `bootanimation`: OpenHarmony's boot animation, a Wayland client of
//! render_service. init starts it with render_service and the system UI
//! (it waits up to [`CONNECT_FOR`] for the compositor's socket); it
//! covers the whole screen (an overlay layer surface, over the status
//! bar) with the product's name (`const.product.name`, else "Accord") and
//! a row of dots, one lit after the other, until the boot has completed
//! (`bootevent.boot.completed=true`), then goes. The boot waits for its
//! first frame (`bootevent.bootanimation.started`, declared in
//! systemui.cfg) and for the status bar (`bootevent.systemui.ready`), so
//! the animation is always seen and gives way to the system UI. If the boot had
//! completed before it started (render_service restarted later), it
//! shows nothing. It gives up after [`MAX_SHOWN`] whatever happens, said
//! in the log.
//!
//! Each step redraws only the dots: the buffer is kept, and the damage
//! is the dots' row, so the compositor repaints a few hundred pixels a
//! step, not the screen.

use std::{
    io::Read,
    os::fd::{AsFd, AsRawFd},
    time::{Duration, Instant},
};

use crate::{
    draw::{Canvas, Rgb, Text},
    font,
};
use anyhow::{bail, Context};
use smithay_client_toolkit::{
    compositor::CompositorState,
    output::OutputState,
    reexports::client::{globals::registry_queue_init, protocol::wl_shm, Connection, QueueHandle},
    registry::RegistryState,
    shell::{
        wlr_layer::{Anchor, KeyboardInteractivity, Layer, LayerShell, LayerShellHandler, LayerSurface, LayerSurfaceConfigure},
        WaylandSurface,
    },
    shm::{
        slot::{Buffer, SlotPool},
        Shm,
    },
};
use tracing::{info, warn};

/// The parameter that ends the animation, and its value then.
const COMPLETED: (&str, &str) = ("bootevent.boot.completed", "true");
/// The boot event set once the first frame is on its way (OpenHarmony's
/// name for it).
const STARTED: (&str, &str) = ("bootevent.bootanimation.started", "true");
/// The longest the animation stays, whatever the boot does.
const MAX_SHOWN: Duration = Duration::from_secs(300);
/// How long the compositor is waited for.
const CONNECT_FOR: Duration = Duration::from_secs(60);
/// One step of the dots.
const STEP: Duration = Duration::from_millis(250);
const DOTS: i32 = 5;
const DOT: i32 = 10;
const DOT_GAP: i32 = 14;
const BACKGROUND: Rgb = 0x05070a;
const NAME_COLOR: Rgb = 0xe6edf3;
const DOT_OFF: Rgb = 0x2a3440;
const DOT_ON: Rgb = 0x58a6ff;
const NAME_PX: f32 = 44.0;
/// The widest or tallest screen drawn (a larger configure is clamped).
const MAX_SIDE: u32 = 16384;

pub fn main() -> anyhow::Result<()> {
    accord_hilog::init_tracing("bootanimation", 0xD002902);
    if accord_param::client::get(COMPLETED.0).is_ok_and(|v| v == COMPLETED.1) {
        info!("the boot has completed already: nothing to show");
        return Ok(());
    }
    // The end of the boot, from a thread waiting on the parameter, wakes
    // the drawing loop through a pipe.
    let (done_rx, done_tx) = std::io::pipe().context("a pipe")?;
    std::thread::spawn(move || {
        let mut done_tx = done_tx;
        match accord_param::client::wait(COMPLETED.0, COMPLETED.1, MAX_SHOWN) {
            Ok(()) => {}
            Err(e) => warn!(%e, "waiting for the boot's completion failed"),
        }
        let _ = std::io::Write::write_all(&mut done_tx, b"x");
    });
    let name = accord_param::client::get("const.product.name").ok().filter(|n| !n.is_empty()).unwrap_or_else(|| "Accord".to_owned());
    let text = font::load().and_then(|(path, bytes)| match Text::new(bytes, NAME_PX) {
        Ok(t) => Some(t),
        Err(e) => {
            warn!(path = %path.display(), %e, "the font does not load: no name shown");
            None
        }
    });
    let conn = connect()?;
    let started = Instant::now();
    let steps = run(conn, &name, text.as_ref(), done_rx)?;
    info!(steps, shown_ms = started.elapsed().as_millis() as u64, "the boot completed: the animation ends");
    Ok(())
}

fn connect() -> anyhow::Result<Connection> {
    let deadline = Instant::now() + CONNECT_FOR;
    loop {
        match Connection::connect_to_env() {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() >= deadline => bail!("no compositor in {CONNECT_FOR:?}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

struct Anim {
    registry: RegistryState,
    output: OutputState,
    shm: Shm,
    pool: SlotPool,
    layer: LayerSurface,
    size: Option<(u32, u32)>,
    /// Full-screen buffers (at most two), each with whether its
    /// background and name are drawn; emptied by a resize.
    buffers: Vec<(Buffer, bool)>,
    /// Whether a frame was shown at this size (the first is damaged
    /// whole, the next ones only where the dots are).
    shown: bool,
    closed: bool,
}

/// Shows the animation until `done` is readable; the number of steps.
fn run(conn: Connection, name: &str, text: Option<&Text>, mut done: std::io::PipeReader) -> anyhow::Result<u64> {
    let (globals, mut queue) = registry_queue_init(&conn).context("reading the compositor's globals")?;
    let qh = queue.handle();
    let compositor = CompositorState::bind(&globals, &qh).context("wl_compositor")?;
    let layer_shell = LayerShell::bind(&globals, &qh).context("no layer-shell for this uid (render_service --system-ui-uid)")?;
    let shm = Shm::bind(&globals, &qh).context("wl_shm")?;
    let surface = compositor.create_surface(&qh);
    let layer = layer_shell.create_layer_surface(&qh, surface, Layer::Overlay, Some("bootanimation"), None);
    layer.set_anchor(Anchor::TOP | Anchor::BOTTOM | Anchor::LEFT | Anchor::RIGHT);
    layer.set_size(0, 0);
    // Over everything, the bar's place included.
    layer.set_exclusive_zone(-1);
    layer.set_keyboard_interactivity(KeyboardInteractivity::None);
    layer.commit();
    let pool = SlotPool::new(4096, &shm).context("a shared-memory pool")?;
    let mut anim = Anim {
        registry: RegistryState::new(&globals),
        output: OutputState::new(&globals, &qh),
        shm,
        pool,
        layer,
        size: None,
        buffers: Vec::new(),
        shown: false,
        closed: false,
    };
    let deadline = Instant::now() + MAX_SHOWN;
    let mut step: u64 = 0;
    let mut next = Instant::now();
    loop {
        queue.flush().context("sending to the compositor")?;
        queue.dispatch_pending(&mut anim).context("handling the compositor's events")?;
        if anim.closed {
            bail!("the compositor closed the animation's surface");
        }
        let now = Instant::now();
        if now >= deadline {
            warn!("the boot has not completed in {MAX_SHOWN:?}: the animation ends anyway");
            return Ok(step);
        }
        if now >= next {
            match anim.draw(name, text, step) {
                Ok(true) => {
                    if step == 0 {
                        queue.flush().context("sending to the compositor")?;
                        info!("shown");
                        // The boot waits for this (bootanimation.cfg's boot
                        // event): the animation is on the screen before the
                        // boot can complete, however fast the system UI is.
                        if let Err(e) = accord_param::client::set(STARTED.0, STARTED.1) {
                            warn!(%e, "{} not set: the boot completes without it", STARTED.0);
                        }
                    }
                    step += 1;
                }
                Ok(false) => {}
                Err(e) => warn!("a step not drawn: {e:#}"),
            }
            next = now + STEP;
        }
        queue.flush().context("sending to the compositor")?;
        let Some(guard) = queue.prepare_read() else { continue };
        let mut fds = [
            libc::pollfd { fd: guard.connection_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: done.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
        ];
        let timeout = next.saturating_duration_since(Instant::now()).as_millis().min(1000) as i32;
        // SAFETY: two valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if r > 0 && fds[1].revents != 0 {
            let _ = done.read(&mut [0u8; 8]);
            return Ok(step);
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

/// Where the dots' row is on a `w` x `h` screen: its left, top, width
/// and height.
fn dots_rect(w: i32, h: i32) -> (i32, i32, i32, i32) {
    let width = DOTS * DOT + (DOTS - 1) * DOT_GAP;
    ((w - width) / 2, h / 2 + 40, width, DOT)
}

impl Anim {
    /// Draws step `step`: the whole screen into a buffer the first time
    /// it is used, the dots after. Two buffers take turns (the compositor
    /// holds the one shown until another replaces it). `false` when there
    /// is nothing to draw into yet (not configured, or both held).
    fn draw(&mut self, name: &str, text: Option<&Text>, step: u64) -> anyhow::Result<bool> {
        let Some((w, h)) = self.size else { return Ok(false) };
        let (w, h) = (w as i32, h as i32);
        let free = (0..self.buffers.len()).find(|&i| self.buffers[i].0.canvas(&mut self.pool).is_some());
        let i = match free {
            Some(i) => i,
            None if self.buffers.len() < 2 => {
                let (buffer, _) = self.pool.create_buffer(w, h, w * 4, wl_shm::Format::Argb8888).context("a buffer for the screen")?;
                self.buffers.push((buffer, false));
                self.buffers.len() - 1
            }
            None => return Ok(false),
        };
        let first_shown = !self.shown;
        let (buffer, full) = &mut self.buffers[i];
        let Some(pixels) = buffer.canvas(&mut self.pool) else { return Ok(false) };
        let mut canvas = Canvas::new(pixels, w, h).context("the buffer is smaller than the screen")?;
        let (dx, dy, dw, dh) = dots_rect(w, h);
        if !*full {
            canvas.fill(0, 0, w, h, BACKGROUND);
            if let Some(text) = text {
                text.draw(&mut canvas, name, (w as f32 - text.width(name)) / 2.0, h as f32 / 2.0 - 10.0, NAME_COLOR);
            }
            *full = true;
        }
        let lit = (step % DOTS as u64) as i32;
        for d in 0..DOTS {
            canvas.fill(dx + d * (DOT + DOT_GAP), dy, DOT, DOT, if d == lit { DOT_ON } else { DOT_OFF });
        }
        let surface = self.layer.wl_surface();
        if first_shown {
            surface.damage_buffer(0, 0, w, h);
        } else {
            surface.damage_buffer(dx, dy, dw, dh);
        }
        buffer.attach_to(surface).context("attaching the buffer")?;
        self.layer.commit();
        self.shown = true;
        Ok(true)
    }
}

impl LayerShellHandler for Anim {
    fn closed(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &LayerSurface) {
        self.closed = true;
    }

    fn configure(&mut self, _: &Connection, _: &QueueHandle<Self>, _: &LayerSurface, configure: LayerSurfaceConfigure, _serial: u32) {
        let (w, h) = configure.new_size;
        let size = (w.clamp(1, MAX_SIDE), h.clamp(1, MAX_SIDE));
        if self.size != Some(size) {
            info!(width = size.0, height = size.1, "configured");
            self.size = Some(size);
            self.buffers.clear();
            self.shown = false;
        }
    }
}

crate::client_handlers!(Anim, [OutputState]);
