//! Power: OpenHarmony's power manager (SA 3301), battery service (SA 3302)
//! and thermal manager (SA 3303), the `powermgr` family. This crate owns:
//!
//! - the power manager ([`power`]): the power states (AWAKE, DIM,
//!   INACTIVE, SLEEP, SHUTDOWN) and display states, driven by user activity
//!   and idle timers ([`policy`], a pure function), power modes 600–603 with
//!   their timeouts from a config file ([`config`]) and the current mode
//!   kept across reboots, running locks released when their holder's
//!   process dies, suspend through `/sys/power` ([`sleep`]), wake-up by
//!   input events ([`input`]), shutdown and reboot through init with a
//!   reason the next boot can read, shutdown callbacks by priority;
//! - the battery service ([`battery`]) and thermal manager ([`thermal`]):
//!   the kernel's `power_supply` and `thermal` classes read under a
//!   configurable sysfs root, capacity levels and thermal levels from
//!   thresholds, change notifications, and the orderly shutdown a critical
//!   level asks of the power manager (through samgr, as any client);
//! - the display power manager ([`display`], SA 3308): brightness on a
//!   backlight, set, overridden and restored;
//! - their typed interfaces (this file) and `power-shell` ([`cli`]).
//!
//! The three SAs run in one process (`powermgr`, as in OpenHarmony) but
//! reach each other only through samgr, as any other client would.

pub mod battery;
pub mod cli;
pub mod config;
pub mod display;
pub mod follow;
pub mod input;
pub mod policy;
pub mod power;
pub mod sleep;
pub mod thermal;

use accord_safwk::typed::Listener;
use accord_safwk::{interface, Caller};
use serde::{Deserialize, Serialize};
use zbus::zvariant::Type;

/// SA id of the power manager (OpenHarmony's `POWER_MANAGER_SERVICE_ID`).
pub const ID: u32 = 3301;
/// SA id of the battery service (OpenHarmony's `POWER_MANAGER_BATT_SERVICE_ID`).
pub const BATTERY_ID: u32 = 3302;
/// SA id of the display power manager (OpenHarmony's `DISPLAY_MANAGER_SERVICE_ID`
/// in its powermgr family: brightness).
pub const DISPLAY_POWER_ID: u32 = 3308;
/// SA id of the thermal manager (OpenHarmony's `POWER_MANAGER_THERMAL_SERVICE_ID`).
pub const THERMAL_ID: u32 = 3303;
/// The `powermgr` process's uid in the image.
pub const POWER_UID: u32 = 5528;

/// Changing the power state for others: `wakeup`, `suspend`, timeouts
/// (OpenHarmony's name).
pub const PERM_POWER_MANAGER: &str = "ohos.permission.POWER_MANAGER";
/// Rebooting and shutting down.
pub const PERM_REBOOT: &str = "ohos.permission.REBOOT";
/// Holding running locks.
pub const PERM_RUNNING_LOCK: &str = "ohos.permission.RUNNING_LOCK";
/// Changing the power mode.
pub const PERM_POWER_OPTIMIZATION: &str = "ohos.permission.POWER_OPTIMIZATION";

/// Most running locks one uid holds at once (root excepted).
pub const MAX_LOCKS_PER_UID: usize = 64;
/// Most running locks held at once by all uids but root and system (which
/// have their own place whatever the others hold).
pub const MAX_LOCKS: usize = 1024;
/// Most subscriptions (state, battery or thermal listeners, shutdown
/// callbacks) one uid holds at one SA.
pub const MAX_SUBS_PER_UID: usize = 8;
/// Most subscriptions at one SA for uids other than root and system.
pub const MAX_SUBS: usize = 64;
/// Notifications waiting for one listener before newer ones are dropped
/// (and counted in the next one's `lost`).
pub const MAX_PENDING: usize = 32;
/// Longest running-lock name, shutdown reason or wake-up reason, in bytes.
pub const MAX_NAME: usize = 128;

/// A power state (OpenHarmony's `PowerState`, the ones a device without a
/// doze mode goes through).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum PowerState {
    /// The display is on.
    Awake,
    /// The display is dimmed: the display-off time is near.
    Dim,
    /// The display is off; the system runs.
    Inactive,
    /// The system is suspended (or going to be).
    Sleep,
    /// Shutting down or rebooting.
    Shutdown,
}

