//! Attacks on the power manager (SA 3301), battery (3302) and thermal
//! (3303) as unprivileged local uids: subscription and lock bounds,
//! listeners and shutdown callbacks that never answer, handshakes that
//! never complete, processes that exit under a call, floods, concurrent
//! mode changes, extreme arguments. Each test measures what the attack
//! cost the process (descriptors, threads, RSS) before and after.
//!
//! The SAs and the attackers share this process (the attackers on threads
//! with other credentials, or helper child processes), so the counts are
//! of both sides: the tests take turns (`SERIAL`).

mod common;

use common::{as_uid, config, pm, quick, sa_err, samgr, write, DEADLINE};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use accord_power::config::{PowerConfig, MAX_TIMEOUT_MS};
use accord_power::power::{Power, CALLBACK_DEADLINE};
use accord_power::{
    BatteryListener, BatteryListenerProxy, BatteryService, BatteryServiceProxy, DisplayState, LockInfo, LockType, PowerListener, PowerListenerProxy,
    PowerManager, PowerManagerProxy, PowerMode, PowerState, ShutdownCallback, ShutdownCallbackProxy, ShutdownPriority, ThermalListener, ThermalListenerProxy,
    ThermalManager, ThermalManagerProxy, BATTERY_ID, ID, MAX_LOCKS_PER_UID, MAX_SUBS, MAX_SUBS_PER_UID, THERMAL_ID,
};
use accord_safwk::typed::{Listener, TypedProxy};
use accord_safwk::{RemoteObject, SaHost, Samgr};

/// One test at a time: each counts what the whole process holds.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct World {
    _serial: tokio::sync::MutexGuard<'static, ()>,
    dir: tempfile::TempDir,
    sock: PathBuf,
    asked: Arc<Mutex<Vec<String>>>,
    power: Arc<dyn RemoteObject>,
    battery: Arc<dyn RemoteObject>,
    thermal: Arc<dyn RemoteObject>,
    _host: SaHost,
}

/// samgr, and the three SAs on fake trees, in one host.
async fn world(cfg: PowerConfig) -> World {
    let serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let sock = samgr(dir.path());
    let sp = dir.path().join("sys_power");
    std::fs::create_dir_all(&sp).unwrap();
    std::fs::write(sp.join("state"), "freeze\n").unwrap();
    std::fs::write(sp.join("wakeup_count"), "3\n").unwrap();
    let supplies = dir.path().join("power_supply");
    write(&supplies.join("BAT0/uevent"), "POWER_SUPPLY_TYPE=Battery\nPOWER_SUPPLY_PRESENT=1\nPOWER_SUPPLY_STATUS=Charging\nPOWER_SUPPLY_CAPACITY=50\n");
    let zones = dir.path().join("thermal");
    write(&zones.join("thermal_zone0/type"), "cpu-thermal\n");
    write(&zones.join("thermal_zone0/temp"), "30000\n");
    let asked = Arc::new(Mutex::new(Vec::new()));
    let power = Power::start(config(dir.path(), cfg.clone(), &asked)).unwrap().into_remote();
    let battery = accord_power::battery::Battery::start(supplies, cfg.battery, sock.clone()).unwrap().into_remote();
    let thermal = accord_power::thermal::Thermal::start(zones, cfg.thermal.clone(), sock.clone()).unwrap().into_remote();
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish_remote(ID, power.clone(), None).await.unwrap();
    host.publish_remote(BATTERY_ID, battery.clone(), None).await.unwrap();
    host.publish_remote(THERMAL_ID, thermal.clone(), None).await.unwrap();
    World { _serial: serial, dir, sock, asked, power, battery, thermal, _host: host }
}

// --- what the process holds -------------------------------------------------

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn status_kb(key: &str) -> usize {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.split_whitespace().next()).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn threads() -> usize {
    status_kb("Threads:")
}

fn rss_kb() -> usize {
    status_kb("VmRSS:")
}

#[derive(Debug, Clone, Copy)]
struct Held {
    fds: usize,
    threads: usize,
    rss_kb: usize,
}

fn held() -> Held {
    Held { fds: fds(), threads: threads(), rss_kb: rss_kb() }
}

