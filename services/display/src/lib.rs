//! Display: OpenHarmony's display manager (SA 4607), as far as this
//! crate goes: its typed interface, the types it speaks and
//! `snapshot_display` ([`cli`]). The SA itself is hosted by
//! `render_service`, which owns the screen (`compositor/src/display_manager.rs`);
//! clients reach it through samgr like any other SA.

pub mod cli;

use accord_safwk::typed::{Blob, Listener};
use accord_safwk::{interface, Caller};
use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// SA id of the display manager (OpenHarmony's `DISPLAY_MANAGER_SERVICE_SA_ID`).
pub const ID: u32 = 4607;

/// Display listeners one uid may hold (OpenHarmony's
/// `RegisterDisplayListener`); one more is refused with the bound named.
pub const MAX_SUBS_PER_UID: usize = 8;
/// Display listeners held in all by uids other than root and system.
pub const MAX_SUBS: usize = 64;
/// Changes queued for one listener before newer ones are dropped (and
/// counted in the next one's `lost`).
pub const MAX_PENDING: usize = 16;
/// The listeners' bounds, as [`accord_safwk::subscribers::Subscribers`]
/// takes them.
pub const SUB_BOUNDS: accord_safwk::subscribers::Bounds =
    accord_safwk::subscribers::Bounds { per_uid: MAX_SUBS_PER_UID, total: MAX_SUBS, pending: MAX_PENDING };

/// Taking a screenshot (OpenHarmony's `ohos.permission.CAPTURE_SCREEN`):
/// what is on the screen may be anyone's.
pub const PERM_CAPTURE_SCREEN: &str = "ohos.permission.CAPTURE_SCREEN";

/// Screen power as the display manager reports it (OpenHarmony's
/// `ScreenPowerState`, without a backlight to dim: DIM is shown as ON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum ScreenPower {
    On,
    Off,
}

/// One display (OpenHarmony's `DisplayInfo`, the fields a screen without
/// a panel driver has).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct DisplayInfo {
    /// The display's id (0: the first, the default display).
    pub id: u64,
    /// The connector's name (`Virtual-1`, `HDMI-A-1`), or `headless-1`.
    pub name: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Refresh rate in mHz.
    pub refresh_mhz: u32,
    /// Dots per inch from the physical size, 0 when the display does not
    /// say its size.
    pub dpi: u32,
    /// Rotation in degrees clockwise: 0, 90, 180 or 270.
    pub rotation: u32,
    /// Whether the screen is on.
    pub power: ScreenPower,
}

/// The display manager's errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum DisplayError {
    /// The caller lacks the permission named.
    #[error("uid {uid} lacks {permission}")]
    PermissionDenied { uid: u32, permission: String },
    /// No display has that id.
    #[error("no display {0}")]
    NoSuchDisplay(u64),
    /// The operation was tried and failed (the renderer, the encoder, a
    /// listener that cannot be reached).
    #[error("{0}")]
    Failed(String),
    /// A bound was reached (listeners per uid or in all), named.
    #[error("too many: {0}")]
    TooMany(String),
}

impl From<accord_safwk::subscribers::SubscribeError> for DisplayError {
    fn from(e: accord_safwk::subscribers::SubscribeError) -> Self {
        match e {
            accord_safwk::subscribers::SubscribeError::TooMany(what) => DisplayError::TooMany(what),
            accord_safwk::subscribers::SubscribeError::Failed(why) => DisplayError::Failed(why),
        }
    }
}

/// The display manager (SA [`ID`], OpenHarmony's `IDisplayManager`).
#[interface(name = "ohos.rosen.DisplayManager")]
pub trait DisplayManager {
    /// Every display, the default one first.
    fn displays(&self) -> Vec<DisplayInfo>;
    /// The screen of display `id` as a PNG image (8-bit RGB), the last
    /// frame drawn; black while the screen is off
    /// ([`PERM_CAPTURE_SCREEN`]).
    fn screenshot(&self, caller: &Caller, id: u64) -> Result<Blob, DisplayError>;
    /// Calls `listener` with a display's [`DisplayInfo`] each time it
    /// changes (its power, its mode), in order, until
    /// [`DisplayManager::unsubscribe`] or the listener's process goes
    /// (OpenHarmony's `RegisterDisplayListener` and `OnChange`). Returns
    /// the subscription's id.
    ///
    /// # Errors
    /// [`DisplayError::TooMany`] past [`MAX_SUBS_PER_UID`] for the uid or
    /// [`MAX_SUBS`] in all; [`DisplayError::Failed`] when the listener
    /// cannot be reached.
    fn subscribe(&self, caller: &Caller, listener: Listener<DisplayListenerProxy>) -> Result<u64, DisplayError>;
    /// Ends the caller's subscription `id`; `false` when it has none of
    /// that id.
    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, DisplayError>;
}

/// What a display listener is told (OpenHarmony's `IDisplayListener`).
#[interface(name = "ohos.rosen.DisplayListener")]
pub trait DisplayListener {
    /// `display` changed; `lost` changes were dropped before this one
    /// because the listener fell behind.
    fn on_change(&self, display: DisplayInfo, lost: u32);
}

/// `displays()` as `hidumper -s 4607` and `snapshot_display -l` print it.
pub fn displays_text(displays: &[DisplayInfo]) -> String {
    let mut s = String::new();
    for d in displays {
        s.push_str(&format!(
            "display {}: {} {}x{} @ {}.{:03} Hz, {} dpi, rotation {}, {}\n",
            d.id,
            d.name,
            d.width,
            d.height,
            d.refresh_mhz / 1000,
            d.refresh_mhz % 1000,
            d.dpi,
            d.rotation,
            match d.power {
                ScreenPower::On => "ON",
                ScreenPower::Off => "OFF",
            }
        ));
    }
    s
}