/// A display state (OpenHarmony's `DisplayState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum DisplayState {
    Off,
    Dim,
    On,
    Suspend,
}

/// A power mode (OpenHarmony's `PowerMode`, with its numbers 600–603).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum PowerMode {
    Normal,
    PowerSave,
    Performance,
    ExtremePowerSave,
}

/// A running lock's type (OpenHarmony's `RunningLockType`). SCREEN keeps
/// the display on; every other type but PROXIMITY_SCREEN_CONTROL keeps the
/// system from suspending (BACKGROUND is the usual one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum LockType {
    Screen,
    Background,
    Phone,
    Notification,
    Audio,
    Sport,
    Navigation,
    Task,
    /// Turns the display off while something is near its proximity sensor:
    /// accepted, and logged as having no effect on a device without one.
    ProximityScreenControl,
}

/// A held running lock, as `power-shell lock` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct LockInfo {
    pub id: u64,
    pub name: String,
    pub kind: LockType,
    /// The holder's process and uid (kernel credentials, as samgr verified
    /// them).
    pub pid: i32,
    pub uid: u32,
    /// Milliseconds it has been held.
    pub held_ms: u64,
    /// Milliseconds until it lets go by itself; 0: held until unlocked or
    /// its holder exits.
    pub left_ms: u64,
}

/// What the power manager is doing, for `power-shell dump`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct PowerStatus {
    pub state: PowerState,
    pub display: DisplayState,
    pub mode: PowerMode,
    /// The display-off time in force, ms (-1: never).
    pub display_off_ms: i64,
    /// The dim time before display off, ms.
    pub dim_ms: i64,
    /// The time from display off to suspend, ms (-1: never).
    pub sleep_ms: i64,
    /// Whether `display_off_ms` is an override (`power-shell timeout -o`).
    pub overridden: bool,
    /// Milliseconds since the last user activity.
    pub idle_ms: u64,
    /// The last activity's reason (`input`, `refresh`, `wakeup:<reason>`, …).
    pub last_activity: String,
    /// What the last suspend attempt came to ("" if none yet).
    pub last_suspend: String,
    /// Suspends that returned (woken up) since the service started.
    pub suspends: u64,
    /// The state `/sys/power/state` is written with ("" if none is offered).
    pub suspend_state: String,
    /// Input devices watched for user activity.
    pub input_devices: u32,
    /// A suspend was asked (`suspend_device`) and has not happened: a
    /// running lock keeps the system awake (or the kernel refused it).
    pub suspend_asked: bool,
}

/// How the previous boot ended, as far as the power manager knows
/// (OpenHarmony's `GetShutdownReason`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ShutdownReason {
    /// `reboot`, `shutdown`, or "" when the previous boot did not end
    /// through the power manager (power lost, a crash, `reboot` typed at
    /// the console) or this is the first boot.
    pub kind: String,
    /// The reason its caller gave.
    pub reason: String,
    /// The caller's uid.
    pub uid: u32,
    /// When, in ms since the Unix epoch.
    pub unix_ms: u64,
}

/// A shutdown callback's priority (OpenHarmony's `ShutdownPriority`):
/// HIGH ones run first, then DEFAULT, then LOW, each group with its own
/// deadline ([`power::CALLBACK_DEADLINE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Type)]
pub enum ShutdownPriority {
    High,
    Default,
    Low,
}

/// The power SAs' errors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PowerError {
    /// The caller lacks the permission named.
    #[error("uid {uid} lacks {permission}")]
    PermissionDenied { uid: u32, permission: String },
    /// An argument out of its range, named.
    #[error("{0}")]
    InvalidArgument(String),
    /// A bound reached (locks, subscriptions), named.
    #[error("too many: {0}")]
    TooMany(String),
    /// The operation was tried and failed: what the kernel, init or a file
    /// said.
    #[error("{0}")]
    Failed(String),
    /// There is no such device here (no battery, no thermal zone), said as
    /// such rather than invented.
    #[error("{0}")]
    NotPresent(String),
}

