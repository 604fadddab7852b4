//! The battery service (SA 3302): the kernel's `power_supply` class
//! (`<root>/<supply>/uevent`, `POWER_SUPPLY_*` lines) read under a
//! configurable root, so host tests run on a fake tree. The first supply of
//! type `Battery` that is present is the battery; `Mains`, `USB` and
//! `Wireless` supplies that are online say what the device is plugged
//! into. A machine without a battery (QEMU, a board on mains) reports
//! `present: false`, not invented values.
//!
//! The table is read every [`POLL`] (the config's `battery.poll_ms`);
//! a change of capacity, level, status, health or plug goes to the
//! subscribers. At the SHUTDOWN level while discharging, the power manager
//! is asked (through samgr, as any client) to shut down with the reason
//! `battery: capacity N%`, once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_safwk::typed::Listener;
use accord_safwk::Caller;

use crate::config::BatteryLevels;
use crate::{BatteryInfo, BatteryListenerProxy, BatteryService, CapacityLevel, ChargeState, Health, PluggedType, PowerError};
use accord_safwk::subscribers::Subscribers;

/// The default poll period (the config file sets it).
pub const POLL: Duration = Duration::from_secs(5);

/// The image's `power_supply` class.
pub const DEFAULT_ROOT: &str = "/sys/class/power_supply";

/// Reads the supplies under `root` (sorted by name) into a [`BatteryInfo`].
pub fn read(root: &Path, levels: &BatteryLevels) -> BatteryInfo {
    let mut info = BatteryInfo {
        present: false,
        capacity: -1,
        status: ChargeState::None,
        health: Health::Unknown,
        plugged: PluggedType::None,
        voltage_uv: -1,
        current_ua: -1,
        temperature_dc: -1000,
        level: CapacityLevel::Unknown,
        technology: String::new(),
        supply: String::new(),
    };
    let mut names: Vec<String> = match std::fs::read_dir(root) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => return info,
    };
    names.sort();
    for name in names {
        let Ok(text) = std::fs::read_to_string(root.join(&name).join("uevent")) else { continue };
        let kv = |key: &str| text.lines().find_map(|l| l.strip_prefix("POWER_SUPPLY_").and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix('=')));
        let num = |key: &str| kv(key).and_then(|v| v.trim().parse::<i64>().ok());
        match kv("TYPE").unwrap_or("") {
            "Battery" if !info.present && num("PRESENT").unwrap_or(1) != 0 => {
                info.present = true;
                info.supply = name.clone();
                info.capacity = num("CAPACITY").map_or(-1, |c| c.clamp(0, 100) as i32);
                info.status = match kv("STATUS").unwrap_or("") {
                    "Charging" => ChargeState::Enable,
                    "Not charging" => ChargeState::Disable,
                    "Full" => ChargeState::Full,
                    _ => ChargeState::None,
                };
                info.health = match kv("HEALTH").unwrap_or("") {
                    "Good" => Health::Good,
                    "Overheat" | "Hot" | "Warm" => Health::Overheat,
                    "Over voltage" => Health::Overvoltage,
                    "Cold" | "Cool" => Health::Cold,
                    "Dead" => Health::Dead,
                    _ => Health::Unknown,
                };
                info.voltage_uv = num("VOLTAGE_NOW").unwrap_or(-1);
                info.current_ua = num("CURRENT_NOW").unwrap_or(-1);
                info.temperature_dc = num("TEMP").map_or(-1000, |t| t as i32);
                info.technology = kv("TECHNOLOGY").unwrap_or("").chars().take(32).collect();
                info.level = levels.level(info.capacity);
            }
            t @ ("Mains" | "USB" | "USB_PD" | "USB_DCP" | "USB_CDP" | "Wireless") if num("ONLINE") == Some(1) && info.plugged == PluggedType::None => {
                info.plugged = match t {
                    "Mains" => PluggedType::Ac,
                    "Wireless" => PluggedType::Wireless,
                    _ => PluggedType::Usb,
                };
            }
            _ => {}
        }
    }
    info
}

/// What tells a subscriber: voltage, current and temperature move all the
/// time and are read at the call.
fn differs(a: &BatteryInfo, b: &BatteryInfo) -> bool {
    (a.present, a.capacity, a.level, a.status, a.health, a.plugged) != (b.present, b.capacity, b.level, b.status, b.health, b.plugged)
}

/// The battery service: see the module doc.
pub struct Battery {
    root: PathBuf,
    levels: BatteryLevels,
    subs: Arc<Subscribers<BatteryInfo>>,
    rt: tokio::runtime::Handle,
    last: Arc<Mutex<BatteryInfo>>,
}

