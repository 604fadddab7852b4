//! The display power manager (SA 3308, OpenHarmony's `DisplayPowerMgr`):
//! the screen's brightness on OpenHarmony's 0..=255 scale, written to the
//! kernel's backlight class (`<root>/<device>/brightness`, scaled to the
//! device's `max_brightness`) under a configurable root. A set level is
//! kept until set again; an override (`power-shell display -o`) replaces
//! it until restored (`-r`). The backlight follows the power manager's
//! display state ([`crate::follow`]): DIM shows a quarter of the level,
//! OFF and SUSPEND turn it to 0, ON brings the level back. A device
//! without a backlight (QEMU) says so (`NotPresent`) rather than pretend.
//!
//! The backlight's `brightness` file is root's: a board's ueventd config
//! gives it to the `powerctrl` group (`[sysfs]` line), as OpenHarmony's
//! vendors do.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use accord_safwk::Caller;

use crate::{BrightnessInfo, DisplayPowerMgr, DisplayState, PowerError, PERM_POWER_MANAGER};

/// The image's backlight class.
pub const DEFAULT_ROOT: &str = "/sys/class/backlight";
/// The brightness before anyone sets one (OpenHarmony's default, 102 of 255).
pub const DEFAULT_LEVEL: u32 = 102;
/// The top of OpenHarmony's brightness scale.
pub const MAX_LEVEL: u32 = 255;

#[derive(Debug, Clone, Copy)]
struct Levels {
    set: u32,
    overridden: Option<u32>,
    display: DisplayState,
}

impl Levels {
    /// The level the backlight shows: the one in force, dimmed or off
    /// with the display.
    fn effective(&self) -> u32 {
        let level = self.overridden.unwrap_or(self.set);
        match self.display {
            DisplayState::On => level,
            DisplayState::Dim => level.div_ceil(4),
            DisplayState::Off | DisplayState::Suspend => 0,
        }
    }
}

/// The display power manager: see the module doc.
pub struct DisplayPower {
    root: PathBuf,
    levels: Arc<Mutex<Levels>>,
}

/// The first backlight device under `root` (by name), with its
/// `max_brightness`.
fn device(root: &Path) -> Result<(PathBuf, u32), PowerError> {
    let none = || PowerError::NotPresent(format!("no backlight under {}", root.display()));
    let mut names: Vec<PathBuf> = std::fs::read_dir(root).map_err(|_| none())?.flatten().map(|e| e.path()).collect();
    names.sort();
    let dir = names.into_iter().next().ok_or_else(none)?;
    let max = std::fs::read_to_string(dir.join("max_brightness"))
        .map_err(|e| PowerError::Failed(format!("{}/max_brightness: {e}", dir.display())))?
        .trim()
        .parse::<u32>()
        .map_err(|e| PowerError::Failed(format!("{}/max_brightness: {e}", dir.display())))?;
    Ok((dir, max))
}

impl DisplayPower {
    /// The manager for the backlight class under `root`; nothing is
    /// written until a level is set.
    pub fn new(root: PathBuf) -> DisplayPower {
        match device(&root) {
            Ok((dir, max)) => tracing::info!("backlight {} (max_brightness {max})", dir.display()),
            Err(e) => tracing::info!("{e}: brightness cannot be set"),
        }
        DisplayPower { root, levels: Arc::new(Mutex::new(Levels { set: DEFAULT_LEVEL, overridden: None, display: DisplayState::On })) }
    }

    /// [`DisplayPower::new`], its backlight (when there is one at start)
    /// following the power manager reached through `samgr`. Call inside a
    /// tokio runtime.
    ///
    /// # Errors
    /// Not inside a runtime.
    pub fn start(root: PathBuf, samgr: PathBuf) -> Result<DisplayPower, String> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| format!("display power manager: {e}"))?;
        let p = DisplayPower::new(root);
        // Without a backlight there is nothing to follow with: no
        // subscription (it costs a connection and its buffers).
        if device(&p.root).is_err() {
            return Ok(p);
        }
        let (root, levels) = (p.root.clone(), p.levels.clone());
        rt.spawn(crate::follow::display_state(samgr, "the backlight", move |display| {
            follow(&root, &levels, display);
            true
        }));
        Ok(p)
    }

    /// The display state changed to `display`.
    pub fn display_changed(&self, display: DisplayState) {
        follow(&self.root, &self.levels, display);
    }

    /// Changes the levels with `change`, writing the new effective level
    /// first: on error nothing changes.
    fn change(&self, change: impl FnOnce(&mut Levels)) -> Result<(), PowerError> {
        let mut levels = accord_safwk::lock(&self.levels);
        let mut new = *levels;
        change(&mut new);
        write_level(&self.root, new.effective())?;
        *levels = new;
        Ok(())
    }

    fn check(caller: &Caller, level: Option<u32>) -> Result<(), PowerError> {
        if !caller.has_permission(PERM_POWER_MANAGER) {
            return Err(PowerError::PermissionDenied { uid: caller.uid(), permission: PERM_POWER_MANAGER.into() });
        }
        match level {
            Some(l) if l > MAX_LEVEL => Err(PowerError::InvalidArgument(format!("brightness {l} is above {MAX_LEVEL}"))),
            _ => Ok(()),
        }
    }
}

