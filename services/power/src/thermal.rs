//! The thermal manager (SA 3303): the kernel's `thermal` class
//! (`<root>/thermal_zone*/{type,temp}`, millidegrees Celsius) read under a
//! configurable root. Each zone's level comes from the config's thresholds
//! with hysteresis ([`crate::config::ThermalLevels`]); the device's level
//! is its hottest zone's. A machine without thermal zones (QEMU) says so
//! (`detail`) and stays at NORMAL.
//!
//! The zones are read every `thermal.poll_ms`; a level change goes to the
//! subscribers. At ESCAPE the power manager is asked (through samgr) to
//! shut down with the reason `thermal: <zone> at N C`, once per rise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use accord_safwk::typed::Listener;
use accord_safwk::Caller;

use crate::config::ThermalLevels;
use crate::{PowerError, ThermalInfo, ThermalLevel, ThermalListenerProxy, ThermalManager, Zone};
use accord_safwk::subscribers::Subscribers;

/// The image's `thermal` class.
pub const DEFAULT_ROOT: &str = "/sys/class/thermal";

/// Reads the zones under `root`; `was` holds each zone's previous level
/// (for the hysteresis) and is updated.
pub fn read(root: &Path, levels: &ThermalLevels, was: &mut BTreeMap<String, ThermalLevel>) -> ThermalInfo {
    let mut names: Vec<String> = match std::fs::read_dir(root) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with("thermal_zone")).collect(),
        Err(e) => return ThermalInfo { level: ThermalLevel::Normal, zones: Vec::new(), detail: format!("{}: {e}", root.display()) },
    };
    names.sort_by_key(|n| (n.len(), n.clone()));
    let mut zones = Vec::new();
    let mut unreadable = Vec::new();
    for name in names {
        let dir = root.join(&name);
        let temp = std::fs::read_to_string(dir.join("temp")).ok().and_then(|t| t.trim().parse::<i64>().ok());
        let Some(temp_mc) = temp else {
            // A zone whose sensor is off reads EAGAIN/ENODATA: left out.
            unreadable.push(name);
            continue;
        };
        let kind = std::fs::read_to_string(dir.join("type")).map(|t| t.trim().chars().take(32).collect()).unwrap_or_default();
        let prev = was.get(&name).copied().unwrap_or(ThermalLevel::Cool);
        let level = levels.level(temp_mc, prev);
        was.insert(name.clone(), level);
        zones.push(Zone { name, kind, temp_mc, level });
    }
    let detail = match (zones.is_empty(), unreadable.is_empty()) {
        (true, true) => "no thermal zones on this device".to_owned(),
        (_, false) => format!("unreadable: {}", unreadable.join(" ")),
        _ => String::new(),
    };
    let level = zones.iter().map(|z| z.level).max().unwrap_or(ThermalLevel::Normal);
    ThermalInfo { level, zones, detail }
}

/// The thermal manager: see the module doc.
pub struct Thermal {
    root: PathBuf,
    levels: ThermalLevels,
    subs: Arc<Subscribers<ThermalInfo>>,
    rt: tokio::runtime::Handle,
    was: Arc<Mutex<BTreeMap<String, ThermalLevel>>>,
}

impl Thermal {
    /// Starts reading `root` every `levels.poll`; `samgr` is the socket
    /// through which the power manager is asked to shut down at ESCAPE.
    /// Call inside a tokio runtime.
    ///
    /// # Errors
    /// Not inside a runtime.
    pub fn start(root: PathBuf, levels: ThermalLevels, samgr: PathBuf) -> Result<Thermal, String> {
        let rt = tokio::runtime::Handle::try_current().map_err(|e| format!("thermal manager: {e}"))?;
        let was = Arc::new(Mutex::new(BTreeMap::new()));
        let first = read(&root, &levels, &mut accord_safwk::lock(&was));
        tracing::info!(
            "thermal level {} over {} zones{}",
            first.level.name(),
            first.zones.len(),
            if first.detail.is_empty() { String::new() } else { format!(" ({})", first.detail) }
        );
        let t = Thermal { root, levels, subs: Arc::new(Subscribers::new("thermal listeners", crate::SUB_BOUNDS)), rt: rt.clone(), was };
        let (root, levels, subs, was) = (t.root.clone(), t.levels.clone(), t.subs.clone(), t.was.clone());
        rt.spawn(async move {
            let mut level = first.level;
            let mut shutdown = crate::Critical::default();
            loop {
                tokio::time::sleep(levels.poll).await;
                let now = read(&root, &levels, &mut accord_safwk::lock(&was));
                if now.level != level {
                    let hottest = now.zones.iter().max_by_key(|z| z.temp_mc);
                    tracing::info!(
                        "thermal level {} -> {}{}",
                        level.name(),
                        now.level.name(),
                        hottest.map(|z| format!(" ({} at {:.1} C)", z.name, z.temp_mc as f64 / 1000.0)).unwrap_or_default()
                    );
                    level = now.level;
                    subs.send(&now);
                }
                shutdown
                    .reading(level == ThermalLevel::Escape, &samgr, || {
                        let z = now.zones.iter().max_by_key(|z| z.temp_mc);
                        format!("thermal: {} at {:.0} C", z.map_or("?", |z| z.name.as_str()), z.map_or(0.0, |z| z.temp_mc as f64 / 1000.0))
                    })
                    .await;
            }
        });
        Ok(t)
    }
}

impl ThermalManager for Thermal {
    fn info(&self) -> ThermalInfo {
        read(&self.root, &self.levels, &mut accord_safwk::lock(&self.was))
    }

    fn subscribe(&self, caller: &Caller, listener: Listener<ThermalListenerProxy>) -> Result<u64, PowerError> {
        self.subs
            .add(&self.rt, caller, listener, ThermalListenerProxy::remote, |p, info, lost| async move { p.on_level(info, lost).await })
            .map_err(PowerError::from)
    }

    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, PowerError> {
        Ok(self.subs.remove(caller.uid(), id))
    }

    fn on_dump(&self, _args: &[String]) -> String {
        format!("thermal manager (SA {}): {} listeners\n{}", crate::THERMAL_ID, self.subs.len(), crate::thermal_text(&self.info()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zone(root: &Path, n: u32, kind: &str, temp: &str) {
        let d = root.join(format!("thermal_zone{n}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("type"), format!("{kind}\n")).unwrap();
        std::fs::write(d.join("temp"), temp).unwrap();
    }

    #[test]
    fn no_zones_is_said_and_normal() {
        let d = tempfile::tempdir().unwrap();
        let t = read(d.path(), &crate::config::PowerConfig::default().thermal, &mut BTreeMap::new());
        assert_eq!((t.level, t.zones.len(), t.detail.as_str()), (ThermalLevel::Normal, 0, "no thermal zones on this device"));
    }

    #[test]
    fn the_hottest_zone_sets_the_level() {
        let d = tempfile::tempdir().unwrap();
        zone(d.path(), 0, "cpu-thermal", "41000\n");
        zone(d.path(), 1, "gpu-thermal", "52500\n");
        zone(d.path(), 2, "broken", "");
        let mut was = BTreeMap::new();
        let t = read(d.path(), &crate::config::PowerConfig::default().thermal, &mut was);
        assert_eq!(t.level, ThermalLevel::Overheated);
        assert_eq!(t.zones.len(), 2);
        assert_eq!(t.zones[0].level, ThermalLevel::Warm);
        assert_eq!(t.detail, "unreadable: thermal_zone2");
        assert!(crate::thermal_text(&t).contains("gpu-thermal"));
    }
}
