//! The real thing, without QEMU: init as PID 1 in namespaces, samgr as its
//! critical boot service, and `sa_main` hosting the demo SA on demand.
//! On-demand start through init with 100 concurrent getters, `kill -9` of
//! the SA's process, idle unload and the process's exit, and samgr's own
//! death with the SA registering again.

use std::path::PathBuf;
use std::time::Duration;

use accord_sa_main::demo::DemoProxy;
use accord_safwk::{SaEvent, Samgr};
use accord_testkit::Fixture;

const CFG: &str = r#"{
  "services": [
    {"name": "samgr", "path": ["/system/bin/samgr"], "critical": [1, 4, 240], "start-mode": "boot",
     "socket": [{"name": "samgr", "family": "AF_UNIX", "type": "SOCK_STREAM", "protocol": "default",
                 "permissions": "0666", "uid": "root", "gid": "system"}],
     "bootevents": ["bootevent.samgr.ready"]},
    {"name": "demo_sa", "path": ["/system/bin/sa_main", "/system/profile/demo_sa.json"], "ondemand": true}
  ]
}"#;

const PROFILE: &str = r#"{"process": "demo_sa", "systemability": [
  {"name": 9001, "libpath": "libdemo.z.so", "run-on-create": false,
   "stop-on-demand": {"unreferenced-unload": true, "delay": 500}}]}"#;

fn boot() -> Fixture {
    let mut f = Fixture::new(CFG, &[("system/profile/demo_sa.json", PROFILE)]);
    f.install_bin("samgr", "accord-samgr", &["hidumper"]);
    std::fs::copy(accord_testkit::workspace_bin("sa_main", "accord-sa-main"), f.path("system/bin/sa_main")).unwrap();
    f.boot();
    assert!(f.wait_param("bootevent.samgr.ready", "true", Duration::from_secs(30)), "samgr never got ready; log:\n{}", f.log_text());
    f
}

/// The device as seen from a process inside its PID namespace (entered
/// with nsenter): its parameters and its samgr, by init's host pid.
struct Device {
    init: i32,
}

impl Device {
    fn get(&self, name: &str) -> Option<String> {
        let sock = PathBuf::from(format!("/proc/{}/root/dev/unix/socket/paramservice", self.init));
        accord_param::client::Client::connect_to(&sock).ok()?.get_opt(name).ok().flatten()
    }
    fn samgr(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root/dev/unix/socket/samgr", self.init))
    }
    /// SIGKILL to `service`, by its pid in this namespace.
    fn kill(&self, service: &str) -> String {
        let pid = self.get(&format!("startup.service.ctl.{service}.pid")).expect("service pid");
        let n: i32 = pid.parse().expect("pid");
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(n), nix::sys::signal::Signal::SIGKILL).expect("kill");
        pid
    }
}

/// How long any awaited condition may take: generous, since a loaded
/// machine is slow; a condition that holds returns at once.
const DEADLINE: Duration = Duration::from_secs(30);

async fn wait_for(mut f: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < end {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    f()
}

async fn event(s: &Samgr) -> Option<SaEvent> {
    tokio::time::timeout(DEADLINE, s.next_event()).await.ok().flatten()
}

/// Boots the device and runs [`inner_scenario`] inside its PID namespace
/// (samgr's clients live there on a device; the kernel reports pid 0 for
/// a peer outside it, which D-Bus peer credentials cannot express).
#[test]
fn on_demand_sa_through_init_crash_idle_unload_and_samgr_restart() {
    let f = boot();
    let init = f.init_pid().unwrap();
    let out = std::process::Command::new("nsenter")
        .args(["--target", &init.to_string(), "--pid", "--"])
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "inner_scenario", "--nocapture", "--test-threads=1"])
        .env("ACCORD_DEVICE_INIT", init.to_string())
        .output()
        .expect("nsenter (util-linux)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && text.contains("SCENARIO DONE"), "scenario failed:\n{text}\ninit log:\n{}", f.log_text());
    let log = f.log_text();
    assert_eq!(log.matches("service demo_sa started").count(), 3, "one start for 100 getters, one after the crash, one after the idle unload; log:\n{log}");
    assert_eq!(log.matches("service samgr started").count(), 2, "init restarted samgr once; log:\n{log}");
}

