//! samgr's registry with SA hosts and clients in this process: add, get,
//! check, list, the direct path, subscriptions, on-demand load with many
//! concurrent getters, idle unload and reload, load failures, samgr
//! restarts, and the caller identity an SA sees.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_safwk::profile::Profile;
use accord_safwk::{Caller, Published, SaEvent, SaHost, Samgr, SystemAbility};
use accord_samgr::{Registry, Starter};

/// The test SA. `stops` and `idles` count its on_stop and on_idle calls
/// (shared, so a test can read them after the host dropped the SA);
/// `refuse_idle` makes on_idle say no; `stall_idle` makes it hang for 6 s.
#[derive(Default)]
struct Echo {
    stops: Arc<AtomicUsize>,
    idles: Arc<AtomicUsize>,
    refuse_idle: std::sync::atomic::AtomicBool,
    stall_idle: bool,
}

struct EchoIface {
    caller: Caller,
}

#[zbus::interface(name = "org.accord.test.Echo")]
impl EchoIface {
    fn add_one(&self, x: u32) -> u32 {
        x.wrapping_add(1)
    }
    fn caller_pid(&self) -> i32 {
        self.caller.pid()
    }
    /// (length, byte sum, whether it came through shared memory).
    fn sum(&self, data: accord_ipc::blob::Blob) -> zbus::fdo::Result<(u64, u64, bool)> {
        let shared = data.is_shared();
        let bytes = data.into_bytes().map_err(|e| zbus::fdo::Error::InvalidArgs(e.to_string()))?;
        Ok((bytes.len() as u64, bytes.iter().map(|b| u64::from(*b)).sum(), shared))
    }
    /// Writes `text` into the descriptor the caller passed.
    fn write_to(&self, fd: zbus::zvariant::OwnedFd, text: &str) -> zbus::fdo::Result<()> {
        use std::io::Write;
        let fd: std::os::fd::OwnedFd = fd.into();
        std::fs::File::from(fd).write_all(text.as_bytes()).map_err(|e| zbus::fdo::Error::IOError(e.to_string()))
    }
}

impl SystemAbility for Echo {
    type Interface = EchoIface;
    const PATH: &'static str = "/org/accord/test/Echo";
    fn connect(self: &Arc<Self>, caller: Caller) -> EchoIface {
        EchoIface { caller }
    }
    fn on_idle(&self) -> bool {
        if self.stall_idle {
            std::thread::sleep(Duration::from_secs(6));
        }
        let answer = !self.refuse_idle.load(Ordering::SeqCst);
        self.idles.fetch_add(1, Ordering::SeqCst);
        answer
    }
    fn on_stop(&self) {
        self.stops.fetch_add(1, Ordering::SeqCst);
    }
    fn on_dump(&self, args: &[String]) -> String {
        format!("echo dump {}", args.join(","))
    }
}

