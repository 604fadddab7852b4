//! The power manager, battery and thermal SAs over the real SDK (samgr,
//! hosts, typed proxies, listeners) on fake sysfs trees: the idle state
//! sequence with and without locks, a refused suspend not retried, a lock
//! let go when its holder's process dies, the mode kept across a restart,
//! shutdown callbacks by priority with their deadline and the reason the
//! next start reads, the bounds and permissions as other uids, and a
//! critical battery or thermal level asking for a shutdown.

mod common;

use common::{as_uid, config, pm, quick, sa_err, samgr, write, DEADLINE};

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_power::config::PowerConfig;
use accord_power::power::Power;
use accord_power::{
    BatteryListener, BatteryService, BatteryServiceProxy, DisplayState, LockInfo, LockType, PowerError, PowerListener, PowerManager, PowerManagerProxy,
    PowerMode, PowerState, ShutdownCallback, ShutdownPriority, ThermalLevel, ThermalListener, ThermalManager, ThermalManagerProxy, BATTERY_ID, ID, THERMAL_ID,
};
use accord_safwk::typed::Listener;
use accord_safwk::{SaHost, Samgr};

/// A fake `/sys/power`: the state file lists `offered`.
fn sys_power(dir: &Path, offered: &str) -> PathBuf {
    let p = dir.join("sys_power");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(p.join("state"), offered).unwrap();
    std::fs::write(p.join("wakeup_count"), "3\n").unwrap();
    p
}

struct World {
    dir: tempfile::TempDir,
    sock: PathBuf,
    /// What init was asked (`ohos.startup.powerctrl` values).
    asked: Arc<Mutex<Vec<String>>>,
    _host: SaHost,
}

async fn world(cfg: PowerConfig, offered: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let sock = samgr(dir.path());
    sys_power(dir.path(), offered);
    let asked = Arc::new(Mutex::new(Vec::new()));
    let power = Power::start(config(dir.path(), cfg, &asked)).unwrap();
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish_remote(ID, power.into_remote(), None).await.unwrap();
    World { dir, sock, asked, _host: host }
}

#[derive(Debug, Clone, PartialEq)]
enum Ev {
    State(PowerState, DisplayState),
    Mode(PowerMode),
    Lock(LockInfo, bool),
}

struct Seen(tokio::sync::mpsc::UnboundedSender<Ev>);

impl PowerListener for Seen {
    fn on_state(&self, state: PowerState, display: DisplayState, _lost: u32) {
        let _ = self.0.send(Ev::State(state, display));
    }
    fn on_mode(&self, mode: PowerMode, _lost: u32) {
        let _ = self.0.send(Ev::Mode(mode));
    }
    fn on_lock(&self, lock: LockInfo, held: bool, _lost: u32) {
        let _ = self.0.send(Ev::Lock(lock, held));
    }
}

async fn subscribe(pm: &PowerManagerProxy) -> tokio::sync::mpsc::UnboundedReceiver<Ev> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    pm.subscribe(Listener::new(Seen(tx).into_remote())).await.unwrap();
    rx
}

