//! `/etc/power/powermgr.json`: the power modes' timeouts, the suspend
//! state, the battery's capacity levels and the thermal levels'
//! thresholds (OpenHarmony keeps these in `power_mode_config.xml`,
//! `battery_config.json` and `thermal_service_config.xml`; Accord keeps
//! one JSON file). Every key has a default; a missing file means the
//! defaults, a malformed one is an error naming the file and the field
//! (the service then runs on the defaults and says so), and a key Accord
//! does not know is warned about, never silently dropped.
//!
//! ```json
//! {
//!   "modes": {
//!     "600": {"display_off_ms": 30000, "dim_ms": 5000, "sleep_ms": 5000},
//!     "601": {"display_off_ms": 10000, "dim_ms": 2000, "sleep_ms": 2000}
//!   },
//!   "suspend_state": "auto",
//!   "battery": {"high": 80, "low": 20, "warning": 10, "critical": 5, "shutdown": 2, "poll_ms": 5000},
//!   "thermal": {"thresholds_mc": [25000, 40000, 45000, 50000, 55000, 60000, 70000], "hysteresis_mc": 2000, "poll_ms": 5000}
//! }
//! ```

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::policy::Timeouts;
use crate::{CapacityLevel, PowerMode, ThermalLevel};

/// The image's config file.
pub const DEFAULT_PATH: &str = "/etc/power/powermgr.json";
/// Longest timeout a mode may set, ms (a day).
pub const MAX_TIMEOUT_MS: i64 = 86_400_000;
/// Shortest display-off or sleep time, ms.
pub const MIN_TIMEOUT_MS: i64 = 100;

/// A mode's timeouts, in ms as the file has them (-1: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeTimes {
    pub display_off_ms: i64,
    pub dim_ms: i64,
    pub sleep_ms: i64,
}

impl ModeTimes {
    /// As the policy takes them.
    pub fn timeouts(&self) -> Timeouts {
        let opt = |ms: i64| if ms < 0 { None } else { Some(Duration::from_millis(ms as u64)) };
        Timeouts { display_off: opt(self.display_off_ms), dim: Duration::from_millis(self.dim_ms.max(0) as u64), sleep: opt(self.sleep_ms) }
    }
}

/// Capacity thresholds, percent: a capacity at or below `shutdown` is
/// SHUTDOWN, at or below `critical` CRITICAL, … above `high` HIGH, 100
/// FULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatteryLevels {
    pub high: i32,
    pub low: i32,
    pub warning: i32,
    pub critical: i32,
    pub shutdown: i32,
    pub poll: Duration,
}

impl BatteryLevels {
    /// The level of `capacity` percent (-1: UNKNOWN).
    pub fn level(&self, capacity: i32) -> CapacityLevel {
        match capacity {
            c if !(0..=100).contains(&c) => CapacityLevel::Unknown,
            100 => CapacityLevel::Full,
            c if c <= self.shutdown => CapacityLevel::Shutdown,
            c if c <= self.critical => CapacityLevel::Critical,
            c if c <= self.warning => CapacityLevel::Warning,
            c if c <= self.low => CapacityLevel::Low,
            c if c > self.high => CapacityLevel::High,
            _ => CapacityLevel::Normal,
        }
    }
}

/// Thermal thresholds: `thresholds_mc[i]` is where level `i + 1` (NORMAL
/// … ESCAPE) starts, rising; below the first is COOL. A level is left
/// downwards only `hysteresis_mc` below where it starts, so a zone at a
/// threshold does not flap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThermalLevels {
    pub thresholds_mc: [i64; 7],
    pub hysteresis_mc: i64,
    pub poll: Duration,
}