/// Waits (up to `within`) for the descriptors and threads to come back to
/// `base` (plus `slack`); returns what is held then.
async fn settle(base: Held, slack: usize, within: Duration) -> Held {
    let end = Instant::now() + within;
    loop {
        let h = held();
        if (h.fds <= base.fds + slack && h.threads <= base.threads + slack) || Instant::now() > end {
            return h;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn dump(o: &Arc<dyn RemoteObject>) -> String {
    o.on_dump(&[])
}

/// The number after `key` in a dump.
fn dump_num(o: &Arc<dyn RemoteObject>, key: &str) -> usize {
    let d = dump(o);
    let at = d.find(key).unwrap_or_else(|| panic!("{key:?} not in {d}"));
    d[at + key.len()..].trim_start().split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
}

fn power_listeners(w: &World) -> usize {
    dump_num(&w.power, "listeners:")
}

fn shutdown_callbacks(w: &World) -> usize {
    dump_num(&w.power, "shutdown callbacks:")
}

fn lock_count(w: &World) -> usize {
    dump_num(&w.power, "running locks:")
}

fn battery_listeners(w: &World) -> usize {
    let d = dump(&w.battery);
    d.split("): ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

fn thermal_listeners(w: &World) -> usize {
    let d = dump(&w.thermal);
    d.split("): ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap()
}

// --- attackers ---------------------------------------------------------------

/// An attacker that stays: `f` runs as `uid` and its result is returned,
/// but its thread (and the listeners it serves) lives on until `leave`.
struct Stay {
    leave: Option<tokio::sync::oneshot::Sender<()>>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Stay {
    fn leave(mut self) {
        let _ = self.leave.take().unwrap().send(());
        self.join.take().unwrap().join().unwrap();
    }
}

fn stay_as<T: Send + 'static>(uid: u32, sock: &Path, f: impl AsyncFnOnce(Samgr) -> T + Send + 'static) -> (T, Stay) {
    let sock = sock.to_owned();
    let (res_tx, res_rx) = std::sync::mpsc::channel();
    let (leave_tx, leave_rx) = tokio::sync::oneshot::channel::<()>();
    let join = std::thread::spawn(move || {
        accord_testkit::become_on_this_thread(uid, uid, &[]).expect("tests run as root");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let r = f(Samgr::connect(&sock).await.unwrap()).await;
            let _ = res_tx.send(r);
            let _ = leave_rx.await;
        });
    });
    let r = res_rx.recv().expect("the attacker's thread ended early");
    (r, Stay { leave: Some(leave_tx), join: Some(join) })
}

/// Listeners that take what they are told and say nothing.
struct Quiet;
impl PowerListener for Quiet {
    fn on_state(&self, _: PowerState, _: DisplayState, _: u32) {}
    fn on_mode(&self, _: PowerMode, _: u32) {}
    fn on_lock(&self, _: LockInfo, _: bool, _: u32) {}
}
impl BatteryListener for Quiet {
    fn on_battery(&self, _: accord_power::BatteryInfo, _: u32) {}
}
impl ThermalListener for Quiet {
    fn on_level(&self, _: accord_power::ThermalInfo, _: u32) {}
}
impl ShutdownCallback for Quiet {
    fn on_shutdown(&self, _: bool, _: String) {}
}

/// Set at the end of a test: the stuck listeners and callbacks return.
static RELEASE: AtomicBool = AtomicBool::new(false);
/// Calls a stuck object got.
static STUCK_CALLS: AtomicUsize = AtomicUsize::new(0);

fn stuck_forever() {
    STUCK_CALLS.fetch_add(1, Ordering::SeqCst);
    while !RELEASE.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Never answers a call (until [`RELEASE`]).
struct Stuck;
impl PowerListener for Stuck {
    fn on_state(&self, _: PowerState, _: DisplayState, _: u32) {
        stuck_forever()
    }
    fn on_mode(&self, _: PowerMode, _: u32) {
        stuck_forever()
    }
    fn on_lock(&self, _: LockInfo, _: bool, _: u32) {
        stuck_forever()
    }
}
impl ShutdownCallback for Stuck {
    fn on_shutdown(&self, _: bool, _: String) {
        stuck_forever()
    }
}

/// A listener whose handshake never completes: the end of a socket pair
/// nobody serves (sent as a listener; the receiver waits for the D-Bus
/// handshake). Keep the returned stream open as long as it should stay
/// silent.
fn silent_listener<P: TypedProxy>() -> (Listener<P>, std::os::unix::net::UnixStream) {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let l = accord_safwk::typed::decode_reply_fds::<Listener<P>>(&[accord_safwk::typed::WIRE_VERSION, 0], vec![theirs.into()]).unwrap();
    (l, ours)
}

/// Subscribes `n` quiet listeners at each SA; what each answered.
async fn subscribe_all(samgr: &Samgr, n: usize) -> [Vec<Result<u64, String>>; 3] {
    let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
    let bs = samgr.get_proxy::<BatteryServiceProxy>(BATTERY_ID).await.unwrap();
    let ts = samgr.get_proxy::<ThermalManagerProxy>(THERMAL_ID).await.unwrap();
    let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        a.push(pm.subscribe(Listener::<PowerListenerProxy>::new(PowerListener::into_remote(Quiet))).await.map_err(|e| e.to_string()));
        b.push(bs.subscribe(Listener::<BatteryListenerProxy>::new(BatteryListener::into_remote(Quiet))).await.map_err(|e| e.to_string()));
        c.push(ts.subscribe(Listener::<ThermalListenerProxy>::new(ThermalListener::into_remote(Quiet))).await.map_err(|e| e.to_string()));
    }
    [a, b, c]
}

fn oks(v: &[Result<u64, String>]) -> usize {
    v.iter().filter(|r| r.is_ok()).count()
}

// --- subscriptions -------------------------------------------------------------

/// 8 uids take 8 subscriptions each at every SA (the 64 in all); a 9th of
/// one of them and any of a 9th uid are refused; root and system still get
/// in; everything is given back when the attackers leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_subscriptions_per_uid_and_in_all() {
    let w = world(quick()).await;
    let base = held();
    let mut stays = Vec::new();
    for uid in 2001..=2008 {
        let (r, stay) = stay_as(uid, &w.sock, async |samgr| subscribe_all(&samgr, MAX_SUBS_PER_UID + 1).await);
        for (sa, v) in r.iter().enumerate() {
            assert_eq!(oks(v), MAX_SUBS_PER_UID, "uid {uid} at SA #{sa}: {v:?}");
            assert!(v[MAX_SUBS_PER_UID].as_ref().unwrap_err().contains("its share"), "{v:?}");
        }
        stays.push(stay);
    }
    assert_eq!((power_listeners(&w), battery_listeners(&w), thermal_listeners(&w)), (MAX_SUBS, MAX_SUBS, MAX_SUBS));
    let full = held();
    let ninth = as_uid(2009, &w.sock, async |samgr| subscribe_all(&samgr, 1).await);
    for v in &ninth {
        assert!(v[0].as_ref().unwrap_err().contains("held in all"), "a 9th uid: {v:?}");
    }
    let root = as_uid(0, &w.sock, async |samgr| {
        let r = subscribe_all(&samgr, 1).await;
        r.iter().map(|v| oks(v)).sum::<usize>()
    });
    let system = as_uid(1000, &w.sock, async |samgr| {
        let r = subscribe_all(&samgr, 1).await;
        r.iter().map(|v| oks(v)).sum::<usize>()
    });
    assert_eq!((root, system), (3, 3), "root and system get in past the 64");
    // Events flow to all of them without stalling the SA.
    let pm = pm(&w.sock).await;
    for i in 0..50 {
        let id = pm.lock(&format!("ev{i}"), LockType::Task, 0).await.unwrap();
        pm.unlock(id).await.unwrap();
    }
    for s in stays {
        s.leave();
    }
    let after = settle(base, 4, Duration::from_secs(10)).await;
    let left = (power_listeners(&w), battery_listeners(&w), thermal_listeners(&w));
    eprintln!("SUBS: base {base:?}, with 3x64 subscriptions {full:?}, after the attackers left {after:?}, listeners left {left:?}");
    assert_eq!(left, (0, 0, 0));
    assert!(after.fds <= base.fds + 4 && after.threads <= base.threads + 4, "{base:?} -> {after:?}");
}

/// Handshakes that never complete: one uid gets at most 8 at once in the
/// process (a 9th fails at once), each costs the SA ~10 s; root still
/// subscribes meanwhile, and nothing stays afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_silent_handshakes() {
    let w = world(quick()).await;
    let base = held();
    let sock = w.sock.clone();
    let t0 = Instant::now();
    let attacker = std::thread::spawn(move || {
        as_uid(2001, &sock, async |samgr| {
            let mut set = tokio::task::JoinSet::new();
            let mut keep = Vec::new();
            for i in 0..12 {
                let samgr_pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
                let samgr_ts = samgr.get_proxy::<ThermalManagerProxy>(THERMAL_ID).await.unwrap();
                if i % 2 == 0 {
                    let (l, s) = silent_listener::<PowerListenerProxy>();
                    keep.push(s);
                    set.spawn(async move {
                        let t = Instant::now();
                        (samgr_pm.with_timeout(Duration::from_secs(60)).subscribe(l).await.map_err(|e| e.to_string()), t.elapsed())
                    });
                } else {
                    let (l, s) = silent_listener::<ThermalListenerProxy>();
                    keep.push(s);
                    set.spawn(async move {
                        let t = Instant::now();
                        (samgr_ts.with_timeout(Duration::from_secs(60)).subscribe(l).await.map_err(|e| e.to_string()), t.elapsed())
                    });
                }
            }
            let mut out = Vec::new();
            while let Some(r) = set.join_next().await {
                out.push(r.unwrap());
            }
            drop(keep);
            out
        })
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let during = held();
    // Root (and a well-behaved uid) can still subscribe meanwhile.
    let t = Instant::now();
    let root_ok = as_uid(0, &w.sock, async |samgr| oks(&subscribe_all(&samgr, 1).await[0]));
    let root_ms = t.elapsed().as_millis();
    let other_ok = as_uid(2003, &w.sock, async |samgr| oks(&subscribe_all(&samgr, 1).await[0]));
    let out = attacker.join().unwrap();
    let total = t0.elapsed();
    let limited = out.iter().filter(|(r, _)| r.as_ref().is_err_and(|e| e.contains("LimitsExceeded") || e.contains("share"))).count();
    let timed = out.iter().filter(|(r, _)| r.as_ref().is_err_and(|e| e.contains("cannot be called") && !e.contains("LimitsExceeded"))).count();
    let slowest = out.iter().map(|(_, d)| *d).max().unwrap();
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "SILENT: 12 silent handshakes of uid 2001: {limited} refused at once, {timed} failed after their handshake deadline (slowest {} ms, all in {} ms); root subscribed meanwhile in {root_ms} ms; held {base:?} -> during {during:?} -> after {after:?}; results {:?}",
        slowest.as_millis(),
        total.as_millis(),
        out.iter()
            .map(|(r, d)| format!("{} {}ms", r.as_ref().map(|_| "ok".to_owned()).unwrap_or_else(|e| e.chars().take(90).collect()), d.as_millis()))
            .collect::<Vec<_>>()
    );
    assert_eq!((root_ok, other_ok), (1, 1));
    assert!(out.iter().all(|(r, _)| r.is_err()), "a silent listener was accepted");
    assert!(limited >= 4, "at most 8 handshakes of one uid at once");
    assert_eq!(power_listeners(&w), 0, "nothing is left (root's went with its thread)");
    assert!(after.fds <= base.fds + 6, "{base:?} -> {after:?}");
}

/// 8 uids with 8 silent handshakes each fill the process's 64: does root
/// still get a listener in meanwhile?
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_silent_handshakes_from_8_uids() {
    let w = world(quick()).await;
    let mut attackers = Vec::new();
    for uid in 2003..=2010 {
        let sock = w.sock.clone();
        attackers.push(std::thread::spawn(move || {
            as_uid(uid, &sock, async |samgr| {
                let mut set = tokio::task::JoinSet::new();
                let mut keep = Vec::new();
                for _ in 0..8 {
                    let p = samgr.get_proxy::<ThermalManagerProxy>(THERMAL_ID).await.unwrap();
                    let (l, s) = silent_listener::<ThermalListenerProxy>();
                    keep.push(s);
                    set.spawn(async move { p.with_timeout(Duration::from_secs(60)).subscribe(l).await.is_err() });
                }
                while set.join_next().await.is_some() {}
                drop(keep);
            })
        }));
    }
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let t = Instant::now();
    let root = as_uid(0, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        pm.subscribe(Listener::new(PowerListener::into_remote(Quiet))).await.map(|_| ()).map_err(|e| e.to_string())
    });
    let root_ms = t.elapsed().as_millis();
    for a in attackers {
        a.join().unwrap();
    }
    eprintln!("SILENT8: with 8 uids x 8 silent handshakes under way, root's subscribe: {root:?} in {root_ms} ms");
    assert!(root.is_ok(), "root locked out of subscribing by 8 uids' silent listeners: {root:?}");
}

/// A listener that never answers its calls: the others and the state task
/// go on; the stuck one is let go after the call deadline (30 s); its
/// queue is bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_a_listener_that_never_answers() {
    let w = world(quick()).await;
    RELEASE.store(false, Ordering::SeqCst);
    let base = held();
    let ((), stay) = stay_as(2001, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        for _ in 0..MAX_SUBS_PER_UID {
            pm.subscribe(Listener::new(PowerListener::into_remote(Stuck))).await.unwrap();
        }
    });
    // Root's listener counts what it gets.
    let pm = pm(&w.sock).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    struct Count(tokio::sync::mpsc::UnboundedSender<(bool, u32)>);
    impl PowerListener for Count {
        fn on_state(&self, _: PowerState, _: DisplayState, _: u32) {}
        fn on_mode(&self, _: PowerMode, _: u32) {}
        fn on_lock(&self, _: LockInfo, held: bool, lost: u32) {
            let _ = self.0.send((held, lost));
        }
    }
    pm.subscribe(Listener::new(Count(tx).into_remote())).await.unwrap();
    let t = Instant::now();
    let n = 300;
    for i in 0..n {
        let id = pm.lock(&format!("l{i}"), LockType::Task, 0).await.unwrap();
        pm.unlock(id).await.unwrap();
    }
    let calls_ms = t.elapsed().as_millis();
    let mut got = 0;
    let mut lost = 0;
    while got + lost < 2 * n {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Some((_, l))) => {
                got += 1;
                lost += l as usize;
            }
            _ => break,
        }
    }
    let events_ms = t.elapsed().as_millis();
    // The state task still runs: a forced suspend goes through.
    pm.wakeup_device("t").await.unwrap();
    let during = held();
    let rss_during = rss_kb();
    // The stuck ones go after the call deadline.
    let t2 = Instant::now();
    while power_listeners(&w) > 1 && t2.elapsed() < Duration::from_secs(45) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let gone_after = t2.elapsed();
    let left = power_listeners(&w);
    RELEASE.store(true, Ordering::SeqCst);
    stay.leave();
    let after = settle(base, 6, Duration::from_secs(10)).await;
    eprintln!(
        "STUCK: 8 never-answering listeners of uid 2001; root's {n} lock+unlock took {calls_ms} ms, root's listener got {got} of {} events ({lost} counted lost) in {events_ms} ms; stuck calls made: {}; listeners left {left} after {} ms more (RSS {} kB during); held {base:?} -> {during:?} -> {after:?}",
        2 * n,
        STUCK_CALLS.load(Ordering::SeqCst),
        gone_after.as_millis(),
        rss_during
    );
    assert_eq!(got + lost, 2 * n, "root's listener was not served");
    assert_eq!(left, 1, "the stuck listeners were never let go");
    // Root's proxy and listener are still held.
    assert!(after.fds <= base.fds + 10, "{base:?} -> {after:?}");
}

