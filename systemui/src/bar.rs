//! The status bar: a layer surface along the top of the screen that keeps
//! its height for itself (the exclusive zone: app windows go below it),
//! showing the time, redrawn when the minute changes.

use std::os::fd::AsFd;

use anyhow::Context;
use smithay_client_toolkit::{
    compositor::CompositorState,
    output::OutputState,
    reexports::client::{
        globals::registry_queue_init,
        protocol::{wl_pointer, wl_seat, wl_shm},
        Connection, QueueHandle,
    },
    registry::RegistryState,
    seat::{
        pointer::{PointerEvent, PointerEventKind, PointerHandler},
        Capability, SeatHandler, SeatState,
    },
    shell::{
        wlr_layer::{Anchor, KeyboardInteractivity, Layer, LayerShell, LayerShellHandler, LayerSurface, LayerSurfaceConfigure},
        WaylandSurface,
    },
    shm::{slot::SlotPool, Shm},
};
use tracing::{debug, info, warn};

use crate::{
    draw::{Canvas, Rgb, Text},
    services::{PowerAction, Services},
};

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

/// The power button's width, at the bar's right end.
pub const BUTTON_W: u32 = 44;

/// The power menu: its width, its rows' height, its colours and rows.
pub const MENU_W: u32 = 200;
pub const ROW_H: u32 = 40;
pub const MENU_COLOR: Rgb = 0x1f2630;
pub const MENU_ROWS: [(&str, PowerAction); 3] = [("Suspend", PowerAction::Suspend), ("Restart", PowerAction::Reboot), ("Shut down", PowerAction::Shutdown)];

/// The launcher: its background, its tiles' size, the icons' size.
pub const LAUNCHER_COLOR: Rgb = 0x141b24;
pub const TILE_W: u32 = 140;
pub const TILE_H: u32 = 110;
pub const ICON: u32 = 56;
/// The launcher's margin around the grid.
pub const LAUNCHER_MARGIN: u32 = 24;

/// The widest bar drawn, in pixels (a wider configure is clamped: the
/// widest outputs are 16,384 pixels).
pub const MAX_WIDTH: u32 = 16384;

/// Linux's left mouse button (`BTN_LEFT`).
const BTN_LEFT: u32 = 0x110;

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
pub fn run(conn: Connection, text: Option<&Text>, services: &Services) -> Result<(), Error> {
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
    let mut bar = Bar {
        registry: RegistryState::new(&globals),
        output: OutputState::new(&globals, &qh),
        seat: SeatState::new(&globals, &qh),
        shm,
        pool,
        compositor,
        layer_shell,
        layer,
        pointer: None,
        pointer_said: false,
        menu: None,
        launcher: None,
        apps: Vec::new(),
        asked: Vec::new(),
        width: 0,
        closed: false,
        shown: None,
        battery: None,
        dirty: true,
    };
    loop {
        queue.flush().context("sending to the compositor")?;
        queue.dispatch_pending(&mut bar).context("handling the compositor's events")?;
        if bar.closed {
            info!("the compositor closed the status bar");
            return Ok(());
        }
        for action in bar.asked.drain(..) {
            services.ask(action);
        }
        let battery = services.battery().filter(|b| b.present).map(|b| battery_text(&b, text));
        if battery != bar.battery {
            bar.battery = battery;
            bar.dirty = true;
        }
        let now = Clock::now();
        if bar.width > 0 && (bar.dirty || bar.shown != Some(now.minute_key())) {
            // A drawing that fails (no memory for the buffer) is not a
            // lost connection: said, and tried at the next change.
            if let Err(e) = bar.draw(text, &now) {
                warn!("the bar not drawn: {e:#}");
                bar.dirty = false;
                bar.shown = Some(now.minute_key());
            }
        }
        if let Err(e) = bar.draw_menu(text).and_then(|()| bar.draw_launcher(text)) {
            warn!("a panel not drawn: {e:#}");
        }
        queue.flush().context("sending to the compositor")?;
        if bar.shown.is_some() {
            announce_ready();
        }
        if bar.pointer.is_some() && !bar.pointer_said {
            // After the flush: the compositor has the request once this
            // is in the log (the tests wait for it before clicking).
            debug!("pointer bound");
            bar.pointer_said = true;
        }
        let Some(guard) = queue.prepare_read() else { continue };
        let mut fds = [
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&guard.connection_fd().as_fd()), events: libc::POLLIN, revents: 0 },
            libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&services.wake_fd()), events: libc::POLLIN, revents: 0 },
        ];
        // Wake at the next minute (a little after, so the clock has turned).
        let timeout = now.ms_to_next_minute() + 20;
        // SAFETY: two valid pollfds.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), 2, timeout) };
        if r > 0 && fds[1].revents != 0 {
            services.drain();
        }
        if r > 0 && fds[0].revents != 0 {
            match guard.read() {
                Ok(_) => {}
                // Readable, yet nothing to read (as wayland-client's own
                // blocking read allows): the loop polls again.
                Err(smithay_client_toolkit::reexports::client::backend::WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(anyhow::Error::new(e).context("reading from the compositor").into()),
            }
        } else if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::Interrupted {
                return Err(anyhow::Error::new(e).context("waiting for the compositor").into());
            }
        }
    }
}

