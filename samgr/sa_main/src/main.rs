//! `sa_main <profile.json>`: runs the system abilities of one SA profile
//! (OpenHarmony's host process). Rust has no `dlopen` of SAs in a static
//! image, so the SAs this binary can host are linked in and picked by id
//! from the profile; a service with its own binary calls
//! [`accord_safwk::run_profile`] the same way.
//!
//! init starts it (the profile's `process` is an `ondemand` service whose
//! path is `sa_main <profile>`) when samgr asks; it exits when it holds no
//! SA any more (all unloaded when idle).
//!
//! Run as `samgr`, `hidumper`, `kv`, `storage`, `storage_daemon`,
//! `power-shell`, `snapshot_display`, `hilogd` or `hilog` (links in the
//! image) it is those
//! (and `datawriter`, linked by the system test's overlay only):
//! one static binary instead of several that are mostly the same zbus and
//! tokio (their processes share its pages).

use std::path::Path;

use accord_sa_main::demo::{self, Demo};
use accord_safwk::profile::Profile;
use accord_safwk::{Maker, Published, StartError};
use anyhow::{Context, Result};

/// Every SA this binary can host.
fn makers() -> Vec<(u32, Maker)> {
    vec![
        (demo::ID, Box::new(|| Ok(Published::remote(demo::DemoSa::default().into_remote())))),
        (
            accord_data::ID,
            Box::new(|| {
                use accord_data::KvDataService;
                let root = Path::new(accord_data::DEFAULT_ROOT);
                let kv = accord_data::KvService::new(root, &device_name())
                    .map_err(|e| -> StartError { format!("data service: cannot use {}: {e}", root.display()).into() })?;
                Ok(Published::remote(kv.into_remote()))
            }),
        ),
        (
            accord_storage::DAEMON_ID,
            Box::new(|| {
                use accord_storage::StorageDaemon;
                let d = accord_storage::daemon::Daemon::start(Default::default())?;
                Ok(Published::remote(d.into_remote()))
            }),
        ),
        (
            accord_storage::ID,
            Box::new(|| {
                use accord_storage::StorageManager;
                let m = accord_storage::manager::Manager::start(accord_safwk::samgr_socket())?;
                Ok(Published::remote(m.into_remote()))
            }),
        ),
        (
            accord_power::ID,
            Box::new(|| {
                use accord_power::PowerManager;
                let cfg = accord_power::power::Config { config: power_config(), ..Default::default() };
                Ok(Published::remote(accord_power::power::Power::start(cfg)?.into_remote()))
            }),
        ),
        (
            accord_power::BATTERY_ID,
            Box::new(|| {
                use accord_power::BatteryService;
                let root = accord_power::battery::DEFAULT_ROOT.into();
                let b = accord_power::battery::Battery::start(root, power_config().battery, accord_safwk::samgr_socket())?;
                Ok(Published::remote(b.into_remote()))
            }),
        ),
        (
            accord_power::DISPLAY_POWER_ID,
            Box::new(|| {
                use accord_power::DisplayPowerMgr;
                let d = accord_power::display::DisplayPower::start(accord_power::display::DEFAULT_ROOT.into(), accord_safwk::samgr_socket())?;
                Ok(Published::remote(d.into_remote()))
            }),
        ),
        (
            accord_power::THERMAL_ID,
            Box::new(|| {
                use accord_power::ThermalManager;
                let root = accord_power::thermal::DEFAULT_ROOT.into();
                let t = accord_power::thermal::Thermal::start(root, power_config().thermal, accord_safwk::samgr_socket())?;
                Ok(Published::remote(t.into_remote()))
            }),
        ),
    ]
}

/// `/etc/power/powermgr.json`, read once per process; what is wrong with
/// it is logged and the defaults used.
fn power_config() -> accord_power::config::PowerConfig {
    static CFG: std::sync::OnceLock<accord_power::config::PowerConfig> = std::sync::OnceLock::new();
    CFG.get_or_init(|| match accord_power::config::PowerConfig::load(Path::new(accord_power::config::DEFAULT_PATH)) {
        Ok((cfg, warnings)) => {
            for w in warnings {
                tracing::warn!("{w}");
            }
            cfg
        }
        Err(e) => {
            tracing::error!("{e}; using the defaults");
            accord_power::config::PowerConfig::default()
        }
    })
    .clone()
}

/// This device's name in the data service's entries (its hostname until
/// devices have ids of their own).
fn device_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "local".into())
}

fn main() -> Result<()> {
    // The image ships one binary for samgr, hidumper and sa_main (they
    // share nearly all their code): argv[0] picks.
    let args: Vec<String> = std::env::args().collect();
    match args.first().and_then(|a| a.rsplit('/').next()) {
        Some("samgr" | "hidumper") => return accord_samgr::cli::main(args),
        Some("kv") => return accord_data::cli::main(args),
        Some("storage") => return accord_storage::cli::main(args),
        Some("storage_daemon") => return accord_storage::cli::daemon_main(args),
        Some("power-shell") => return accord_power::cli::main(args),
        Some("snapshot_display") => return accord_display::cli::main(args),
        // The log daemon and its CLI: no runtime, no IPC framework; only
        // its own pages of this binary are touched, and std's are shared.
        Some("hilogd") => return accord_hilog::daemon::main(args),
        Some("hilog") => return accord_hilog::cli::main(args),
        // The power-cut test's writer: only the test overlay links this name.
        Some("datawriter") => return accord_datawriter::main(args),
        _ => {}
    }
    let path = args.get(1).context("usage: sa_main <profile.json>")?;
    let profile = Profile::load(Path::new(path))?;
    // Tagged with the process's name; the domain is Accord's convention for
    // SA hosts: 0xD000000 plus the first SA's id.
    let domain = 0xD00_0000 | profile.abilities.first().map(|a| a.id & 0xF_FFFF).unwrap_or(0);
    accord_hilog::init_tracing(&profile.process, domain);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(accord_safwk::run_profile(&profile, makers())).with_context(|| format!("process {}", profile.process))?;
    tracing::info!("process {}: no SA left, exiting", profile.process);
    Ok(())
}