/// Subscribe and unsubscribe in a loop, at each SA: nothing piles up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_subscribe_unsubscribe_churn() {
    let w = world(quick()).await;
    let base = held();
    let r = as_uid(2001, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        let bs = samgr.get_proxy::<BatteryServiceProxy>(BATTERY_ID).await.unwrap();
        let mut ok = 0;
        let mut errs = Vec::new();
        let mut early = None;
        for i in 0..200 {
            if i == 10 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                early = Some(held());
            }
            match pm.subscribe(Listener::new(PowerListener::into_remote(Quiet))).await {
                Ok(id) => {
                    ok += 1;
                    assert!(pm.unsubscribe(id).await.unwrap());
                }
                Err(e) => errs.push(e.to_string()),
            }
            match bs.subscribe(Listener::new(BatteryListener::into_remote(Quiet))).await {
                Ok(id) => {
                    ok += 1;
                    assert!(bs.unsubscribe(id).await.unwrap());
                }
                Err(e) => errs.push(e.to_string()),
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mid = held();
        (ok, errs, mid, early.unwrap())
    });
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "CHURN subs: {} ok, errors {:?}; held {base:?} -> after 10 rounds {:?} -> after 200 rounds {:?} -> after {after:?}",
        r.0,
        r.1.iter().take(3).collect::<Vec<_>>(),
        r.3,
        r.2
    );
    assert_eq!(r.0, 400, "{:?}", r.1);
    assert!(r.2.fds <= r.3.fds + 2, "subscriptions given back with unsubscribe kept descriptors: {:?} -> {:?}", r.3, r.2);
    assert_eq!((power_listeners(&w), battery_listeners(&w)), (0, 0));
}

