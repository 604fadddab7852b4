//! Screen power follows the power manager (SA 3301): its display state
//! OFF (or SUSPEND) turns the screen off, ON and DIM (the backlight, where
//! there is one, is the display power manager's) turn it on. The
//! following itself ([`accord_power::follow`]) subscribes through samgr
//! as any client does and heals when either side restarts.

use accord_power::DisplayState;
use tracing::warn;

use crate::{ScreenPower, ScreenPowerSender};

fn screen_for(display: DisplayState) -> ScreenPower {
    match display {
        DisplayState::Off | DisplayState::Suspend => ScreenPower::Off,
        DisplayState::On | DisplayState::Dim => ScreenPower::On,
    }
}

/// Starts a thread that keeps the screen's power in step with the power
/// manager until the compositor (the receiving end of `screen`) is gone.
///
/// # Errors
/// The thread could not be started.
pub fn spawn(screen: ScreenPowerSender) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("follow-power".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                warn!("screen power will not follow the power manager: no runtime: {e}");
                return;
            }
        };
        rt.block_on(accord_power::follow::display_state(accord_safwk::samgr_socket(), "screen power", move |d| screen.send(screen_for(d)).is_ok()));
    })
}