/// The boot event systemui declares (systemui.cfg): the boot completes
/// once the status bar is on the screen, so the boot animation stays
/// until the system UI is there to replace it.
pub const READY_EVENT: &str = "bootevent.systemui.ready";

/// Sets [`READY_EVENT`] the first time the bar was sent to the compositor
/// (once per process: a compositor restart later changes nothing).
fn announce_ready() {
    static READY: std::sync::Once = std::sync::Once::new();
    READY.call_once(|| match accord_param::client::set(READY_EVENT, "true") {
        Ok(()) => info!("{READY_EVENT} set"),
        Err(e) => warn!(%e, "{READY_EVENT} not set: the boot completes without the system UI's word"),
    });
}

/// A layer surface of the bar's that is open for a while: the power
/// menu (overlay, at the top right below the bar) or the launcher (top,
/// over the app area).
struct Panel {
    layer: LayerSurface,
    /// The size the compositor gave (`None` before it configured it; drawn
    /// once, then).
    size: Option<(u32, u32)>,
    drawn: bool,
}

impl Panel {
    fn open(bar: &Bar, qh: &QueueHandle<Bar>, layer: Layer, namespace: &str, anchor: Anchor, size: (u32, u32)) -> Panel {
        let surface = bar.compositor.create_surface(qh);
        let layer = bar.layer_shell.create_layer_surface(qh, surface, layer, Some(namespace), None);
        layer.set_anchor(anchor);
        layer.set_size(size.0, size.1);
        // Below the bar (its exclusive zone is kept clear).
        layer.set_exclusive_zone(0);
        layer.set_keyboard_interactivity(KeyboardInteractivity::None);
        layer.commit();
        Panel { layer, size: None, drawn: false }
    }