// --- shutdown callbacks ----------------------------------------------------------

/// Add a shutdown callback and unsubscribe it, in a loop: each one given
/// back must let go of its connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_shutdown_callback_unsubscribe_leaks() {
    let w = world(quick()).await;
    let base = held();
    let (r, stay) = stay_as(2000, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        let mut ok = 0;
        let mut first_err = None;
        for i in 0..100 {
            match pm.add_shutdown_callback(Listener::new(ShutdownCallback::into_remote(Quiet)), ShutdownPriority::Low).await {
                Ok(id) => {
                    ok += 1;
                    assert!(pm.unsubscribe(id).await.unwrap());
                }
                Err(e) => {
                    first_err.get_or_insert((i, e.to_string()));
                }
            }
        }
        // And now it can no longer subscribe anywhere in powermgr.
        let bs = samgr.get_proxy::<BatteryServiceProxy>(BATTERY_ID).await.unwrap();
        let sub = bs.subscribe(Listener::new(BatteryListener::into_remote(Quiet))).await.map(|_| ()).map_err(|e| e.to_string());
        (ok, first_err, sub)
    });
    // Each callback given back lets go of its connection, asynchronously
    // (its delivery task ends, then both ends close): waited for, not
    // slept on. A leak would hold ~200 descriptors and never settle.
    let during = settle(base, 10, Duration::from_secs(30)).await;
    let cbs = shutdown_callbacks(&w);
    stay.leave();
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "CB CHURN: uid 2000 add+unsubscribe x100: {} added, first refusal {:?}, then battery subscribe {:?}; callbacks listed {cbs}; held {base:?} -> while it lives {during:?} -> after it left {after:?}",
        r.0, r.1, r.2
    );
    assert!(during.fds <= base.fds + 10, "unsubscribed callbacks keep their connections: {base:?} -> {during:?}");
    assert!(r.1.is_none(), "add_shutdown_callback refused after unsubscribes: {:?}", r.1);
}