impl From<accord_safwk::subscribers::SubscribeError> for PowerError {
    fn from(e: accord_safwk::subscribers::SubscribeError) -> Self {
        match e {
            accord_safwk::subscribers::SubscribeError::TooMany(m) => PowerError::TooMany(m),
            accord_safwk::subscribers::SubscribeError::Failed(m) => PowerError::Failed(m),
        }
    }
}

/// The bounds of every subscriber table of the power SAs.
pub(crate) const SUB_BOUNDS: accord_safwk::subscribers::Bounds =
    accord_safwk::subscribers::Bounds { per_uid: MAX_SUBS_PER_UID, total: MAX_SUBS, pending: MAX_PENDING };

/// A critical condition (the battery's SHUTDOWN level while discharging,
/// the ESCAPE thermal level) and whether the power manager has been asked
/// to shut down for this episode: once it accepted, not again until the
/// condition ended; a refusal is asked again at the next reading.
#[derive(Default)]
pub(crate) struct Critical {
    asked: bool,
}

impl Critical {
    /// One reading: `reason` is called only when the power manager is to
    /// be asked, through samgr at `socket`.
    pub(crate) async fn reading(&mut self, critical: bool, socket: &std::path::Path, reason: impl FnOnce() -> String) {
        if !critical {
            self.asked = false;
            return;
        }
        if self.asked {
            return;
        }
        let reason = reason();
        tracing::error!("{reason}: asking the power manager to shut down");
        match ask_shutdown(socket, &reason).await {
            Ok(()) => self.asked = true,
            Err(e) => tracing::error!("the power manager did not shut down ({e}); asking again at the next reading"),
        }
    }
}

/// Asks the power manager, through samgr at `socket`, to shut down with
/// `reason`.
async fn ask_shutdown(socket: &std::path::Path, reason: &str) -> Result<(), String> {
    let samgr = accord_safwk::Samgr::connect(socket).await.map_err(|e| format!("samgr: {e}"))?;
    let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.map_err(|e| format!("the power manager (SA {}): {e}", ID))?;
    pm.shutdown(reason).await.map_err(|e| e.to_string())
}

/// Checks `permission` for `caller`.
pub(crate) fn need(caller: &Caller, permission: &str) -> Result<(), PowerError> {
    if caller.has_permission(permission) {
        Ok(())
    } else {
        Err(PowerError::PermissionDenied { uid: caller.uid(), permission: permission.into() })
    }
}

/// Checks a name or reason: 1..=[`MAX_NAME`] bytes of printable ASCII
/// (it goes in logs, the dump and a file).
pub(crate) fn check_name(what: &str, s: &str, empty_ok: bool) -> Result<(), PowerError> {
    if s.len() > MAX_NAME || (!empty_ok && s.is_empty()) || !s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(PowerError::InvalidArgument(format!("{what} must be {}..={MAX_NAME} printable ASCII bytes", if empty_ok { 0 } else { 1 })));
    }
    Ok(())
}