impl Battery {
    /// Starts reading `root` every `levels.poll`; `samgr` is the socket
    /// through which the power manager is asked to shut down. Call inside
    /// a tokio runtime.
    ///
    /// # Errors
    /// Not inside a runtime.
    pub fn start(root: PathBuf, levels: BatteryLevels, samgr: PathBuf) -> Result<Battery, String> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| format!("battery service: {e}"))?;
        let first = read(&root, &levels);
        if first.present {
            tracing::info!("battery {}: {}% {}", first.supply, first.capacity, first.status.name());
        } else {
            tracing::info!("no battery under {} (plugged: {})", root.display(), first.plugged.name());
        }
        let b = Battery {
            root,
            levels,
            subs: Arc::new(Subscribers::new("battery listeners", crate::SUB_BOUNDS)),
            rt: rt.clone(),
            last: Arc::new(Mutex::new(first)),
        };
        let (root, levels, subs, last) = (b.root.clone(), b.levels, b.subs.clone(), b.last.clone());
        rt.spawn(async move {
            let mut shutdown = crate::Critical::default();
            loop {
                tokio::time::sleep(levels.poll).await;
                let now = read(&root, &levels);
                let changed = differs(&accord_safwk::lock(&last), &now);
                if changed {
                    tracing::info!("battery: {}% {} {} plugged {}", now.capacity, now.level.name(), now.status.name(), now.plugged.name());
                    *accord_safwk::lock(&last) = now.clone();
                    subs.send(&now);
                }
                let critical = now.present && now.level == CapacityLevel::Shutdown && now.status == ChargeState::None;
                shutdown.reading(critical, &samgr, || format!("battery: capacity {}%", now.capacity)).await;
            }
        });
        Ok(b)
    }
}

impl BatteryService for Battery {
    fn info(&self) -> BatteryInfo {
        read(&self.root, &self.levels)
    }

    fn subscribe(&self, caller: &Caller, listener: Listener<BatteryListenerProxy>) -> Result<u64, PowerError> {
        self.subs
            .add(&self.rt, caller, listener, BatteryListenerProxy::remote, |p, info, lost| async move { p.on_battery(info, lost).await })
            .map_err(PowerError::from)
    }

    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, PowerError> {
        Ok(self.subs.remove(caller.uid(), id))
    }

    fn on_dump(&self, _args: &[String]) -> String {
        format!("battery service (SA {}): {} listeners\n{}", crate::BATTERY_ID, self.subs.len(), crate::battery_text(&self.info()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn supply(root: &Path, name: &str, lines: &str) {
        std::fs::create_dir_all(root.join(name)).unwrap();
        std::fs::write(root.join(name).join("uevent"), lines).unwrap();
    }

    #[test]
    fn no_supplies_is_no_battery_and_nothing_invented() {
        let d = tempfile::tempdir().unwrap();
        let b = read(d.path(), &crate::config::PowerConfig::default().battery);
        assert!(!b.present);
        assert_eq!((b.capacity, b.voltage_uv, b.level, b.plugged), (-1, -1, CapacityLevel::Unknown, PluggedType::None));
        let b = read(Path::new("/nonexistent"), &crate::config::PowerConfig::default().battery);
        assert!(!b.present);
    }

    #[test]
    fn a_battery_and_a_mains_supply() {
        let d = tempfile::tempdir().unwrap();
        supply(d.path(), "AC", "POWER_SUPPLY_NAME=AC\nPOWER_SUPPLY_TYPE=Mains\nPOWER_SUPPLY_ONLINE=1\n");
        supply(
            d.path(),
            "BAT0",
            "POWER_SUPPLY_NAME=BAT0\nPOWER_SUPPLY_TYPE=Battery\nPOWER_SUPPLY_STATUS=Charging\nPOWER_SUPPLY_PRESENT=1\nPOWER_SUPPLY_TECHNOLOGY=Li-ion\nPOWER_SUPPLY_VOLTAGE_NOW=12000000\nPOWER_SUPPLY_CURRENT_NOW=1500000\nPOWER_SUPPLY_CAPACITY=9\nPOWER_SUPPLY_HEALTH=Good\nPOWER_SUPPLY_TEMP=312\n",
        );
        let b = read(d.path(), &crate::config::PowerConfig::default().battery);
        assert!(b.present);
        assert_eq!(b.supply, "BAT0");
        assert_eq!((b.capacity, b.level, b.status, b.health, b.plugged), (9, CapacityLevel::Warning, ChargeState::Enable, Health::Good, PluggedType::Ac));
        assert_eq!((b.voltage_uv, b.current_ua, b.temperature_dc, b.technology.as_str()), (12_000_000, 1_500_000, 312, "Li-ion"));
        assert!(crate::battery_text(&b).contains("capacity 9%  level WARNING"));
    }

    #[test]
    fn an_absent_battery_is_not_the_battery() {
        let d = tempfile::tempdir().unwrap();
        supply(d.path(), "BAT0", "POWER_SUPPLY_TYPE=Battery\nPOWER_SUPPLY_PRESENT=0\nPOWER_SUPPLY_CAPACITY=50\n");
        assert!(!read(d.path(), &crate::config::PowerConfig::default().battery).present);
    }
}