impl DisplayPowerMgr for DisplayPower {
    fn brightness(&self) -> BrightnessInfo {
        let levels = accord_safwk::lock(&self.levels);
        let level = levels.overridden.unwrap_or(levels.set);
        match device(&self.root) {
            Ok((dir, max)) => {
                let raw = std::fs::read_to_string(dir.join("brightness")).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0);
                let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                BrightnessInfo { device: name, level, overridden: levels.overridden.is_some(), raw, max_raw: max, detail: String::new() }
            }
            Err(e) => BrightnessInfo { device: String::new(), level, overridden: levels.overridden.is_some(), raw: 0, max_raw: 0, detail: e.to_string() },
        }
    }

    fn set_brightness(&self, caller: &Caller, level: u32) -> Result<(), PowerError> {
        Self::check(caller, Some(level))?;
        self.change(|l| l.set = level)
    }

    fn override_brightness(&self, caller: &Caller, level: u32) -> Result<(), PowerError> {
        Self::check(caller, Some(level))?;
        self.change(|l| l.overridden = Some(level))
    }

    fn restore_brightness(&self, caller: &Caller) -> Result<(), PowerError> {
        Self::check(caller, None)?;
        self.change(|l| l.overridden = None)
    }

    fn on_dump(&self, _args: &[String]) -> String {
        format!("display power manager (SA {}):\n{}", crate::DISPLAY_POWER_ID, crate::brightness_text(&self.brightness()))
    }
}

/// Writes `level` (0..=255) to the backlight under `root`, scaled.
fn write_level(root: &Path, level: u32) -> Result<(), PowerError> {
    let (dir, max) = device(root)?;
    let raw = (u64::from(level) * u64::from(max) + u64::from(MAX_LEVEL) / 2) / u64::from(MAX_LEVEL);
    std::fs::write(dir.join("brightness"), format!("{raw}\n")).map_err(|e| PowerError::Failed(format!("{}/brightness: {e}", dir.display())))
}

/// The display state is `now`: the backlight shows the new
/// effective level (nothing to do without a backlight; a write that fails
/// is logged).
fn follow(root: &Path, levels: &Mutex<Levels>, now: DisplayState) {
    let mut l = accord_safwk::lock(levels);
    l.display = now;
    match write_level(root, l.effective()) {
        Ok(()) | Err(PowerError::NotPresent(_)) => {}
        Err(e) => tracing::warn!("backlight not following the display state {now:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root_caller() -> Caller {
        Caller::new(accord_ipc::Identity { pid: 1, uid: 0, gid: 0 })
    }

    #[test]
    fn levels_are_scaled_overridden_and_restored() {
        let d = tempfile::tempdir().unwrap();
        let bl = d.path().join("panel");
        std::fs::create_dir(&bl).unwrap();
        std::fs::write(bl.join("max_brightness"), "1000\n").unwrap();
        std::fs::write(bl.join("brightness"), "0\n").unwrap();
        let raw = || std::fs::read_to_string(bl.join("brightness")).unwrap().trim().to_owned();
        let p = DisplayPower::new(d.path().into());
        let c = root_caller();
        p.set_brightness(&c, 255).unwrap();
        assert_eq!(raw(), "1000");
        p.override_brightness(&c, 51).unwrap();
        assert_eq!(raw(), "200");
        // A level set while overridden waits for the restore.
        p.set_brightness(&c, 128).unwrap();
        assert_eq!(raw(), "200");
        let info = p.brightness();
        assert_eq!((info.level, info.overridden, info.raw, info.max_raw, info.device.as_str()), (51, true, 200, 1000, "panel"));
        p.restore_brightness(&c).unwrap();
        assert_eq!(raw(), "502");
        assert!(matches!(p.set_brightness(&c, 256), Err(PowerError::InvalidArgument(_))));
        // The display state: DIM a quarter, OFF dark, a level set while
        // off shown when it is on again.
        p.display_changed(DisplayState::Dim);
        assert_eq!(raw(), "125");
        p.display_changed(DisplayState::Off);
        assert_eq!(raw(), "0");
        p.set_brightness(&c, 255).unwrap();
        assert_eq!(raw(), "0");
        p.display_changed(DisplayState::On);
        assert_eq!(raw(), "1000");
    }

    #[test]
    fn no_backlight_is_said_as_such() {
        let d = tempfile::tempdir().unwrap();
        let p = DisplayPower::new(d.path().join("none"));
        assert!(matches!(p.set_brightness(&root_caller(), 10), Err(PowerError::NotPresent(_))));
        assert!(p.brightness().detail.contains("no backlight"));
    }
}