/// The power manager (SA [`ID`], OpenHarmony's `IPowerMgr`). A method
/// that changes an input of the state machine (activity, wake-up, suspend,
/// mode, timeout, locks) returns after the new state was taken: `state()`
/// right after it reads it.
#[interface(name = "ohos.powermgr.PowerManager")]
pub trait PowerManager {
    /// The power state now.
    fn state(&self) -> PowerState;
    /// Everything `power-shell dump` prints but the locks.
    fn status(&self) -> PowerStatus;
    /// Whether the display is on (ON or DIM).
    fn is_screen_on(&self) -> bool;
    /// User activity (OpenHarmony's `RefreshActivity`): the idle timers
    /// start again. Any process may (the choice; OpenHarmony gates
    /// it): it does not wake a display that is off (that is
    /// `wakeup_device`), so it can only keep one that is on from dimming.
    fn refresh_activity(&self, caller: &Caller);
    /// Turns the display on and counts as activity ([`PERM_POWER_MANAGER`]).
    fn wakeup_device(&self, caller: &Caller, reason: &str) -> Result<(), PowerError>;
    /// Turns the display off and suspends the system as soon as no running
    /// lock keeps it awake ([`PERM_POWER_MANAGER`]): asked while a lock is
    /// held, the suspend waits for its release (`status().suspend_asked`).
    /// Returns once that is under way; the state callbacks tell how it
    /// goes. Activity or a wake-up cancels it.
    fn suspend_device(&self, caller: &Caller, reason: &str) -> Result<(), PowerError>;
    /// The power mode now.
    fn mode(&self) -> PowerMode;
    /// Sets the power mode ([`PERM_POWER_OPTIMIZATION`]); kept across
    /// reboots (written before this returns). At most
    /// [`power::MODE_CHANGES_PER_SECOND`] changes a second per uid (root
    /// excepted; each is an fsync'd write); refused once a shutdown is
    /// under way.
    fn set_mode(&self, caller: &Caller, mode: PowerMode) -> Result<(), PowerError>;
    /// Takes a running lock ([`PERM_RUNNING_LOCK`]); `timeout_ms` 0: until
    /// unlocked or the holder's process exits. Returns its id.
    fn lock(&self, caller: &Caller, name: &str, kind: LockType, timeout_ms: u64) -> Result<u64, PowerError>;
    /// Lets go of a lock the caller's uid holds; whether it was held.
    fn unlock(&self, caller: &Caller, id: u64) -> Result<bool, PowerError>;
    /// Whether a lock of that type is held.
    fn is_used(&self, kind: LockType) -> bool;
    /// Every held lock ([`PERM_POWER_MANAGER`], or the caller's own).
    fn locks(&self, caller: &Caller) -> Vec<LockInfo>;
    /// Sets the display-off time to `display_off_ms` until restored,
    /// whatever the mode (`power-shell timeout -o`; [`PERM_POWER_MANAGER`]).
    fn override_timeout(&self, caller: &Caller, display_off_ms: i64) -> Result<(), PowerError>;
    /// Back to the mode's display-off time (`power-shell timeout -r`).
    fn restore_timeout(&self, caller: &Caller) -> Result<(), PowerError>;
    /// Runs the shutdown callbacks, records `reason` and asks init to
    /// reboot ([`PERM_REBOOT`]).
    fn reboot(&self, caller: &Caller, reason: &str) -> Result<(), PowerError>;
    /// The same, powering off.
    fn shutdown(&self, caller: &Caller, reason: &str) -> Result<(), PowerError>;
    /// How the previous boot ended.
    fn shutdown_reason(&self) -> ShutdownReason;
    /// Calls `listener` on every state, mode and running-lock change until
    /// `unsubscribe` or its process goes; [`MAX_SUBS_PER_UID`] per uid.
    fn subscribe(&self, caller: &Caller, listener: Listener<PowerListenerProxy>) -> Result<u64, PowerError>;
    /// Ends a subscription or shutdown callback of the caller's uid.
    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, PowerError>;
    /// Calls `callback` before a shutdown or reboot, by `priority`
    /// ([`PERM_REBOOT`]: only system services that must save something);
    /// [`MAX_SUBS_PER_UID`] per uid, [`MAX_SUBS`] in all but root and
    /// system; gone with `unsubscribe` or its process.
    fn add_shutdown_callback(&self, caller: &Caller, callback: Listener<ShutdownCallbackProxy>, priority: ShutdownPriority) -> Result<u64, PowerError>;
}

/// What a power subscriber implements (OpenHarmony's power state, mode and
/// running-lock callbacks). `lost`: newer notifications were dropped
/// because this listener fell behind; read the state again.
#[interface(name = "ohos.powermgr.PowerListener")]
pub trait PowerListener {
    fn on_state(&self, state: PowerState, display: DisplayState, lost: u32);
    fn on_mode(&self, mode: PowerMode, lost: u32);
    /// `held`: taken (true) or let go (false).
    fn on_lock(&self, lock: LockInfo, held: bool, lost: u32);
}

/// A shutdown callback (OpenHarmony's `ISyncShutdownCallback`): returns
/// when what must be saved is saved, within the deadline.
#[interface(name = "ohos.powermgr.ShutdownCallback")]
pub trait ShutdownCallback {
    fn on_shutdown(&self, reboot: bool, reason: String);
}

/// A battery's charging state (OpenHarmony's `BatteryChargeState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum ChargeState {
    /// Discharging.
    None,
    /// Charging.
    Enable,
    /// Plugged in, not charging.
    Disable,
    Full,
}

/// A battery's health (OpenHarmony's `BatteryHealthState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum Health {
    Unknown,
    Good,
    Overheat,
    Overvoltage,
    Cold,
    Dead,
}