/// The next event that `keep` keeps.
async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Ev>, what: &str, keep: impl Fn(&Ev) -> bool) -> Ev {
    tokio::time::timeout(DEADLINE, async {
        loop {
            let e = rx.recv().await.expect("the listener stays subscribed");
            if keep(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

async fn next_state(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Ev>) -> PowerState {
    match next(rx, "a state change", |e| matches!(e, Ev::State(..))).await {
        Ev::State(s, _) => s,
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_goes_dim_off_and_to_sleep_then_wakes() {
    let w = world(quick(), "freeze mem\n").await;
    let pm = pm(&w.sock).await;
    let mut rx = subscribe(&pm).await;
    pm.wakeup_device("test").await.unwrap();
    // From awake, in this order: DIM, INACTIVE, SLEEP, then AWAKE again
    // when the (fake) suspend returns.
    let mut seq = Vec::new();
    while seq.last() != Some(&PowerState::Sleep) {
        let s = next_state(&mut rx).await;
        if s != PowerState::Awake || !seq.is_empty() {
            seq.push(s);
        }
    }
    assert_eq!(seq, [PowerState::Dim, PowerState::Inactive, PowerState::Sleep]);
    assert_eq!(next_state(&mut rx).await, PowerState::Awake);
    let st = pm.status().await.unwrap();
    assert!(st.suspends >= 1, "{st:?}");
    assert_eq!(st.suspend_state, "mem");
    // The race-free sequence: the count written back, then the state.
    let root = w.dir.path().join("sys_power");
    assert_eq!(std::fs::read_to_string(root.join("wakeup_count")).unwrap(), "3");
    assert_eq!(std::fs::read_to_string(root.join("state")).unwrap(), "mem");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locks_hold_the_screen_or_the_system() {
    let w = world(quick(), "freeze\n").await;
    let pm = pm(&w.sock).await;
    let mut rx = subscribe(&pm).await;
    // A BACKGROUND lock: the display goes off, the system does not sleep.
    let bg = pm.lock("bg", LockType::Background, 0).await.unwrap();
    assert!(pm.is_used(LockType::Background).await.unwrap());
    pm.wakeup_device("test").await.unwrap();
    loop {
        if next_state(&mut rx).await == PowerState::Inactive {
            break;
        }
    }
    // A timed SCREEN lock turns nothing on by itself, and its expiry is
    // told; no SLEEP came in between (the BACKGROUND lock holds).
    let screen = pm.lock("screen", LockType::Screen, 300).await.unwrap();
    loop {
        match next(&mut rx, "the timed lock's expiry", |_| true).await {
            Ev::Lock(l, false) if l.id == screen => break,
            Ev::State(PowerState::Sleep, _) => panic!("slept while a BACKGROUND lock was held"),
            _ => {}
        }
    }
    assert!(pm.unlock(bg).await.unwrap());
    assert!(!pm.unlock(bg).await.unwrap(), "a lock is let go once");
    assert_eq!(next_state(&mut rx).await, PowerState::Sleep);
    // A SCREEN lock keeps the display on whatever the idle time.
    pm.wakeup_device("test").await.unwrap();
    let s = pm.lock("screen", LockType::Screen, 0).await.unwrap();
    let locks = pm.locks().await.unwrap();
    assert_eq!(locks.len(), 1);
    assert_eq!((locks[0].kind, locks[0].pid, locks[0].uid), (LockType::Screen, std::process::id() as i32, 0));
    // Another lock's expiry, 600 ms on (past the display-off time):
    // the display stayed on all along.
    let t = pm.lock("marker", LockType::Task, 600).await.unwrap();
    loop {
        match next(&mut rx, "the marker's expiry", |_| true).await {
            Ev::Lock(l, false) if l.id == t => break,
            Ev::State(st, _) if st != PowerState::Awake => panic!("{st:?} while a SCREEN lock was held"),
            _ => {}
        }
    }
    assert!(pm.is_screen_on().await.unwrap());
    assert!(pm.unlock(s).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_suspend_is_reported_and_not_retried_until_activity() {
    let w = world(quick(), "freeze\n").await;
    // The kernel refuses: wakeup_count cannot be read.
    let root = w.dir.path().join("sys_power");
    std::fs::remove_file(root.join("wakeup_count")).unwrap();
    std::fs::create_dir(root.join("wakeup_count")).unwrap();
    let pm = pm(&w.sock).await;
    let mut rx = subscribe(&pm).await;
    pm.wakeup_device("test").await.unwrap();
    loop {
        if next_state(&mut rx).await == PowerState::Sleep {
            break;
        }
    }
    assert_eq!(next_state(&mut rx).await, PowerState::Inactive);
    let st = pm.status().await.unwrap();
    assert!(st.last_suspend.starts_with("refused: "), "{st:?}");
    assert!(st.last_suspend.contains("wakeup_count"), "{st:?}");
    assert_eq!(st.suspends, 0);
    // Half a second on (a timed lock's expiry), nothing was retried.
    let t = pm.lock("marker", LockType::Task, 500).await.unwrap();
    loop {
        match next(&mut rx, "the marker's expiry", |_| true).await {
            Ev::Lock(l, false) if l.id == t => break,
            Ev::State(s, _) => panic!("{s:?}: a refused suspend was retried without activity"),
            _ => {}
        }
    }
    // Activity: tried again.
    pm.wakeup_device("test").await.unwrap();
    loop {
        if next_state(&mut rx).await == PowerState::Sleep {
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_goes_with_its_holders_process() {
    let w = world(quick(), "freeze\n").await;
    let pm = pm(&w.sock).await;
    let mut rx = subscribe(&pm).await;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_lock_holder", "--nocapture", "--test-threads=1"])
        .env("ACCORD_POWER_SOCK", &w.sock)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let Ev::Lock(taken, true) = next(&mut rx, "the child's lock", |e| matches!(e, Ev::Lock(_, true))).await else { unreachable!() };
    assert_eq!(taken.pid, child.id() as i32, "the holder is the process that called");
    assert_eq!(taken.name, "child");
    child.kill().unwrap();
    child.wait().unwrap();
    let Ev::Lock(gone, false) = next(&mut rx, "the child's lock let go", |e| matches!(e, Ev::Lock(_, false))).await else { unreachable!() };
    assert_eq!(gone.id, taken.id);
    assert!(pm.locks().await.unwrap().is_empty());
}

/// Helper: takes a BACKGROUND lock and waits to be killed.
#[test]
#[ignore = "helper of a_lock_goes_with_its_holders_process"]
fn helper_lock_holder() {
    let sock = PathBuf::from(std::env::var_os("ACCORD_POWER_SOCK").expect("a helper: run by a_lock_goes_with_its_holders_process"));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pm = pm(&sock).await;
        pm.lock("child", LockType::Background, 0).await.unwrap();
        tokio::time::sleep(DEADLINE * 4).await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mode_and_the_shutdown_reason_survive_a_restart() {
    let w = world(PowerConfig::default(), "freeze\n").await;
    let pm = pm(&w.sock).await;
    assert_eq!(pm.shutdown_reason().await.unwrap().kind, "", "a first boot has no reason");
    let mut rx = subscribe(&pm).await;
    pm.set_mode(PowerMode::PowerSave).await.unwrap();
    assert_eq!(next(&mut rx, "the mode change", |e| matches!(e, Ev::Mode(_))).await, Ev::Mode(PowerMode::PowerSave));
    let st = pm.status().await.unwrap();
    assert_eq!((st.mode, st.display_off_ms), (PowerMode::PowerSave, 10_000));

    // Callbacks: HIGH before LOW; a HIGH one that never returns costs its
    // deadline, and the LOW one still runs.
    let order = Arc::new(Mutex::new(Vec::new()));
    pm.add_shutdown_callback(Listener::new(Cb("stuck", order.clone(), true).into_remote()), ShutdownPriority::High).await.unwrap();
    pm.add_shutdown_callback(Listener::new(Cb("low", order.clone(), false).into_remote()), ShutdownPriority::Low).await.unwrap();
    pm.add_shutdown_callback(Listener::new(Cb("high", order.clone(), false).into_remote()), ShutdownPriority::High).await.unwrap();
    pm.with_timeout(DEADLINE).reboot("test-reason").await.unwrap();
    let o = order.lock().unwrap().clone();
    assert_eq!(o.len(), 3, "{o:?}");
    assert_eq!(o[2], "low:true:test-reason", "{o:?}");
    assert_eq!(*w.asked.lock().unwrap(), ["reboot"]);
    assert_eq!(pm.state().await.unwrap(), PowerState::Shutdown);
    assert!(sa_err(pm.shutdown("again").await).to_string().contains("already under way"));

    // The next start reads the mode and the reason; the one after has no
    // reason (it was not ended through the power manager).
    for expect in ["reboot", ""] {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let again = Power::start(config(w.dir.path(), PowerConfig::default(), &asked)).unwrap();
        let r = again.shutdown_reason();
        assert_eq!(r.kind, expect);
        if !expect.is_empty() {
            assert_eq!((r.reason.as_str(), r.uid), ("test-reason", 0));
        }
        assert_eq!(again.mode(), PowerMode::PowerSave);
    }
}

struct Cb(&'static str, Arc<Mutex<Vec<String>>>, bool);

impl ShutdownCallback for Cb {
    fn on_shutdown(&self, reboot: bool, reason: String) {
        self.1.lock().unwrap().push(format!("{}:{reboot}:{reason}", self.0));
        if self.2 {
            // Past its deadline (3 s), not for ever: the test's runtime ends after.
            std::thread::sleep(accord_power::power::CALLBACK_DEADLINE * 2);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_uids_get_what_their_permissions_allow_and_no_more() {
    let w = world(PowerConfig::default(), "freeze\n").await;
    let out = as_uid(2001, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        let mut errs = Vec::new();
        errs.push(sa_err(pm.set_mode(PowerMode::Performance).await));
        errs.push(sa_err(pm.suspend_device("x").await));
        errs.push(sa_err(pm.reboot("x").await));
        errs.push(sa_err(pm.override_timeout(1000).await));
        // Any process may refresh activity and read the state.
        pm.refresh_activity().await.unwrap();
        pm.state().await.unwrap();
        // Locks: up to its share, named within bounds.
        errs.push(sa_err(pm.lock(&"x".repeat(200), LockType::Background, 0).await));
        errs.push(sa_err(pm.lock("bad\nname", LockType::Background, 0).await));
        let mut ids = Vec::new();
        for i in 0..accord_power::MAX_LOCKS_PER_UID {
            ids.push(pm.lock(&format!("l{i}"), LockType::Task, 0).await.unwrap());
        }
        errs.push(sa_err(pm.lock("one more", LockType::Task, 0).await));
        // It sees its own locks only, and cannot let go of root's.
        let own = pm.locks().await.unwrap();
        (errs, own.len(), ids)
    });
    let (errs, own, ids) = out;
    let texts: Vec<String> = errs.iter().map(ToString::to_string).collect();
    assert!(matches!(errs[0], PowerError::PermissionDenied { uid: 2001, .. }), "{texts:?}");
    assert!(texts[1].contains("POWER_MANAGER") && texts[2].contains("REBOOT") && texts[3].contains("POWER_MANAGER"), "{texts:?}");
    assert!(matches!(errs[4], PowerError::InvalidArgument(_)) && matches!(errs[5], PowerError::InvalidArgument(_)), "{texts:?}");
    assert!(matches!(errs[6], PowerError::TooMany(_)), "{texts:?}");
    assert_eq!(own, accord_power::MAX_LOCKS_PER_UID);
    // Root sees them all, and the thread that held them is gone but its
    // process (this one) lives: they stay until let go.
    let pm = pm(&w.sock).await;
    let root_lock = pm.lock("root's", LockType::Screen, 0).await.unwrap();
    assert_eq!(pm.locks().await.unwrap().len(), accord_power::MAX_LOCKS_PER_UID + 1);
    let (freed, theirs) = as_uid(2001, &w.sock, async move |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        (pm.unlock(ids[0]).await.unwrap(), pm.unlock(root_lock).await.unwrap())
    });
    assert!(freed && !theirs, "a uid lets go of its own locks only");
    assert!(asked_nothing(&w));
}

fn asked_nothing(w: &World) -> bool {
    w.asked.lock().unwrap().is_empty()
}

struct BatSeen(tokio::sync::mpsc::UnboundedSender<accord_power::BatteryInfo>);
impl BatteryListener for BatSeen {
    fn on_battery(&self, info: accord_power::BatteryInfo, _lost: u32) {
        let _ = self.0.send(info);
    }
}

struct ThermSeen(tokio::sync::mpsc::UnboundedSender<accord_power::ThermalInfo>);
impl ThermalListener for ThermSeen {
    fn on_level(&self, info: accord_power::ThermalInfo, _lost: u32) {
        let _ = self.0.send(info);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_critical_battery_and_an_escaping_zone_ask_for_a_shutdown() {
    let w = world(PowerConfig::default(), "freeze\n").await;
    let mut cfg = PowerConfig::default();
    cfg.battery.poll = Duration::from_millis(50);
    cfg.thermal.poll = Duration::from_millis(50);
    let supplies = w.dir.path().join("power_supply");
    let zones = w.dir.path().join("thermal");
    let bat =
        |cap: u32, status: &str| format!("POWER_SUPPLY_TYPE=Battery\nPOWER_SUPPLY_PRESENT=1\nPOWER_SUPPLY_STATUS={status}\nPOWER_SUPPLY_CAPACITY={cap}\n");
    write(&supplies.join("BAT0/uevent"), &bat(50, "Discharging"));
    write(&zones.join("thermal_zone0/type"), "cpu-thermal\n");
    write(&zones.join("thermal_zone0/temp"), "30000\n");
    let b = accord_power::battery::Battery::start(supplies.clone(), cfg.battery, w.sock.clone()).unwrap();
    let t = accord_power::thermal::Thermal::start(zones.clone(), cfg.thermal.clone(), w.sock.clone()).unwrap();
    let host = SaHost::connect(&w.sock).await.unwrap();
    host.publish_remote(BATTERY_ID, b.into_remote(), None).await.unwrap();
    host.publish_remote(THERMAL_ID, t.into_remote(), None).await.unwrap();

    let samgr = Samgr::connect(&w.sock).await.unwrap();
    let bs = samgr.get_proxy::<BatteryServiceProxy>(BATTERY_ID).await.unwrap();
    let ts = samgr.get_proxy::<ThermalManagerProxy>(THERMAL_ID).await.unwrap();
    let info = bs.info().await.unwrap();
    assert!(info.present);
    assert_eq!((info.capacity, info.level), (50, accord_power::CapacityLevel::Normal));
    assert_eq!(ts.info().await.unwrap().level, ThermalLevel::Normal);
    let (btx, mut brx) = tokio::sync::mpsc::unbounded_channel();
    bs.subscribe(Listener::new(BatSeen(btx).into_remote())).await.unwrap();
    let (ttx, mut trx) = tokio::sync::mpsc::unbounded_channel();
    ts.subscribe(Listener::new(ThermSeen(ttx).into_remote())).await.unwrap();

    // Hot, then back: told both ways, nothing asked of init.
    write(&zones.join("thermal_zone0/temp"), "46000\n");
    let got = tokio::time::timeout(DEADLINE, trx.recv()).await.unwrap().unwrap();
    assert_eq!(got.level, ThermalLevel::Hot);
    write(&zones.join("thermal_zone0/temp"), "30000\n");
    assert_eq!(tokio::time::timeout(DEADLINE, trx.recv()).await.unwrap().unwrap().level, ThermalLevel::Normal);

    // Low while charging is not critical; at the shutdown level while
    // discharging, the power manager is asked, with the reason.
    write(&supplies.join("BAT0/uevent"), &bat(1, "Charging"));
    let got = tokio::time::timeout(DEADLINE, brx.recv()).await.unwrap().unwrap();
    assert_eq!((got.capacity, got.level), (1, accord_power::CapacityLevel::Shutdown));
    assert!(asked_nothing(&w));
    write(&supplies.join("BAT0/uevent"), &bat(1, "Discharging"));
    let pm = pm(&w.sock).await;
    let end = std::time::Instant::now() + DEADLINE;
    while asked_nothing(&w) {
        assert!(std::time::Instant::now() < end, "a critical battery did not shut down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*w.asked.lock().unwrap(), ["reboot,shutdown"]);
    assert_eq!(pm.state().await.unwrap(), PowerState::Shutdown);
    drop(host);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_escaping_zone_asks_for_a_shutdown() {
    let w = world(PowerConfig::default(), "freeze\n").await;
    let mut cfg = PowerConfig::default();
    cfg.thermal.poll = Duration::from_millis(50);
    let zones = w.dir.path().join("thermal");
    write(&zones.join("thermal_zone0/type"), "cpu-thermal\n");
    write(&zones.join("thermal_zone0/temp"), "90000\n");
    let t = accord_power::thermal::Thermal::start(zones, cfg.thermal, w.sock.clone()).unwrap();
    assert_eq!(t.info().level, ThermalLevel::Escape);
    let end = std::time::Instant::now() + DEADLINE;
    while asked_nothing(&w) {
        assert!(std::time::Instant::now() < end, "an ESCAPE zone did not shut down");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(*w.asked.lock().unwrap(), ["reboot,shutdown"]);
}