/// The per-uid share of shutdown callbacks, asked for concurrently from
/// many connections of one uid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_shutdown_callbacks_concurrently_past_the_share() {
    let w = world(quick()).await;
    let (oks, stay) = stay_as(2000, &w.sock, async |samgr| {
        // 7 of its 8, then 8 at once from 8 connections (the handshakes
        // one uid may have under way at once).
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        for _ in 0..MAX_SUBS_PER_UID - 1 {
            pm.add_shutdown_callback(Listener::new(ShutdownCallback::into_remote(Quiet)), ShutdownPriority::Low).await.unwrap();
        }
        let mut set = tokio::task::JoinSet::new();
        let mut proxies = Vec::new();
        for _ in 0..8 {
            proxies.push(samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap());
        }
        let go = Arc::new(tokio::sync::Barrier::new(8));
        for p in proxies {
            let go = go.clone();
            set.spawn(async move {
                go.wait().await;
                p.add_shutdown_callback(Listener::new(ShutdownCallback::into_remote(Quiet)), ShutdownPriority::Default)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        }
        let mut n = Vec::new();
        while let Some(r) = set.join_next().await {
            n.push(r.unwrap());
        }
        (MAX_SUBS_PER_UID - 1 + n.iter().filter(|r| r.is_ok()).count(), n)
    });
    let listed = shutdown_callbacks(&w);
    stay.leave();
    eprintln!("CB RACE: 7 then 8 concurrent add_shutdown_callback of uid 2000: {} accepted, {listed} listed (share {MAX_SUBS_PER_UID}); {:?}", oks.0, oks.1);
    assert!(listed <= MAX_SUBS_PER_UID, "the per-uid share of shutdown callbacks was passed: {listed}");
}

/// Callbacks that never return, in every priority: the shutdown goes on
/// within 3 s per group; one whose handshake never completes is refused in
/// bounded time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_shutdown_callbacks_that_never_return() {
    let w = world(quick()).await;
    RELEASE.store(false, Ordering::SeqCst);
    STUCK_CALLS.store(0, Ordering::SeqCst);
    let base = held();
    let (r, stay) = stay_as(2000, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        // First, a callback whose handshake never completes.
        let (l, s) = silent_listener::<ShutdownCallbackProxy>();
        let t = Instant::now();
        let silent = pm.with_timeout(Duration::from_secs(60)).add_shutdown_callback(l, ShutdownPriority::High).await.map_err(|e| e.to_string());
        let silent_ms = t.elapsed().as_millis();
        drop(s);
        let mut ids = Vec::new();
        for (i, p) in [ShutdownPriority::High, ShutdownPriority::Default, ShutdownPriority::Low].into_iter().cycle().take(MAX_SUBS_PER_UID).enumerate() {
            ids.push((i, pm.add_shutdown_callback(Listener::new(ShutdownCallback::into_remote(Stuck)), p).await.map_err(|e| e.to_string())));
        }
        let more = pm.add_shutdown_callback(Listener::new(ShutdownCallback::into_remote(Stuck)), ShutdownPriority::High).await.map_err(|e| e.to_string());
        (ids, more, silent, silent_ms)
    });
    assert!(r.0.iter().all(|(_, x)| x.is_ok()), "{:?}", r.0);
    assert!(r.1.as_ref().unwrap_err().contains("share"), "{:?}", r.1);
    assert!(r.2.is_err(), "a silent callback was accepted");
    let pm = pm(&w.sock).await;
    let t = Instant::now();
    pm.with_timeout(Duration::from_secs(60)).reboot("attack").await.unwrap();
    let took = t.elapsed();
    RELEASE.store(true, Ordering::SeqCst);
    stay.leave();
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "CB STUCK: 8 never-returning callbacks (3 groups): reboot took {} ms (bound 3 x {} ms); a 9th: {:?}; silent-handshake callback refused after {} ms: {:?}; asked {:?}; held {base:?} -> after {after:?}",
        took.as_millis(),
        CALLBACK_DEADLINE.as_millis(),
        r.1,
        r.3,
        r.2,
        w.asked.lock().unwrap()
    );
    // The reboot went on while every callback was still stuck (they are
    // let go only now): it waited out their deadlines, not them.
    assert_eq!(STUCK_CALLS.load(Ordering::SeqCst), MAX_SUBS_PER_UID, "every callback of every priority was called");
    assert_eq!(*w.asked.lock().unwrap(), ["reboot"]);
}

// --- running locks ----------------------------------------------------------------