/// What the device is plugged into (OpenHarmony's `BatteryPluggedType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Type)]
pub enum PluggedType {
    None,
    Ac,
    Usb,
    Wireless,
}

/// A battery's capacity level (OpenHarmony's `BatteryCapacityLevel`), from
/// the thresholds of the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Type)]
pub enum CapacityLevel {
    Unknown,
    Shutdown,
    Critical,
    Warning,
    Low,
    Normal,
    High,
    Full,
}

/// The battery and supply as the kernel reports them (OpenHarmony's
/// `BatteryInfo`). Fields the kernel does not report are `None`-like:
/// -1 (capacity, voltage, current, temperature) and `Unknown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct BatteryInfo {
    /// Whether this device has a battery: `false` on QEMU or a board on
    /// mains, and then only `plugged` means anything.
    pub present: bool,
    /// Percent, 0–100, or -1.
    pub capacity: i32,
    pub status: ChargeState,
    pub health: Health,
    pub plugged: PluggedType,
    /// Microvolts, or -1.
    pub voltage_uv: i64,
    /// Microamperes (negative: discharging, as the kernel signs it), or -1
    /// when not reported.
    pub current_ua: i64,
    /// Tenths of a degree Celsius, or -1000 when not reported.
    pub temperature_dc: i32,
    pub level: CapacityLevel,
    /// `Li-ion`, … ("" when not reported).
    pub technology: String,
    /// The `power_supply` entry read (`BAT0`), "" when none.
    pub supply: String,
}

/// The battery service (SA [`BATTERY_ID`]).
#[interface(name = "ohos.powermgr.BatteryService")]
pub trait BatteryService {
    /// The battery and supply now (read at the call).
    fn info(&self) -> BatteryInfo;
    /// Calls `listener` with each change of capacity, level, status,
    /// health or plug (the supplies are read every `battery.poll_ms` of the
    /// config, [`battery::POLL`] by default) until `unsubscribe` or its
    /// process goes.
    fn subscribe(&self, caller: &Caller, listener: Listener<BatteryListenerProxy>) -> Result<u64, PowerError>;
    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, PowerError>;
}

/// What a battery subscriber implements (OpenHarmony's common event
/// `BATTERY_CHANGED`).
#[interface(name = "ohos.powermgr.BatteryListener")]
pub trait BatteryListener {
    fn on_battery(&self, info: BatteryInfo, lost: u32);
}

/// OpenHarmony's thermal levels, from the zones' temperatures and the
/// config file's thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Type)]
pub enum ThermalLevel {
    Cool,
    Normal,
    Warm,
    Hot,
    Overheated,
    Warning,
    Emergency,
    /// Shut down now: the thermal manager asks the power manager to.
    Escape,
}

/// One thermal zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct Zone {
    /// `thermal_zone0`.
    pub name: String,
    /// The zone's `type` (`cpu-thermal`, `x86_pkg_temp`, …).
    pub kind: String,
    /// Millidegrees Celsius.
    pub temp_mc: i64,
    pub level: ThermalLevel,
}

/// The thermal picture: the device's level is its hottest zone's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct ThermalInfo {
    pub level: ThermalLevel,
    /// Every zone read; empty on a machine without any (QEMU), and then
    /// `level` is NORMAL and `detail` says so.
    pub zones: Vec<Zone>,
    pub detail: String,
}

/// The thermal manager (SA [`THERMAL_ID`]).
#[interface(name = "ohos.powermgr.ThermalManager")]
pub trait ThermalManager {
    /// The zones and the level now (read at the call).
    fn info(&self) -> ThermalInfo;
    /// Calls `listener` with each change of the level until `unsubscribe`
    /// or its process goes.
    fn subscribe(&self, caller: &Caller, listener: Listener<ThermalListenerProxy>) -> Result<u64, PowerError>;
    fn unsubscribe(&self, caller: &Caller, id: u64) -> Result<bool, PowerError>;
}

/// What a thermal subscriber implements (OpenHarmony's thermal level
/// callback).
#[interface(name = "ohos.powermgr.ThermalListener")]
pub trait ThermalListener {
    fn on_level(&self, info: ThermalInfo, lost: u32);
}