impl ThermalLevels {
    /// The level of `temp_mc`, given the zone was at `was`.
    pub fn level(&self, temp_mc: i64, was: ThermalLevel) -> ThermalLevel {
        let mut level = ThermalLevel::Cool;
        for (i, t) in self.thresholds_mc.iter().enumerate() {
            let l = ThermalLevel::ALL[i + 1];
            // Staying at (or above) a level the zone is at needs only
            // threshold - hysteresis.
            let need = if l <= was { t - self.hysteresis_mc } else { *t };
            if temp_mc >= need {
                level = l;
            }
        }
        level
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerConfig {
    pub modes: BTreeMap<u32, ModeTimes>,
    /// `auto` (`mem` if the kernel offers it, else `freeze`), or a state
    /// `/sys/power/state` lists.
    pub suspend_state: String,
    pub battery: BatteryLevels,
    pub thermal: ThermalLevels,
}

impl Default for PowerConfig {
    fn default() -> Self {
        let m = |off, dim, sleep| ModeTimes { display_off_ms: off, dim_ms: dim, sleep_ms: sleep };
        PowerConfig {
            modes: BTreeMap::from([(600, m(30_000, 5_000, 5_000)), (601, m(10_000, 2_000, 2_000)), (602, m(60_000, 5_000, 30_000)), (603, m(5_000, 0, 1_000))]),
            suspend_state: "auto".into(),
            battery: BatteryLevels { high: 80, low: 20, warning: 10, critical: 5, shutdown: 2, poll: Duration::from_secs(5) },
            thermal: ThermalLevels {
                thresholds_mc: [25_000, 40_000, 45_000, 50_000, 55_000, 60_000, 70_000],
                hysteresis_mc: 2_000,
                poll: Duration::from_secs(5),
            },
        }
    }
}

/// A config file that cannot be used, naming the file and the field.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {field}: {why}")]
pub struct ConfigError {
    pub file: String,
    pub field: String,
    pub why: String,
}

impl PowerConfig {
    /// The timeouts of `mode`.
    pub fn times(&self, mode: PowerMode) -> ModeTimes {
        self.modes.get(&mode.code()).copied().unwrap_or_else(|| PowerConfig::default().modes[&mode.code()])
    }

    /// Reads `path`; a missing file is the defaults. Returns the warnings
    /// (unknown keys) with the config.
    ///
    /// # Errors
    /// An unreadable or malformed file, or a value out of its range: the
    /// error names the file and field.
    pub fn load(path: &Path) -> Result<(PowerConfig, Vec<String>), ConfigError> {
        let file = path.display().to_string();
        let err = |field: &str, why: String| ConfigError { file: file.clone(), field: field.into(), why };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((PowerConfig::default(), vec![format!("{file}: not found; using the defaults")])),
            Err(e) => return Err(err("(file)", e.to_string())),
        };
        PowerConfig::parse(&text, &file)
    }

    /// Parses the file's text (`file` names it in errors).
    ///
    /// # Errors
    /// See [`PowerConfig::load`].
    pub fn parse(text: &str, file: &str) -> Result<(PowerConfig, Vec<String>), ConfigError> {
        let err = |field: &str, why: String| ConfigError { file: file.into(), field: field.into(), why };
        let v: Value = serde_json::from_str(text).map_err(|e| err("(syntax)", format!("line {}: {e}", e.line())))?;
        let top = v.as_object().ok_or_else(|| err("(top)", "not an object".into()))?;
        let mut cfg = PowerConfig::default();
        let mut warnings = Vec::new();
        let int = |v: &Value, field: &str, lo: i64, hi: i64| -> Result<i64, ConfigError> {
            let n = v.as_i64().ok_or_else(|| err(field, format!("{v} is not an integer")))?;
            if n < lo || n > hi {
                return Err(err(field, format!("{n} is outside {lo}..={hi}")));
            }
            Ok(n)
        };
        for (key, val) in top {
            match key.as_str() {
                "modes" => {
                    let modes = val.as_object().ok_or_else(|| err("modes", "not an object".into()))?;
                    for (code, m) in modes {
                        let field = format!("modes.{code}");
                        let n: u32 = code.parse().map_err(|_| err(&field, "not a mode number".into()))?;
                        if PowerMode::from_code(n).is_none() {
                            return Err(err(&field, "not a mode (600 normal, 601 power save, 602 performance, 603 extreme power save)".into()));
                        }
                        let o = m.as_object().ok_or_else(|| err(&field, "not an object".into()))?;
                        let mut t = cfg.times(PowerMode::from_code(n).unwrap_or(PowerMode::Normal));
                        for (k, x) in o {
                            let f = format!("{field}.{k}");
                            let timeout = |x: &Value| -> Result<i64, ConfigError> {
                                let n = int(x, &f, -1, MAX_TIMEOUT_MS)?;
                                if (0..MIN_TIMEOUT_MS).contains(&n) {
                                    return Err(err(&f, format!("{n} ms is shorter than {MIN_TIMEOUT_MS} ms (-1: never)")));
                                }
                                Ok(n)
                            };
                            match k.as_str() {
                                "display_off_ms" => t.display_off_ms = timeout(x)?,
                                "sleep_ms" => t.sleep_ms = timeout(x)?,
                                "dim_ms" => t.dim_ms = int(x, &f, 0, MAX_TIMEOUT_MS)?,
                                _ => warnings.push(format!("{file}: {f}: unknown key, ignored")),
                            }
                        }
                        cfg.modes.insert(n, t);
                    }
                }
                "suspend_state" => {
                    let s = val.as_str().ok_or_else(|| err("suspend_state", "not a string".into()))?;
                    if !matches!(s, "auto" | "freeze" | "standby" | "mem" | "disk") {
                        return Err(err("suspend_state", format!("{s:?} is not auto, freeze, standby, mem or disk")));
                    }
                    cfg.suspend_state = s.into();
                }
                "battery" => {
                    let o = val.as_object().ok_or_else(|| err("battery", "not an object".into()))?;
                    let b = &mut cfg.battery;
                    for (k, x) in o {
                        let f = format!("battery.{k}");
                        match k.as_str() {
                            "high" => b.high = int(x, &f, 0, 100)? as i32,
                            "low" => b.low = int(x, &f, 0, 100)? as i32,
                            "warning" => b.warning = int(x, &f, 0, 100)? as i32,
                            "critical" => b.critical = int(x, &f, 0, 100)? as i32,
                            "shutdown" => b.shutdown = int(x, &f, 0, 100)? as i32,
                            "poll_ms" => b.poll = Duration::from_millis(int(x, &f, 100, MAX_TIMEOUT_MS)? as u64),
                            _ => warnings.push(format!("{file}: {f}: unknown key, ignored")),
                        }
                    }
                    if !(b.shutdown <= b.critical && b.critical <= b.warning && b.warning <= b.low && b.low <= b.high) {
                        return Err(err("battery", "thresholds must rise: shutdown <= critical <= warning <= low <= high".into()));
                    }
                }
                "thermal" => {
                    let o = val.as_object().ok_or_else(|| err("thermal", "not an object".into()))?;
                    let t = &mut cfg.thermal;
                    for (k, x) in o {
                        let f = format!("thermal.{k}");
                        match k.as_str() {
                            "thresholds_mc" => {
                                let a =
                                    x.as_array().filter(|a| a.len() == 7).ok_or_else(|| err(&f, "not a list of 7 temperatures (NORMAL … ESCAPE)".into()))?;
                                for (i, y) in a.iter().enumerate() {
                                    t.thresholds_mc[i] = int(y, &format!("{f}[{i}]"), -100_000, 500_000)?;
                                }
                                if t.thresholds_mc.windows(2).any(|w| w[0] >= w[1]) {
                                    return Err(err(&f, "thresholds must rise".into()));
                                }
                            }
                            "hysteresis_mc" => t.hysteresis_mc = int(x, &f, 0, 50_000)?,
                            "poll_ms" => t.poll = Duration::from_millis(int(x, &f, 100, MAX_TIMEOUT_MS)? as u64),
                            _ => warnings.push(format!("{file}: {f}: unknown key, ignored")),
                        }
                    }
                }
                _ => warnings.push(format!("{file}: {key}: unknown key, ignored")),
            }
        }
        Ok((cfg, warnings))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_overrides_what_it_names_and_warns_of_what_it_does_not_know() {
        let (c, w) = PowerConfig::parse(r#"{"modes": {"601": {"display_off_ms": 2000, "x": 1}}, "suspend_state": "freeze", "zzz": 0}"#, "f").unwrap();
        assert_eq!(c.times(PowerMode::PowerSave), ModeTimes { display_off_ms: 2000, dim_ms: 2_000, sleep_ms: 2_000 });
        assert_eq!(c.times(PowerMode::Normal), PowerConfig::default().times(PowerMode::Normal));
        assert_eq!(c.suspend_state, "freeze");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("modes.601.x"), "{w:?}");
    }

    #[test]
    fn bad_values_name_the_field() {
        for (text, field) in [
            (r#"{"modes": {"604": {}}}"#, "modes.604"),
            (r#"{"modes": {"600": {"display_off_ms": 5}}}"#, "modes.600.display_off_ms"),
            (r#"{"modes": {"600": {"sleep_ms": "x"}}}"#, "modes.600.sleep_ms"),
            (r#"{"suspend_state": "deep"}"#, "suspend_state"),
            (r#"{"battery": {"low": 3}}"#, "battery"),
            (r#"{"thermal": {"thresholds_mc": [1,2,3]}}"#, "thermal.thresholds_mc"),
            ("{", "(syntax)"),
        ] {
            let e = PowerConfig::parse(text, "f.json").unwrap_err();
            assert_eq!(e.field, field, "{text}: {e}");
            assert!(e.to_string().starts_with("f.json: "), "{e}");
        }
    }

    #[test]
    fn capacity_levels() {
        let b = PowerConfig::default().battery;
        let l = |c| b.level(c);
        assert_eq!(
            [l(-1), l(0), l(2), l(3), l(5), l(10), l(20), l(21), l(80), l(81), l(99), l(100), l(101)],
            [
                CapacityLevel::Unknown,
                CapacityLevel::Shutdown,
                CapacityLevel::Shutdown,
                CapacityLevel::Critical,
                CapacityLevel::Critical,
                CapacityLevel::Warning,
                CapacityLevel::Low,
                CapacityLevel::Normal,
                CapacityLevel::Normal,
                CapacityLevel::High,
                CapacityLevel::High,
                CapacityLevel::Full,
                CapacityLevel::Unknown
            ]
        );
    }

    #[test]
    fn thermal_levels_rise_at_thresholds_and_fall_below_the_hysteresis() {
        let t = PowerConfig::default().thermal;
        assert_eq!(t.level(20_000, ThermalLevel::Cool), ThermalLevel::Cool);
        assert_eq!(t.level(25_000, ThermalLevel::Cool), ThermalLevel::Normal);
        assert_eq!(t.level(45_500, ThermalLevel::Normal), ThermalLevel::Hot);
        // At HOT, 44 °C stays HOT (threshold 45, hysteresis 2); 42.9 is WARM.
        assert_eq!(t.level(44_000, ThermalLevel::Hot), ThermalLevel::Hot);
        assert_eq!(t.level(42_900, ThermalLevel::Hot), ThermalLevel::Warm);
        assert_eq!(t.level(44_000, ThermalLevel::Normal), ThermalLevel::Warm);
        assert_eq!(t.level(90_000, ThermalLevel::Cool), ThermalLevel::Escape);
    }
}
