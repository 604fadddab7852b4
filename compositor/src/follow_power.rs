//! Screen power follows the power manager (SA 3301): its display state
//! OFF (or SUSPEND) turns the screen off, ON and DIM (the backlight, where
//! there is one, is the display power manager's) turn it on. The
//! following itself ([`accord_power::follow`]) subscribes through samgr
//! as any client does and heals when either side restarts.

use crate::{ScreenPower, ScreenPowerSender};
use accord_power::DisplayState;

fn screen_for(display: DisplayState) -> ScreenPower {
    match display {
        DisplayState::Off | DisplayState::Suspend => ScreenPower::Off,
        DisplayState::On | DisplayState::Dim => ScreenPower::On,
    }
}

/// Keeps the screen's power in step with the power manager until the
/// compositor (the receiving end of `screen`) is gone.
pub async fn follow(screen: ScreenPowerSender) {
    accord_power::follow::display_state(accord_safwk::samgr_socket(), "screen power", move |d| screen.send(screen_for(d)).is_ok()).await;
}