    /// A buffer for the whole panel once it is configured and not drawn
    /// yet; `draw` fills it, then it is shown.
    fn draw(&mut self, pool: &mut SlotPool, draw: impl FnOnce(&mut Canvas<'_>)) -> anyhow::Result<()> {
        let Some((w, h)) = self.size.filter(|_| !self.drawn) else { return Ok(()) };
        let (w, h) = (w as i32, h as i32);
        let (buffer, pixels) = pool.create_buffer(w, h, w * 4, wl_shm::Format::Argb8888).context("a buffer for a panel")?;
        let mut canvas = Canvas::new(pixels, w, h).context("the buffer is smaller than the panel")?;
        draw(&mut canvas);
        let surface = self.layer.wl_surface();
        surface.damage_buffer(0, 0, w, h);
        buffer.attach_to(surface).context("attaching a panel's buffer")?;
        self.layer.commit();
        self.drawn = true;
        Ok(())
    }
}

struct Bar {
    registry: RegistryState,
    output: OutputState,
    seat: SeatState,
    shm: Shm,
    pool: SlotPool,
    compositor: CompositorState,
    layer_shell: LayerShell,
    layer: LayerSurface,
    pointer: Option<wl_pointer::WlPointer>,
    /// "pointer bound" is in the log.
    pointer_said: bool,
    menu: Option<Panel>,
    launcher: Option<Panel>,
    /// The applications the open launcher shows.
    apps: Vec<crate::apps::App>,
    /// Menu choices made, for the services.
    asked: Vec<PowerAction>,
    /// The width the compositor gave (0 before the first configure).
    width: u32,
    closed: bool,
    /// The minute on the bar, once drawn.
    shown: Option<i64>,
    /// The battery as shown (`None`: no battery, nothing shown).
    battery: Option<String>,
    /// Something besides the time changed: draw again.
    dirty: bool,
}

/// The battery as the bar shows it: the percentage, and a flash when it
/// charges (`+` when the font has no flash).
fn battery_text(b: &accord_power::BatteryInfo, text: Option<&Text>) -> String {
    let charging = matches!(b.status, accord_power::ChargeState::Enable);
    let flash = if text.is_some_and(|t| t.has('\u{26a1}')) { '\u{26a1}' } else { '+' };
    match (b.capacity, charging) {
        (c, true) if c >= 0 => format!("{flash}{c}%"),
        (c, false) if c >= 0 => format!("{c}%"),
        (_, true) => flash.to_string(),
        _ => "?".into(),
    }
}

impl Bar {
    fn draw(&mut self, text: Option<&Text>, now: &Clock) -> anyhow::Result<()> {
        let (w, h) = (self.width as i32, HEIGHT as i32);
        let (buffer, pixels) = self.pool.create_buffer(w, h, w * 4, wl_shm::Format::Argb8888).context("a buffer for the bar")?;
        let mut canvas = Canvas::new(pixels, w, h).context("the buffer is smaller than the bar")?;
        canvas.fill(0, 0, w, h, COLOR);
        let button_x = w - BUTTON_W as i32;
        if self.menu.is_some() {
            canvas.fill(button_x, 0, BUTTON_W as i32, h, MENU_COLOR);
        }
        if self.launcher.is_some() {
            canvas.fill(0, 0, BUTTON_W as i32, h, MENU_COLOR);
        }
        crate::draw::power_icon(&mut canvas, button_x as f32 + BUTTON_W as f32 / 2.0, h as f32 / 2.0, 8.0, TEXT_COLOR);
        crate::draw::apps_icon(&mut canvas, BUTTON_W as i32 / 2, h / 2, TEXT_COLOR);
        if let Some(text) = text {
            // The applications button, then the time, as on a phone; the
            // battery on the right, left of the power button.
            text.draw(&mut canvas, &now.hh_mm(), BUTTON_W as f32 + 4.0, h as f32 / 2.0, TEXT_COLOR);
            if let Some(battery) = &self.battery {
                let x = button_x as f32 - 8.0 - text.width(battery);
                text.draw(&mut canvas, battery, x, h as f32 / 2.0, TEXT_COLOR);
            }
        }
        let surface = self.layer.wl_surface();
        surface.damage_buffer(0, 0, w, h);
        buffer.attach_to(surface).context("attaching the bar's buffer")?;
        self.layer.commit();
        if self.shown.is_none() {
            info!(width = w, height = h, "status bar shown");
        }
        self.shown = Some(now.minute_key());
        self.dirty = false;
        Ok(())
    }

    /// Opens the power menu, or closes it when open.
    fn toggle_menu(&mut self, qh: &QueueHandle<Self>) {
        self.dirty = true;
        if self.menu.take().is_some() {
            info!("power menu closed");
            return;
        }
        // One panel at a time: the launcher goes.
        if self.launcher.take().is_some() {
            info!("launcher closed");
        }
        self.menu = Some(Panel::open(self, qh, Layer::Overlay, "powermenu", Anchor::TOP | Anchor::RIGHT, (MENU_W, ROW_H * MENU_ROWS.len() as u32)));
        info!("power menu opened");
    }

    /// Opens the launcher (the applications installed now), or closes it
    /// when open.
    fn toggle_launcher(&mut self, qh: &QueueHandle<Self>) {
        self.dirty = true;
        if self.launcher.take().is_some() {
            info!("launcher closed");
            return;
        }
        // One panel at a time: the power menu goes.
        if self.menu.take().is_some() {
            info!("power menu closed");
        }
        self.apps = crate::apps::installed(&crate::apps::dir());
        // Over the app area: the whole output less the bar.
        let all = Anchor::TOP | Anchor::BOTTOM | Anchor::LEFT | Anchor::RIGHT;
        self.launcher = Some(Panel::open(self, qh, Layer::Top, "launcher", all, (0, 0)));
        info!(apps = self.apps.len(), "launcher opened");
    }

    /// Draws the menu once it is configured.
    fn draw_menu(&mut self, text: Option<&Text>) -> anyhow::Result<()> {
        let Some(menu) = &mut self.menu else { return Ok(()) };
        menu.draw(&mut self.pool, |canvas| {
            let w = MENU_W as i32;
            canvas.fill(0, 0, w, (ROW_H as usize * MENU_ROWS.len()) as i32, MENU_COLOR);
            for (i, (label, _)) in MENU_ROWS.iter().enumerate() {
                let top = i as i32 * ROW_H as i32;
                if i > 0 {
                    canvas.fill(12, top, w - 24, 1, COLOR);
                }
                if let Some(text) = text {
                    text.draw(canvas, label, 16.0, top as f32 + ROW_H as f32 / 2.0, TEXT_COLOR);
                }
            }
        })
    }

