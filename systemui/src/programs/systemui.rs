//! `systemui`: Accord's system UI (OpenHarmony's SystemUI), a Wayland
//! client of render_service. This crate owns the system's own surfaces:
//! for now the status bar ([`bar`]: the time, the battery when there is
//! one (SA 3302), and a power button whose menu suspends, restarts or
//! shuts down through the power manager (SA 3301); a wlr-layer-shell
//! surface along the top of the screen that keeps its height from app
//! windows). The system abilities are reached from [`services`].
//!
//! It connects to `$WAYLAND_DISPLAY` (init gives it
//! `/run/render_service/wayland-0`) and, when the compositor goes away
//! (restarted by init), connects again every [`RECONNECT`] until it is
//! back, so the bar is on screen again right after the compositor. The
//! compositor shows layer-shell only to the system UI's uid (render_service
//! `--system-ui-uid`); without it, `systemui` exits with an error saying
//! so. Text is drawn with DejaVu Sans from `/system/fonts` ([`font`]);
//! without a font the bar is drawn without text, and a warning says why.

use crate::{bar, draw, font, services};

use std::time::Duration;

use smithay_client_toolkit::reexports::client::Connection;
use tracing::{info, warn};

/// How often a compositor that is not there (yet, or again) is looked for.
pub const RECONNECT: Duration = Duration::from_millis(100);

pub fn main() -> anyhow::Result<()> {
    // OpenHarmony's SystemUI log domain.
    accord_hilog::init_tracing("systemui", 0xD002900);
    let text = match font::load() {
        Some((path, bytes)) => match draw::Text::new(bytes, bar::TEXT_PX) {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(path = %path.display(), %e, "the font does not load: the bar has no text");
                None
            }
        },
        None => {
            warn!(looked_in = ?font::FONT_PATHS, "no font found (ACCORD_FONT unset): the bar has no text");
            None
        }
    };
    // The battery and the power menu's actions, through samgr.
    let services = services::Services::start()?;
    let mut waiting = false;
    loop {
        match Connection::connect_to_env() {
            Ok(conn) => {
                info!("connected to the compositor");
                waiting = false;
                match bar::run(conn, text.as_ref(), &services) {
                    Ok(()) => return Ok(()),
                    Err(e @ bar::Error::NoLayerShell(_)) => return Err(e.into()),
                    Err(e) => warn!("{e}: connecting again"),
                }
            }
            Err(e) => {
                if !waiting {
                    info!(%e, "no compositor yet: looking every {RECONNECT:?}");
                    waiting = true;
                }
            }
        }
        std::thread::sleep(RECONNECT);
    }
}