/// 16 uids take 64 locks each (the 1,024 in all); a 17th uid is refused,
/// so is system; root is not. Each lock costs a descriptor, given back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_locks_per_uid_and_in_all() {
    let w = world(PowerConfig::default()).await;
    let base = held();
    for uid in 2003..=2018 {
        let (ok, over) = as_uid(uid, &w.sock, async |samgr| {
            let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
            let mut ok = 0;
            for i in 0..MAX_LOCKS_PER_UID {
                ok += usize::from(pm.lock(&format!("{:x<128}", i), LockType::Background, 0).await.is_ok());
            }
            (ok, sa_err(pm.lock("over", LockType::Background, 0).await).to_string())
        });
        assert_eq!(ok, MAX_LOCKS_PER_UID);
        assert!(over.contains("its share"), "{over}");
    }
    let full = held();
    let seventeenth = as_uid(2019, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        pm.lock("x", LockType::Background, 0).await.map_err(|e| e.to_string())
    });
    let system = as_uid(1000, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        pm.lock("system", LockType::Background, 0).await.map_err(|e| e.to_string())
    });
    let pm = pm(&w.sock).await;
    let root = pm.lock("root", LockType::Background, 0).await;
    eprintln!(
        "LOCKS: 16 uids x 64 = {} locks; fds {} -> {} (+{}), RSS {} -> {} kB; a 17th uid: {seventeenth:?}; system (1000): {system:?}; root: {root:?}",
        lock_count(&w),
        base.fds,
        full.fds,
        full.fds - base.fds,
        base.rss_kb,
        full.rss_kb
    );
    assert!(seventeenth.unwrap_err().contains("in all"));
    assert!(root.is_ok());
    // Root lets go of them all: the descriptors come back.
    for l in pm.locks().await.unwrap() {
        pm.unlock(l.id).await.unwrap();
    }
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!("LOCKS: after root let go of all: {after:?}");
    assert!(after.fds <= base.fds + 4);
    // System, as root, has its place whatever the others hold.
    assert!(system.is_ok(), "{system:?}");
}

/// Names, kinds and timeouts at and past their bounds; unlocking other
/// uids' locks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_lock_arguments_and_others_locks() {
    let w = world(PowerConfig::default()).await;
    let pm = pm(&w.sock).await;
    let mut root_ids = Vec::new();
    for i in 0..5 {
        root_ids.push(pm.lock(&format!("root{i}"), LockType::Screen, 0).await.unwrap());
    }
    let other = as_uid(2003, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        pm.lock("2003's", LockType::Audio, 0).await.unwrap()
    });
    let base = held();
    let out = as_uid(2001, &w.sock, async move |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        let mut r = Vec::new();
        for (what, name) in [
            ("empty", String::new()),
            ("129 bytes", "a".repeat(129)),
            ("NUL", "a\0b".into()),
            ("ESC", "\x1b[2Jx".into()),
            ("DEL", "a\x7f".into()),
            ("newline", "a\nb".into()),
            ("UTF-8", "é".into()),
            ("3 MiB", "a".repeat(3 << 20)),
        ] {
            r.push((what, pm.lock(&name, LockType::Task, 0).await.map_err(|e| e.to_string())));
        }
        let ok128 = pm.lock(&"b".repeat(128), LockType::ProximityScreenControl, 0).await;
        let max = pm.lock("max", LockType::Task, MAX_TIMEOUT_MS as u64).await;
        let past = pm.lock("past", LockType::Task, MAX_TIMEOUT_MS as u64 + 1).await.map_err(|e| e.to_string());
        let huge = pm.lock("huge", LockType::Task, u64::MAX).await.map_err(|e| e.to_string());
        let mine = pm.locks().await.unwrap();
        // Others' locks: every id from 0 to 10,000, and root's.
        let mut freed = 0;
        for id in (0..10_000u64).chain(root_ids.iter().copied()).chain([other, u64::MAX]) {
            if mine.iter().any(|l| l.id == id) {
                continue;
            }
            freed += usize::from(pm.unlock(id).await.unwrap());
        }
        (r, ok128.is_ok(), max.is_ok(), mine.iter().find(|l| l.name == "max").map(|l| l.left_ms), past, huge, mine.len(), freed)
    });
    let after = held();
    eprintln!("ARGS: {:?}", out.0);
    eprintln!(
        "ARGS: 128-byte name ok {}, max timeout ok {} (left_ms {:?}), MAX+1: {:?}, u64::MAX: {:?}; 2001 sees {} locks; others' locks freed by 2001: {}; held {base:?} -> {after:?}",
        out.1, out.2, out.3, out.4, out.5, out.6, out.7
    );
    for (what, r) in &out.0 {
        assert!(r.is_err(), "{what} accepted");
    }
    assert!(out.1 && out.2);
    assert!(out.4.is_err() && out.5.is_err());
    assert_eq!(out.7, 0, "a uid let go of another's lock");
    assert_eq!(lock_count(&w), 5 + 1 + 2);
}

/// Many processes of one uid: the share is the uid's, whatever the
/// number of processes; their locks go with them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_locks_from_many_processes_of_one_uid() {
    let w = world(PowerConfig::default()).await;
    let base = held();
    let mut children = Vec::new();
    let mut taken = 0;
    for _ in 0..6 {
        let mut c = child(&w.sock, "locks:20", 2001);
        let line = read_line(&mut c);
        taken += line.trim().strip_prefix("taken ").unwrap().parse::<usize>().unwrap();
        children.push(c);
    }
    let listed = lock_count(&w);
    let during = held();
    for mut c in children {
        c.kill().unwrap();
        c.wait().unwrap();
    }
    let end = Instant::now() + Duration::from_secs(10);
    while lock_count(&w) > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "PROCS: 6 processes of uid 2001 asking 20 locks each: {taken} taken, {listed} listed; after they were killed: {} locks; held {base:?} -> {during:?} -> {after:?}",
        lock_count(&w)
    );
    assert_eq!(taken, MAX_LOCKS_PER_UID);
    assert_eq!(lock_count(&w), 0);
    assert!(after.fds <= base.fds + 4);
}