#[zbus::proxy(interface = "org.accord.test.Echo", default_service = "org.accord.test", default_path = "/org/accord/test/Echo")]
trait EchoClient {
    fn add_one(&self, x: u32) -> zbus::Result<u32>;
    fn caller_pid(&self) -> zbus::Result<i32>;
    fn sum(&self, data: accord_ipc::blob::Blob) -> zbus::Result<(u64, u64, bool)>;
    fn write_to(&self, fd: zbus::zvariant::Fd<'_>, text: &str) -> zbus::Result<()>;
}

fn start_samgr(registry: Registry) -> (tempfile::TempDir, std::path::PathBuf, tokio::task::JoinHandle<()>) {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    let task = tokio::spawn(accord_samgr::serve(listener, registry));
    (dir, sock, task)
}

/// How long an awaited condition or event may take: generous, since a
/// loaded machine is slow; one that comes returns at once.
const DEADLINE: Duration = Duration::from_secs(30);

async fn eventually(mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + DEADLINE;
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_get_check_list_and_the_direct_path() {
    let (_dir, sock, samgr_task) = start_samgr(Registry::default());

    let host = SaHost::connect(&sock).await.unwrap();
    host.publish(1500, Echo::default(), None).await.unwrap();

    let client = Samgr::connect(&sock).await.unwrap();
    assert!(client.check(1500).await.unwrap());
    assert!(!client.check(1501).await.unwrap());
    assert_eq!(client.list().await.unwrap(), vec![(1500, "LOADED".to_owned())]);
    let err = client.get_connection(1501).await.expect_err("unknown SA is an error").to_string();
    assert!(err.contains("1501") && err.contains("not registered"), "{err}");
    assert!(client.check(0).await.is_err(), "id 0 is refused");
    assert!(client.check(0x0100_0000).await.is_err(), "ids above 0xFFFFFF are refused");

    let echo = client.get::<EchoClientProxy>(1500).await.unwrap();
    assert_eq!(echo.add_one(41).await.unwrap(), 42);
    assert_eq!(echo.caller_pid().await.unwrap(), std::process::id() as i32, "the SA sees the caller samgr verified");
    assert_eq!(client.dump_sa(1500, vec!["-a".into(), "b".into()]).await.unwrap(), "echo dump -a,b");
    // Payloads: inline when small, a sealed memfd above 1 MiB; and fds.
    let small: Vec<u8> = vec![3; 100];
    assert_eq!(echo.sum(accord_ipc::blob::Blob::new(small).unwrap()).await.unwrap(), (100, 300, false));
    let big: Vec<u8> = (0..5u32 << 20).map(|i| (i % 7) as u8).collect();
    let want: u64 = big.iter().map(|b| u64::from(*b)).sum();
    assert_eq!(echo.sum(accord_ipc::blob::Blob::new(big).unwrap()).await.unwrap(), (5 << 20, want, true));
    let (r, w) = nix::unistd::pipe().unwrap();
    echo.write_to(zbus::zvariant::Fd::from(&w), "through a passed fd").await.unwrap();
    drop(w);
    let mut got = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(r), &mut got).unwrap();
    assert_eq!(got, "through a passed fd");

    // A host that goes away takes its SAs with it; subscribers hear of it.
    client.subscribe(1600).await.unwrap();
    client.subscribe(1500).await.unwrap();
    let ev = tokio::time::timeout(DEADLINE, client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Added(1500)), "an SA already present is reported at once");
    let host2 = SaHost::connect(&sock).await.unwrap();
    host2.publish(1600, Echo::default(), None).await.unwrap();
    let ev = tokio::time::timeout(DEADLINE, client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Added(1600)));
    // Only its host (or root) may withdraw an SA; we are root here, so
    // check the host path: host2 withdraws by hanging up.
    drop(host2);
    let ev = tokio::time::timeout(DEADLINE, client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Removed(1600)));
    assert!(eventually(async || !client.check(1600).await.unwrap()).await, "SA 1600 still listed after its host hung up");
    assert!(client.check(1500).await.unwrap(), "other hosts' SAs stay");

    // 256 subscriptions per caller.
    let other = Samgr::connect(&sock).await.unwrap();
    for id in 1..=256 {
        other.subscribe(2000 + id).await.unwrap();
    }
    let err = other.subscribe(9999).await.expect_err("the 257th subscription is refused").to_string();
    assert!(err.contains("256"), "{err}");

    samgr_task.abort();
}

/// Starts "processes" as tasks of this test: each runs `run_profile`
/// like `sa_main` would, and counts the starts.
struct TaskStarter {
    profile: Profile,
    starts: Arc<AtomicUsize>,
    sock: Arc<Mutex<Option<std::path::PathBuf>>>,
    echo: Arc<Mutex<Vec<Counters>>>,
    refuse: bool,
}