/// The screen's brightness, for `power-shell display`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Type)]
pub struct BrightnessInfo {
    /// The backlight device (`/sys/class/backlight/<device>`), "" when none.
    pub device: String,
    /// The level in force, 0..=255 (OpenHarmony's scale).
    pub level: u32,
    /// Whether an override is in force (until restored).
    pub overridden: bool,
    /// The device's own value and maximum (0 without a device).
    pub raw: u32,
    pub max_raw: u32,
    /// Why there is no device, "" when there is one.
    pub detail: String,
}

/// The display power manager (SA [`DISPLAY_POWER_ID`], OpenHarmony's
/// `IDisplayPowerMgr`, its brightness part).
#[interface(name = "ohos.powermgr.DisplayPowerMgr")]
pub trait DisplayPowerMgr {
    /// The brightness now.
    fn brightness(&self) -> BrightnessInfo;
    /// Sets the brightness, 0..=255 ([`PERM_POWER_MANAGER`]); under an
    /// override it takes effect at the restore.
    fn set_brightness(&self, caller: &Caller, level: u32) -> Result<(), PowerError>;
    /// Overrides the brightness until restored (`power-shell display -o`).
    fn override_brightness(&self, caller: &Caller, level: u32) -> Result<(), PowerError>;
    /// Back to the set brightness (`power-shell display -r`).
    fn restore_brightness(&self, caller: &Caller) -> Result<(), PowerError>;
}

/// `brightness()` as `power-shell display` prints it.
pub fn brightness_text(b: &BrightnessInfo) -> String {
    if b.device.is_empty() {
        return format!("brightness: {} of 255 (not shown: {})\n", b.level, b.detail);
    }
    format!("brightness: {} of 255{} ({}: {} of {})\n", b.level, if b.overridden { ", overridden" } else { "" }, b.device, b.raw, b.max_raw)
}

impl PowerState {
    /// OpenHarmony's spelling.
    pub fn name(self) -> &'static str {
        match self {
            PowerState::Awake => "AWAKE",
            PowerState::Dim => "DIM",
            PowerState::Inactive => "INACTIVE",
            PowerState::Sleep => "SLEEP",
            PowerState::Shutdown => "SHUTDOWN",
        }
    }
}

impl DisplayState {
    pub fn name(self) -> &'static str {
        match self {
            DisplayState::Off => "OFF",
            DisplayState::Dim => "DIM",
            DisplayState::On => "ON",
            DisplayState::Suspend => "SUSPEND",
        }
    }
}

impl PowerMode {
    /// Every mode.
    pub const ALL: [PowerMode; 4] = [PowerMode::Normal, PowerMode::PowerSave, PowerMode::Performance, PowerMode::ExtremePowerSave];

    /// OpenHarmony's number (600–603).
    pub fn code(self) -> u32 {
        match self {
            PowerMode::Normal => 600,
            PowerMode::PowerSave => 601,
            PowerMode::Performance => 602,
            PowerMode::ExtremePowerSave => 603,
        }
    }

    pub fn from_code(code: u32) -> Option<PowerMode> {
        PowerMode::ALL.into_iter().find(|m| m.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            PowerMode::Normal => "NORMAL_MODE",
            PowerMode::PowerSave => "POWER_SAVE_MODE",
            PowerMode::Performance => "PERFORMANCE_MODE",
            PowerMode::ExtremePowerSave => "EXTREME_POWER_SAVE_MODE",
        }
    }
}

impl LockType {
    pub const ALL: [LockType; 9] = [
        LockType::Screen,
        LockType::Background,
        LockType::Phone,
        LockType::Notification,
        LockType::Audio,
        LockType::Sport,
        LockType::Navigation,
        LockType::Task,
        LockType::ProximityScreenControl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LockType::Screen => "SCREEN",
            LockType::Background => "BACKGROUND",
            LockType::Phone => "PHONE",
            LockType::Notification => "NOTIFICATION",
            LockType::Audio => "AUDIO",
            LockType::Sport => "SPORT",
            LockType::Navigation => "NAVIGATION",
            LockType::Task => "TASK",
            LockType::ProximityScreenControl => "PROXIMITY_SCREEN_CONTROL",
        }
    }

    /// Parses OpenHarmony's spelling, any case.
    pub fn parse(s: &str) -> Option<LockType> {
        LockType::ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s))
    }

    /// Keeps the display on.
    pub fn keeps_screen(self) -> bool {
        self == LockType::Screen
    }

    /// Keeps the system from suspending.
    pub fn keeps_awake(self) -> bool {
        !matches!(self, LockType::Screen | LockType::ProximityScreenControl)
    }
}