/// A process that asks for a lock and exits before (or while) the call is
/// served: no lock outlives it, nothing is left held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_lock_then_exit_at_once() {
    let w = world(PowerConfig::default()).await;
    let pm = pm(&w.sock).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    struct Locks(tokio::sync::mpsc::UnboundedSender<(LockInfo, bool)>);
    impl PowerListener for Locks {
        fn on_state(&self, _: PowerState, _: DisplayState, _: u32) {}
        fn on_mode(&self, _: PowerMode, _: u32) {}
        fn on_lock(&self, l: LockInfo, held: bool, _: u32) {
            let _ = self.0.send((l, held));
        }
    }
    pm.subscribe(Listener::new(Locks(tx).into_remote())).await.unwrap();
    let base = held();
    let mut reaped_first = 0;
    for i in 0..40u32 {
        let delay_us = [0, 0, 50, 200, 1000][i as usize % 5];
        let mut c = child(&w.sock, &format!("lock_and_exit:{delay_us}"), 2001);
        if i % 2 == 0 {
            // Reaped at once: the pid is free when the call is served.
            c.wait().unwrap();
            reaped_first += 1;
        } else {
            // A zombie for a while.
            tokio::time::sleep(Duration::from_millis(30)).await;
            c.wait().unwrap();
        }
    }
    let end = Instant::now() + Duration::from_secs(5);
    while lock_count(&w) > 0 && Instant::now() < end {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut taken = 0;
    let mut released = 0;
    while let Ok((_, h)) = rx.try_recv() {
        if h {
            taken += 1;
        } else {
            released += 1;
        }
    }
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "EXIT: 40 processes locking and exiting at once ({reaped_first} reaped before the call could be served): {taken} locks taken, {released} let go, {} left; held {base:?} -> {after:?}",
        lock_count(&w)
    );
    assert_eq!(lock_count(&w), 0, "{}", dump(&w.power));
    assert!(after.fds <= base.fds + 4);
}

// --- floods, modes, timeouts ----------------------------------------------------------

/// refresh_activity needs no permission: a uid with none (2002) keeps the
/// display on and the system awake; a flood of them costs nothing kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_refresh_activity_flood() {
    let w = world(quick()).await;
    let pm_root = pm(&w.sock).await;
    pm_root.wakeup_device("t").await.unwrap();
    // Kept awake by a uid without RUNNING_LOCK or POWER_MANAGER.
    let sock = w.sock.clone();
    let keeper = std::thread::spawn(move || {
        as_uid(2002, &sock, async |samgr| {
            let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
            let denied = pm.lock("x", LockType::Background, 0).await.is_err();
            let mut states = std::collections::BTreeSet::new();
            let end = Instant::now() + Duration::from_secs(3);
            while Instant::now() < end {
                pm.refresh_activity().await.unwrap();
                states.insert(format!("{:?}", pm.state().await.unwrap()));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            (denied, states)
        })
    });
    let (denied, states) = keeper.join().unwrap();
    let base = held();
    let t = Instant::now();
    let n_per = 20_000;
    let conns = 8;
    let sock = w.sock.clone();
    let n = as_uid(2002, &sock, async move |samgr| {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..conns {
            let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
            set.spawn(async move {
                let mut ok = 0usize;
                for _ in 0..n_per {
                    ok += usize::from(pm.refresh_activity().await.is_ok());
                }
                ok
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            n += r.unwrap();
        }
        n
    });
    let took = t.elapsed();
    let after = settle(base, 4, Duration::from_secs(10)).await;
    eprintln!(
        "REFRESH: uid 2002 (no permission, lock denied: {denied}) refreshing every 100 ms for 3 s with a 400 ms display-off time: states seen {states:?}; flood {n} calls in {} ms ({:.0}/s) over {conns} connections; held {base:?} -> {after:?}",
        took.as_millis(),
        n as f64 / took.as_secs_f64()
    );
    assert_eq!(n, n_per * conns);
    assert!(after.fds <= base.fds + 4 && after.rss_kb < base.rss_kb + 8 * 1024, "{base:?} -> {after:?}");
    // As documented ("Any process may"): a uid holding no permission keeps
    // the display on and the system awake, as a SCREEN lock would.
    assert_eq!(states.into_iter().collect::<Vec<_>>(), ["Awake"]);
}

/// set_mode from many connections at once: the file always holds the
/// mode in force, no temporary is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_set_mode_concurrently() {
    let w = world(PowerConfig::default()).await;
    let base = held();
    // Root's calls meanwhile: how long does state() wait for the mutex a
    // set_mode holds through its fsyncs?
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (sock, stop) = (w.sock.clone(), stop.clone());
        std::thread::spawn(move || {
            as_uid(0, &sock, async move |samgr| {
                let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
                let (mut worst, mut n) = (Duration::ZERO, 0);
                while !stop.load(Ordering::SeqCst) {
                    let t = Instant::now();
                    pm.state().await.unwrap();
                    worst = worst.max(t.elapsed());
                    n += 1;
                }
                (worst.as_millis(), n)
            })
        })
    };
    let t = Instant::now();
    let sock = w.sock.clone();
    let stop2 = stop.clone();
    let n = as_uid(2000, &sock, async move |samgr| {
        let _stop = stop2;
        let mut set = tokio::task::JoinSet::new();
        for k in 0..8usize {
            let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
            set.spawn(async move {
                let mut ok = 0;
                for i in 0..60usize {
                    ok += usize::from(pm.set_mode(PowerMode::ALL[(i + k) % 4]).await.is_ok());
                }
                ok
            });
        }
        let mut n = 0;
        while let Some(r) = set.join_next().await {
            n += r.unwrap();
        }
        _stop.store(true, Ordering::SeqCst);
        n
    });
    let took = t.elapsed();
    let (lat_ms, lat_n) = prober.join().unwrap();
    let pm = pm(&w.sock).await;
    let mode = pm.mode().await.unwrap();
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(w.dir.path().join("power.json")).unwrap()).unwrap();
    let tmp = w.dir.path().join("power.tmp").exists();
    let after = held();
    eprintln!(
        "MODE: {n} of 480 concurrent set_mode ok in {} ms ({:.0} durable writes/s); root's state() meanwhile: {lat_n} calls, worst {lat_ms} ms; mode {} file {} tmp left {tmp}; held {base:?} -> {after:?}",
        took.as_millis(),
        n as f64 / took.as_secs_f64(),
        mode.code(),
        file["mode"]
    );
    // One uid's fsync'd writes are bounded (10 a second); the rest are
    // refused with its share named, never queued.
    assert!(n < 480, "{n} of 480 mode changes in {took:?}: not bounded");
    assert_eq!(file["mode"].as_u64(), Some(u64::from(mode.code())));
    assert!(!tmp);
}