/// The scenario, a helper process run inside the device's PID namespace by
/// the test above (ignored on its own).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "helper process of on_demand_sa_through_init_crash_idle_unload_and_samgr_restart"]
async fn inner_scenario() {
    let init = std::env::var("ACCORD_DEVICE_INIT").ok().and_then(|v| v.parse().ok()).expect("inner_scenario is a helper: ACCORD_DEVICE_INIT");
    let d = Device { init };
    let sock = d.samgr();
    let client = Samgr::connect(&sock).await.unwrap();
    assert_eq!(client.list().await.unwrap(), vec![(9001, "NOT_LOADED".to_owned())], "samgr read the profile");
    assert_eq!(d.get("startup.service.ctl.demo_sa").as_deref(), Some("idle"), "an ondemand SA host is not started at boot");
    client.subscribe(9001).await.unwrap();

    // 100 concurrent getters: init starts the process once.
    let mut getters = Vec::new();
    for i in 0..100u32 {
        let sock = sock.clone();
        getters.push(tokio::spawn(async move {
            let c = Samgr::connect(&sock).await.expect("connect");
            let demo = c.get_proxy::<DemoProxy>(9001).await.expect("get SA 9001");
            assert_eq!(demo.add_one(i).await.expect("call"), i + 1);
            demo
        }));
    }
    let mut held = Vec::new();
    for g in getters {
        held.push(g.await.unwrap());
    }
    assert_eq!(event(&client).await, Some(SaEvent::Added(9001)));
    let (uid, _, pid) = held[0].whoami().await.unwrap();
    assert_eq!((uid, pid), (0, std::process::id() as i32), "the SA sees the caller samgr saw");

    // kill -9 of the SA's process: subscribers hear of it, held proxies
    // die and their calls fail fast, a new get starts it again.
    d.kill("demo_sa");
    assert_eq!(event(&client).await, Some(SaEvent::Removed(9001)));
    tokio::time::timeout(DEADLINE, held[0].died()).await.expect("death notice on the proxy");
    // Fails rather than hangs: a dead connection answers at once, the
    // deadline only stops a hung test.
    let e = tokio::time::timeout(DEADLINE, held[1].add_one(1)).await.expect("a call to a dead SA returns").expect_err("a call to a dead SA fails");
    assert!(e.is_dead(), "a recognisable 'dead' error: {e:?}");
    drop(held);
    assert!(wait_for(|| d.get("startup.service.ctl.demo_sa").as_deref() == Some("stopped")).await, "init leaves a crashed ondemand host down");
    let demo = client.get_proxy::<DemoProxy>(9001).await.expect("get after the crash");
    assert_eq!(demo.add_one(7).await.unwrap(), 8);
    assert_eq!(event(&client).await, Some(SaEvent::Added(9001)));

    // samgr dies: init restarts it, the SA host registers again, the
    // client re-resolves without noticing, and held proxies keep working.
    let old = d.kill("samgr");
    assert_eq!(demo.add_one(1).await.unwrap(), 2, "samgr is not on the call path");
    let mut back = false;
    let end = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < end {
        if client.check(9001).await.unwrap_or(false) {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back, "SA 9001 registered with the new samgr");
    assert_ne!(d.get("startup.service.ctl.samgr.pid"), Some(old), "init restarted samgr");
    let again = client.get_proxy::<DemoProxy>(9001).await.unwrap();
    assert_eq!(again.add_one(2).await.unwrap(), 3);

    // Idle: with no client for 500 ms the SA unloads and its process exits;
    // init leaves it stopped; the next get starts it again.
    drop((demo, again));
    let mut unloaded = false;
    let end = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < end {
        if client.list().await.unwrap() == vec![(9001, "NOT_LOADED".to_owned())] {
            unloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(unloaded, "SA 9001 unloaded when idle");
    assert!(wait_for(|| d.get("startup.service.ctl.demo_sa").as_deref() == Some("stopped")).await, "its process exited");
    let demo = client.get_proxy::<DemoProxy>(9001).await.expect("reload after idle unload");
    assert_eq!(demo.add_one(41).await.unwrap(), 42);
    println!("SCENARIO DONE");
}