impl Starter for TaskStarter {
    fn start(&self, process: &str) -> Result<(), String> {
        assert_eq!(process, self.profile.process);
        self.starts.fetch_add(1, Ordering::SeqCst);
        let profile = self.profile.clone();
        let sock = self.sock.lock().unwrap().clone().unwrap();
        let (stops, idles) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        self.echo.lock().unwrap().push(Counters { stops: stops.clone(), idles: idles.clone() });
        let refuse = self.refuse;
        let rt = tokio::runtime::Handle::current();
        rt.spawn(async move {
            let make = move || Published::new(Echo { stops: stops.clone(), idles: idles.clone(), refuse_idle: refuse.into(), stall_idle: false });
            let r =
                accord_safwk::run_profile_at(&sock, &profile, vec![(9500, Box::new(make)), (9501, Box::new(|| Err("9501 cannot start here".into())))]).await;
            r.expect("run_profile");
        });
        Ok(())
    }
}

const PROFILE: &str = r#"{"process": "echo_sa", "systemability": [
    {"name": 9500, "run-on-create": false, "stop-on-demand": {"unreferenced-unload": true, "delay": 300}},
    {"name": 9501}]}"#;

/// Each started SA's on_stop and on_idle call counts.
struct Counters {
    stops: Arc<AtomicUsize>,
    idles: Arc<AtomicUsize>,
}

/// The registry, its start count, the socket slot the starter reads, and
/// each started SA's counters.
type OnDemand = (Registry, Arc<AtomicUsize>, Arc<Mutex<Option<std::path::PathBuf>>>, Arc<Mutex<Vec<Counters>>>);