/// A set_mode once a reboot is under way (init stops the services some
/// time after `ohos.startup.powerctrl` is set): the reason the next boot
/// should read is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_set_mode_after_reboot_erases_the_reason() {
    let w = world(PowerConfig::default()).await;
    let pm = pm(&w.sock).await;
    pm.reboot("update").await.unwrap();
    assert_eq!(*w.asked.lock().unwrap(), ["reboot"]);
    let before: serde_json::Value = serde_json::from_slice(&std::fs::read(w.dir.path().join("power.json")).unwrap()).unwrap();
    let r = as_uid(2000, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        pm.set_mode(PowerMode::Performance).await.map_err(|e| e.to_string())
    });
    let file: serde_json::Value = serde_json::from_slice(&std::fs::read(w.dir.path().join("power.json")).unwrap()).unwrap();
    // The next boot.
    let asked = Arc::new(Mutex::new(Vec::new()));
    let next = Power::start(config(w.dir.path(), PowerConfig::default(), &asked)).unwrap();
    let reason = next.shutdown_reason();
    eprintln!("MODE+REBOOT: file after reboot {before}; set_mode by uid 2000 during the shutdown: {r:?}; file then {file}; next boot's reason {reason:?}");
    assert_eq!(reason.kind, "reboot", "a set_mode after the reboot was asked erased its reason");
}

/// override_timeout with extreme values: refused or clamped, never a panic
/// nor a stuck state task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_override_timeout_extremes() {
    let w = world(quick()).await;
    let out = as_uid(2000, &w.sock, async |samgr| {
        let pm = samgr.get_proxy::<PowerManagerProxy>(ID).await.unwrap();
        let mut r = Vec::new();
        for v in [i64::MIN, -2, -1, 0, 99, 100, MAX_TIMEOUT_MS, MAX_TIMEOUT_MS + 1, i64::MAX] {
            let res = pm.override_timeout(v).await.map_err(|e| e.to_string());
            let st = pm.status().await.map(|s| (s.state, s.display_off_ms, s.dim_ms)).map_err(|e| e.to_string());
            r.push((v, res.is_ok(), st));
        }
        // At the minimum, with the mode's 200 ms dim: it goes off and the
        // state task is alive for a wake-up.
        pm.override_timeout(100).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        let off = pm.state().await.unwrap();
        pm.wakeup_device("t").await.unwrap();
        pm.restore_timeout().await.unwrap();
        let on = pm.state().await.unwrap();
        (r, off, on)
    });
    for x in &out.0 {
        eprintln!("OVERRIDE: {x:?}");
    }
    eprintln!("OVERRIDE: at 100 ms: {:?}, after a wake-up: {:?}", out.1, out.2);
    let accepted: Vec<i64> = out.0.iter().filter(|x| x.1).map(|x| x.0).collect();
    assert_eq!(accepted, [-1, 100, MAX_TIMEOUT_MS]);
    assert!(out.0.iter().all(|x| x.2.is_ok()));
    assert_eq!(out.2, PowerState::Awake);
}

// --- helper processes -------------------------------------------------------------------

fn child(sock: &Path, mode: &str, uid: u32) -> std::process::Child {
    use std::os::unix::process::CommandExt;
    std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_attack_child", "--nocapture", "--test-threads=1"])
        .env("ACCORD_ATTACK_SOCK", sock)
        .env("ACCORD_ATTACK_MODE", mode)
        .uid(uid)
        .gid(uid)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn read_line(c: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let out = c.stdout.as_mut().unwrap();
    let mut r = std::io::BufReader::new(out);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("the child said nothing");
        }
        // After the harness's "test helper_attack_child ... ".
        if let Some(at) = line.find("taken ") {
            return line[at..].to_owned();
        }
    }
}

/// Helper: `locks:N` takes up to N locks, says how many, waits to be
/// killed; `lock_and_exit:US` sends a lock request and exits US µs later.
#[test]
#[ignore = "helper of the attack tests"]
fn helper_attack_child() {
    let Some(sock) = std::env::var_os("ACCORD_ATTACK_SOCK").map(PathBuf::from) else { return };
    let mode = std::env::var("ACCORD_ATTACK_MODE").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let pm = pm(&sock).await;
        if let Some(n) = mode.strip_prefix("locks:") {
            let mut taken = 0;
            for i in 0..n.parse::<usize>().unwrap() {
                taken += usize::from(pm.lock(&format!("p{}-{i}", std::process::id()), LockType::Background, 0).await.is_ok());
            }
            println!("taken {taken}");
            tokio::time::sleep(DEADLINE * 4).await;
        } else if let Some(us) = mode.strip_prefix("lock_and_exit:") {
            tokio::spawn(async move {
                let _ = pm.lock("racer", LockType::Background, 0).await;
            });
            tokio::task::yield_now().await;
            std::thread::sleep(Duration::from_micros(us.parse().unwrap()));
            std::process::exit(0);
        }
    });
}