    /// Draws the launcher once it is configured: a grid of tiles, an icon
    /// (the name's initial on a colour of its own) over the name.
    fn draw_launcher(&mut self, text: Option<&Text>) -> anyhow::Result<()> {
        let Some(launcher) = &mut self.launcher else { return Ok(()) };
        let apps = &self.apps;
        launcher.draw(&mut self.pool, |canvas| {
            let (w, h) = (canvas.width(), canvas.height());
            canvas.fill(0, 0, w, h, LAUNCHER_COLOR);
            for (i, app) in apps.iter().enumerate() {
                let Some((x, y)) = tile_origin(w as u32, i) else { break };
                let (x, y) = (x as i32, y as i32);
                let icon_x = x + (TILE_W - ICON) as i32 / 2;
                canvas.fill(icon_x, y + 8, ICON as i32, ICON as i32, icon_color(&app.name));
                if let Some(text) = text {
                    let initial: String = app.name.chars().take(1).collect();
                    let iw = text.width(&initial);
                    text.draw(canvas, &initial, icon_x as f32 + (ICON as f32 - iw) / 2.0, (y + 8) as f32 + ICON as f32 / 2.0, 0xffffff);
                    let label = fit(text, &app.name, TILE_W as f32 - 8.0);
                    let lw = text.width(&label);
                    text.draw(canvas, &label, x as f32 + (TILE_W as f32 - lw) / 2.0, (y + 8 + ICON as i32 + 20) as f32, TEXT_COLOR);
                }
            }
            if apps.is_empty() {
                if let Some(text) = text {
                    text.draw(canvas, "No applications installed", LAUNCHER_MARGIN as f32, (LAUNCHER_MARGIN + 20) as f32, TEXT_COLOR);
                }
            }
        })
    }
}

/// Where tile `i` goes in a launcher `width` pixels wide (rows of as many
/// tiles as fit); `None` when it does not fit in a row at all.
fn tile_origin(width: u32, i: usize) -> Option<(u32, u32)> {
    let cols = (width.saturating_sub(2 * LAUNCHER_MARGIN) / TILE_W).max(1) as usize;
    let (col, row) = ((i % cols) as u32, (i / cols) as u32);
    let x = LAUNCHER_MARGIN + col * TILE_W;
    (x + TILE_W <= width.max(TILE_W)).then_some((x, LAUNCHER_MARGIN + row * TILE_H))
}

/// The tile under (`x`, `y`) of a launcher `width` pixels wide.
fn tile_at(width: u32, apps: usize, x: f64, y: f64) -> Option<usize> {
    (0..apps).find(|&i| {
        tile_origin(width, i).is_some_and(|(tx, ty)| x >= f64::from(tx) && x < f64::from(tx + TILE_W) && y >= f64::from(ty) && y < f64::from(ty + TILE_H))
    })
}

/// An icon's colour, the same for a name each time.
fn icon_color(name: &str) -> Rgb {
    const COLORS: [Rgb; 6] = [0x3d6fd9, 0x2e9e6a, 0xc9543b, 0x8a55c9, 0xc99a2e, 0x2e8fa3];
    let h = name.bytes().fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    COLORS[h as usize % COLORS.len()]
}

/// `s`, cut with an ellipsis to fit `max` pixels.
fn fit(text: &Text, s: &str, max: f32) -> String {
    if text.width(s) <= max {
        return s.to_owned();
    }
    let mut out: String = s.to_owned();
    while !out.is_empty() && text.width(&format!("{out}\u{2026}")) > max {
        out.pop();
    }
    format!("{out}\u{2026}")
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
    fn closed(&mut self, _: &Connection, _: &QueueHandle<Self>, layer: &LayerSurface) {
        if self.menu.as_ref().is_some_and(|m| &m.layer == layer) {
            self.menu = None;
            self.dirty = true;
        } else if self.launcher.as_ref().is_some_and(|m| &m.layer == layer) {
            self.launcher = None;
            self.dirty = true;
        } else {
            self.closed = true;
        }
    }

    fn configure(&mut self, _: &Connection, _: &QueueHandle<Self>, layer: &LayerSurface, configure: LayerSurfaceConfigure, _serial: u32) {
        for panel in [self.menu.as_mut(), self.launcher.as_mut()].into_iter().flatten() {
            if &panel.layer == layer {
                let size = (configure.new_size.0.clamp(1, MAX_WIDTH), configure.new_size.1.clamp(1, MAX_WIDTH));
                if panel.size != Some(size) {
                    panel.size = Some(size);
                    panel.drawn = false;
                }
                return;
            }
        }
        debug!(width = configure.new_size.0, height = configure.new_size.1, "configured");
        let width = configure.new_size.0.min(MAX_WIDTH);
        if width != self.width {
            self.width = width;
            // Drawn again at the new width.
            self.shown = None;
        }
    }
}

impl SeatHandler for Bar {
    fn seat_state(&mut self) -> &mut SeatState {
        &mut self.seat
    }
    fn new_seat(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat) {}
    fn new_capability(&mut self, _: &Connection, qh: &QueueHandle<Self>, seat: wl_seat::WlSeat, capability: Capability) {
        if capability == Capability::Pointer && self.pointer.is_none() {
            match self.seat.get_pointer(qh, &seat) {
                Ok(p) => self.pointer = Some(p),
                Err(e) => warn!(%e, "no pointer: the power button cannot be clicked"),
            }
        }
    }
    fn remove_capability(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat, capability: Capability) {
        if capability == Capability::Pointer {
            if let Some(p) = self.pointer.take() {
                p.release();
                self.pointer_said = false;
            }
        }
    }
    fn remove_seat(&mut self, _: &Connection, _: &QueueHandle<Self>, _: wl_seat::WlSeat) {}
}

impl PointerHandler for Bar {
    fn pointer_frame(&mut self, _: &Connection, qh: &QueueHandle<Self>, _: &wl_pointer::WlPointer, events: &[PointerEvent]) {
        for event in events {
            let PointerEventKind::Press { button: BTN_LEFT, .. } = event.kind else { continue };
            let (x, y) = event.position;
            if &event.surface == self.layer.wl_surface() {
                if x >= f64::from(self.width.saturating_sub(BUTTON_W)) {
                    self.toggle_menu(qh);
                } else if x < f64::from(BUTTON_W) {
                    self.toggle_launcher(qh);
                }
            } else if self.menu.as_ref().is_some_and(|m| &event.surface == m.layer.wl_surface()) {
                if let Some((_, action)) = usize::try_from((y / f64::from(ROW_H)) as i64).ok().and_then(|row| MENU_ROWS.get(row)) {
                    self.asked.push(*action);
                }
                self.toggle_menu(qh);
            } else if let Some(launcher) = self.launcher.as_ref().filter(|l| &event.surface == l.layer.wl_surface()) {
                let width = launcher.size.map_or(0, |s| s.0);
                if let Some(app) = tile_at(width, self.apps.len(), x, y).and_then(|i| self.apps.get(i)) {
                    info!(app = %app.name, service = %app.service, "starting");
                    if let Err(e) = crate::apps::start(app) {
                        warn!(app = %app.name, service = %app.service, "not started: {e}");
                    }
                }
                // A click anywhere in it closes it (an app started, or
                // none chosen).
                self.toggle_launcher(qh);
            }
        }
    }
}

crate::client_handlers!(Bar, [OutputState, SeatState]);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_battery_as_the_bar_shows_it() {
        use accord_power::{BatteryInfo, CapacityLevel, ChargeState, Health, PluggedType};
        let info = |capacity, status| BatteryInfo {
            present: true,
            capacity,
            status,
            health: Health::Good,
            plugged: PluggedType::None,
            voltage_uv: -1,
            current_ua: -1,
            temperature_dc: -1000,
            level: CapacityLevel::Normal,
            technology: String::new(),
            supply: "BAT0".into(),
        };
        // Without a font, the flash is a plus.
        assert_eq!(battery_text(&info(87, ChargeState::None), None), "87%");
        assert_eq!(battery_text(&info(87, ChargeState::Enable), None), "+87%");
        assert_eq!(battery_text(&info(-1, ChargeState::Enable), None), "+");
        assert_eq!(battery_text(&info(-1, ChargeState::Full), None), "?");
        // DejaVu Sans has the flash.
        let font = crate::font::load().expect("no font: install fonts-dejavu-core (rootfs/setup-host.sh)");
        let text = Text::new(font.1, TEXT_PX).unwrap();
        assert_eq!(battery_text(&info(5, ChargeState::Enable), Some(&text)), "\u{26a1}5%");
    }

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