fn on_demand(refuse: bool) -> OnDemand {
    let profile = Profile::parse(PROFILE, "echo.json").unwrap();
    let starts = Arc::new(AtomicUsize::new(0));
    let sock = Arc::new(Mutex::new(None));
    let echo = Arc::new(Mutex::new(Vec::new()));
    let starter = TaskStarter { profile: profile.clone(), starts: starts.clone(), sock: sock.clone(), echo: echo.clone(), refuse };
    let reg = Registry::new(Default::default(), vec![profile], Arc::new(starter)).with_load_timeout(Duration::from_secs(20));
    (reg, starts, sock, echo)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_demand_load_with_100_getters_idle_unload_and_reload() {
    let (reg, starts, sock_slot, stops) = on_demand(false);
    let (_dir, sock, _task) = start_samgr(reg);
    *sock_slot.lock().unwrap() = Some(sock.clone());
    let client = Arc::new(Samgr::connect(&sock).await.unwrap());
    assert_eq!(client.list().await.unwrap(), vec![(9500, "NOT_LOADED".to_owned()), (9501, "NOT_LOADED".to_owned())]);
    assert!(!client.check(9500).await.unwrap(), "check never loads");
    client.subscribe(9500).await.unwrap();

    // 100 getters at once, each on its own samgr connection: one start.
    let mut getters = Vec::new();
    for i in 0..100u32 {
        let sock = sock.clone();
        getters.push(tokio::spawn(async move {
            let c = Samgr::connect(&sock).await.unwrap();
            let echo = c.get::<EchoClientProxy>(9500).await.unwrap();
            assert_eq!(echo.add_one(i).await.unwrap(), i + 1);
            echo
        }));
    }
    let mut held = Vec::new();
    for g in getters {
        held.push(g.await.unwrap());
    }
    assert_eq!(starts.load(Ordering::SeqCst), 1, "100 concurrent getters cause one process start");
    assert_eq!(client.next_event().await, Some(SaEvent::Added(9500)));
    let procs = client.running_processes().await.unwrap();
    assert_eq!(procs.len(), 1);
    assert_eq!(procs[0].name, "echo_sa");

    // With clients connected, the host refuses to unload it.
    let err = client.unload(9500).await.expect_err("unload with clients is refused").to_string();
    assert!(err.contains("clients"), "{err}");

    // No clients: unloaded after the delay, subscribers told, process gone.
    drop(held);
    let ev = tokio::time::timeout(DEADLINE, client.next_event()).await.expect("unloaded in time");
    assert_eq!(ev, Some(SaEvent::Removed(9500)));
    assert_eq!(stops.lock().unwrap()[0].stops.load(Ordering::SeqCst), 1, "on_stop ran");
    assert_eq!(client.list().await.unwrap()[0], (9500, "NOT_LOADED".to_owned()));
    assert!(eventually(async || client.running_processes().await.unwrap().is_empty()).await, "the host process left");

    // The next get loads it again.
    let echo = client.get::<EchoClientProxy>(9500).await.unwrap();
    assert_eq!(echo.add_one(1).await.unwrap(), 2);
    assert_eq!(starts.load(Ordering::SeqCst), 2);

    // LoadSystemAbility reports success; an SA whose start fails reports
    // failure to every waiter, with the reason.
    client.load(9500).await.unwrap();
    let mut waiters = Vec::new();
    for _ in 0..10 {
        let sock = sock.clone();
        waiters.push(tokio::spawn(async move { Samgr::connect(&sock).await.unwrap().get_connection(9501).await.map(drop) }));
    }
    for w in waiters {
        let e = w.await.unwrap().expect_err("9501 cannot load").to_string();
        assert!(e.contains("9501"), "{e}");
    }
    let e = client.load(9501).await.expect_err("load reports failure").to_string();
    assert!(e.contains("9501"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sa_may_refuse_to_unload_and_a_dead_start_times_out() {
    let (reg, _starts, sock_slot, stops) = on_demand(true);
    let (_dir, sock, _task) = start_samgr(reg);
    *sock_slot.lock().unwrap() = Some(sock.clone());
    let client = Samgr::connect(&sock).await.unwrap();
    drop(client.get_connection(9500).await.unwrap());
    // The host asks on_idle once the delay has passed without clients.
    assert!(eventually(async || stops.lock().unwrap()[0].idles.load(Ordering::SeqCst) >= 1).await, "on_idle was asked");
    assert!(eventually(async || client.list().await.unwrap()[0] == (9500, "LOADED".to_owned())).await, "on_idle refused: the SA stays loaded");
    assert_eq!(stops.lock().unwrap()[0].stops.load(Ordering::SeqCst), 0, "on_stop never ran");

    // A starter that starts nothing: the getter gets a clear error in time.
    struct Nothing;
    impl Starter for Nothing {
        fn start(&self, _: &str) -> Result<(), String> {
            Ok(())
        }
    }
    struct Broken;
    impl Starter for Broken {
        fn start(&self, p: &str) -> Result<(), String> {
            Err(format!("init has no service named {p:?}"))
        }
    }
    let profile = Profile::parse(PROFILE, "echo.json").unwrap();
    let reg = Registry::new(Default::default(), vec![profile.clone()], Arc::new(Nothing)).with_load_timeout(Duration::from_millis(300));
    let (_d2, sock2, _t2) = start_samgr(reg);
    let c2 = Samgr::connect(&sock2).await.unwrap();
    let e = c2.get_connection(9500).await.expect_err("nothing registers").to_string();
    assert!(e.contains("9500") && e.contains("300 ms"), "samgr's own deadline ended the wait: {e}");
    assert_eq!(c2.list().await.unwrap()[0], (9500, "NOT_LOADED".to_owned()), "a failed load leaves the SA loadable");

    let reg = Registry::new(Default::default(), vec![profile], Arc::new(Broken));
    let (_d3, sock3, _t3) = start_samgr(reg);
    let e = Samgr::connect(&sock3).await.unwrap().get_connection(9500).await.expect_err("broken starter").to_string();
    assert!(e.contains("no service named \"echo_sa\""), "{e}");
}

/// The real samgr binary on `sock`.
fn samgr_process(sock: &std::path::Path) -> std::process::Child {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_samgr")).arg("--socket").arg(sock).arg("--policy").arg("/nonexistent").spawn().unwrap();
    let end = std::time::Instant::now() + DEADLINE;
    while std::os::unix::net::UnixStream::connect(sock).is_err() {
        assert!(std::time::Instant::now() < end, "samgr never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    child
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_and_clients_survive_a_samgr_restart() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("samgr");
    let mut first = samgr_process(&sock);
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish(1700, Echo::default(), None).await.unwrap();
    let client = Samgr::connect(&sock).await.unwrap();
    client.subscribe(1800).await.unwrap();
    let echo = client.get::<EchoClientProxy>(1700).await.unwrap();

    // samgr is killed and init would start it again on the same socket.
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(echo.add_one(5).await.unwrap(), 6, "samgr is not on the call path: held SA connections do not notice");
    let mut second = samgr_process(&sock);
    // The host registers again by itself; the client re-resolves.
    assert!(eventually(async || client.check(1700).await.unwrap_or(false)).await, "SA 1700 re-registered");
    let again = client.get::<EchoClientProxy>(1700).await.unwrap();
    assert_eq!(again.add_one(1).await.unwrap(), 2);
    // The client's subscriptions came along too.
    let host2 = SaHost::connect(&sock).await.unwrap();
    host2.publish(1800, Echo::default(), None).await.unwrap();
    let ev = tokio::time::timeout(DEADLINE, client.next_event()).await.unwrap();
    assert_eq!(ev, Some(SaEvent::Added(1800)));
    second.kill().unwrap();
    second.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sa_starts_only_once_its_dependencies_are_there() {
    /// Starts the profile's host as a task of this test.
    struct DepStarter {
        profile: Profile,
        sock: Arc<Mutex<Option<std::path::PathBuf>>>,
    }
    impl Starter for DepStarter {
        fn start(&self, _: &str) -> Result<(), String> {
            let (profile, sock) = (self.profile.clone(), self.sock.lock().unwrap().clone().unwrap());
            tokio::runtime::Handle::current().spawn(async move {
                let _ = accord_safwk::run_profile_at(&sock, &profile, vec![(9600, Box::new(|| Published::new(Echo::default())))]).await;
            });
            Ok(())
        }
    }
    let profile = Profile::parse(r#"{"process": "dep_sa", "systemability": [{"name": 9600, "depend": [9601], "depend-time-out": 300}]}"#, "dep.json").unwrap();
    let sock_slot = Arc::new(Mutex::new(None));
    let reg = Registry::new(Default::default(), vec![profile.clone()], Arc::new(DepStarter { profile, sock: sock_slot.clone() }))
        .with_load_timeout(Duration::from_secs(20));
    let (_dir, sock, _task) = start_samgr(reg);
    *sock_slot.lock().unwrap() = Some(sock.clone());
    let client = Samgr::connect(&sock).await.unwrap();
    let e = client.load(9600).await.expect_err("9601 is missing").to_string();
    assert!(e.contains("needs SA 9601") && e.contains("300 ms"), "the host's reason reaches the waiter, not samgr's own deadline: {e}");
    let dep = SaHost::connect(&sock).await.unwrap();
    dep.publish(9601, Echo::default(), None).await.unwrap();
    let echo = client.get::<EchoClientProxy>(9600).await.expect("with 9601 there, 9600 starts");
    assert_eq!(echo.add_one(1).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_host_does_not_hold_samgr() {
    let (_dir, sock, _task) = start_samgr(Registry::default());
    let s2 = sock.clone();
    // The host on a runtime of its own: its on_idle blocks that runtime.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let host = SaHost::connect(&s2).await.unwrap();
            // on_idle never comes back in time.
            host.publish(1900, Echo { stall_idle: true, ..Echo::default() }, None).await.unwrap();
            std::future::pending::<()>().await;
        });
    });
    let client = Samgr::connect(&sock).await.unwrap();
    assert!(eventually(async || client.check(1900).await.unwrap()).await);
    let e = client.unload(1900).await.expect_err("the host never answers in time").to_string();
    assert!(e.contains("did not answer"), "samgr gave up on its own: {e}");
    assert_eq!(client.list().await.unwrap(), vec![(1900, "LOADED".to_owned())], "the SA stays usable");
}