impl ChargeState {
    pub fn name(self) -> &'static str {
        match self {
            ChargeState::None => "NONE",
            ChargeState::Enable => "ENABLE",
            ChargeState::Disable => "DISABLE",
            ChargeState::Full => "FULL",
        }
    }
}

impl Health {
    pub fn name(self) -> &'static str {
        match self {
            Health::Unknown => "UNKNOWN",
            Health::Good => "GOOD",
            Health::Overheat => "OVERHEAT",
            Health::Overvoltage => "OVERVOLTAGE",
            Health::Cold => "COLD",
            Health::Dead => "DEAD",
        }
    }
}

impl PluggedType {
    pub fn name(self) -> &'static str {
        match self {
            PluggedType::None => "NONE",
            PluggedType::Ac => "AC",
            PluggedType::Usb => "USB",
            PluggedType::Wireless => "WIRELESS",
        }
    }
}

impl CapacityLevel {
    pub fn name(self) -> &'static str {
        match self {
            CapacityLevel::Unknown => "UNKNOWN",
            CapacityLevel::Shutdown => "SHUTDOWN",
            CapacityLevel::Critical => "CRITICAL",
            CapacityLevel::Warning => "WARNING",
            CapacityLevel::Low => "LOW",
            CapacityLevel::Normal => "NORMAL",
            CapacityLevel::High => "HIGH",
            CapacityLevel::Full => "FULL",
        }
    }
}

impl ThermalLevel {
    pub const ALL: [ThermalLevel; 8] = [
        ThermalLevel::Cool,
        ThermalLevel::Normal,
        ThermalLevel::Warm,
        ThermalLevel::Hot,
        ThermalLevel::Overheated,
        ThermalLevel::Warning,
        ThermalLevel::Emergency,
        ThermalLevel::Escape,
    ];

    pub fn name(self) -> &'static str {
        match self {
            ThermalLevel::Cool => "COOL",
            ThermalLevel::Normal => "NORMAL",
            ThermalLevel::Warm => "WARM",
            ThermalLevel::Hot => "HOT",
            ThermalLevel::Overheated => "OVERHEATED",
            ThermalLevel::Warning => "WARNING",
            ThermalLevel::Emergency => "EMERGENCY",
            ThermalLevel::Escape => "ESCAPE",
        }
    }
}

/// The battery's lines of `hidumper -s 3302` and `power-shell battery`.
pub fn battery_text(b: &BatteryInfo) -> String {
    if !b.present {
        return format!("battery: none on this device (plugged: {})\n", b.plugged.name());
    }
    let opt = |v: i64, unit: &str, div: f64| if v == -1 { "-".to_owned() } else { format!("{:.2}{unit}", v as f64 / div) };
    format!(
        "battery {}: capacity {}%  level {}  status {}  health {}  plugged {}\n  voltage {}  current {}  temperature {}  technology {}\n",
        b.supply,
        b.capacity,
        b.level.name(),
        b.status.name(),
        b.health.name(),
        b.plugged.name(),
        opt(b.voltage_uv, "V", 1e6),
        opt(b.current_ua, "A", 1e6),
        if b.temperature_dc == -1000 { "-".to_owned() } else { format!("{:.1}C", b.temperature_dc as f64 / 10.0) },
        if b.technology.is_empty() { "-" } else { &b.technology },
    )
}

/// The thermal lines of `hidumper -s 3303` and `power-shell thermal`.
pub fn thermal_text(t: &ThermalInfo) -> String {
    let mut out = format!("thermal level: {}{}\n", t.level.name(), if t.detail.is_empty() { String::new() } else { format!(" ({})", t.detail) });
    for z in &t.zones {
        out.push_str(&format!("  {:<16} {:<20} {:>8.1}C  {}\n", z.name, z.kind, z.temp_mc as f64 / 1000.0, z.level.name()));
    }
    out
}
