//! Identity is never what a peer says about itself: only the process init
//! started for a service may register its name; an SA a profile lists may
//! be registered only by that profile's process; supplementary groups come
//! from the kernel (SO_PEERGROUPS); listing is under policy; and a host
//! re-registers each SA on its own after a samgr restart. Attacks run as
//! uid 2000 (this binary re-run with `--ignored --exact <helper>`).

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_safwk::policy::Policy;
use accord_safwk::profile::Profile;
use accord_safwk::{Published, SaHost, Samgr, SystemAbilityManagerProxy};
use accord_samgr::{Registry, ServicePid, Starter};

mod common;
use common::{Nop, NopClientProxy};

const DEADLINE: Duration = Duration::from_secs(30);

/// A starter that starts nothing and says what the test wants about the
/// service's pid.
struct Said(Arc<Mutex<ServicePid>>);
impl Starter for Said {
    fn start(&self, _process: &str) -> Result<(), String> {
        Err("this test starts nothing".into())
    }
    fn service_pid(&self, _process: &str) -> ServicePid {
        *self.0.lock().unwrap()
    }
}

const PROFILE: &str = r#"{"process": "ident_sa", "systemability": [{"name": 4500, "run-on-create": true}]}"#;
const POLICY: &str = r#"{"rules": [{"ids": "4500-4599", "register": {"uids": [2000]}, "get": {"uids": [2000]}}, {"ids": "4600", "register": {"uids": []}, "get": {"gids": [1007]}}]}"#;

fn start_samgr(policy: &str, pid: Arc<Mutex<ServicePid>>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("samgr");
    let listener = tokio::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let reg = Registry::new(Policy::parse(policy, "identity.json").unwrap(), vec![Profile::parse(PROFILE, "ident.json").unwrap()], Arc::new(Said(pid)));
    tokio::spawn(accord_samgr::serve(listener, reg));
    (dir, sock)
}

/// Runs helper `name` as uid 2000 (with supplementary `groups`) and
/// returns its combined output; it must succeed.
async fn as_2000(name: &str, sock: &Path, groups: &'static [u32]) -> String {
    let (name, sock) = (name.to_owned(), sock.to_owned());
    let out = tokio::task::spawn_blocking(move || {
        let mut c = Command::new(std::env::current_exe().unwrap());
        c.args(["--ignored", "--exact", &name, "--nocapture", "--test-threads=1"]).env("ACCORD_IDENT_SOCK", &sock);
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            c.pre_exec(move || {
                let gids: Vec<nix::unistd::Gid> = groups.iter().map(|g| nix::unistd::Gid::from_raw(*g)).collect();
                nix::unistd::setgroups(&gids)?;
                nix::unistd::setgid(nix::unistd::Gid::from_raw(2000))?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(2000))?;
                Ok(())
            });
        }
        c.output().unwrap()
    })
    .await
    .unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "helper failed: {all}");
    all
}

fn sock() -> PathBuf {
    PathBuf::from(std::env::var_os("ACCORD_IDENT_SOCK").expect("a helper: run by a test of identity.rs, with ACCORD_IDENT_SOCK"))
}

async fn raw_proxy(sock: &Path) -> SystemAbilityManagerProxy<'static> {
    let conn = accord_ipc::connect(tokio::net::UnixStream::connect(sock).await.unwrap()).await.unwrap();
    SystemAbilityManagerProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_process_init_started_may_register_its_name() {
    let pid = Arc::new(Mutex::new(ServicePid::Pid(1)));
    let (_dir, sock) = start_samgr(POLICY, pid.clone());
    // Not the pid init started: refused, root or not.
    let e = raw_proxy(&sock).await.add_system_process("ident_sa").await.expect_err("root is not pid 1").to_string();
    assert!(e.contains("init started as pid 1"), "{e}");
    as_2000("helper_claim_process", &sock, &[]).await;
    // Not running: nobody.
    *pid.lock().unwrap() = ServicePid::NotRunning;
    assert!(raw_proxy(&sock).await.add_system_process("ident_sa").await.unwrap_err().to_string().contains("has not started it"));
    // Unknown (no record): root only.
    *pid.lock().unwrap() = ServicePid::Unknown;
    as_2000("helper_claim_process", &sock, &[]).await;
    // The process init started: accepted, and its SA loads.
    *pid.lock().unwrap() = ServicePid::Pid(std::process::id() as i32);
    let profile = Profile::parse(PROFILE, "ident.json").unwrap();
    let s2 = sock.clone();
    tokio::spawn(async move {
        let make: accord_safwk::Maker = Box::new(|| Published::new(Nop));
        let _ = accord_safwk::run_profile_at(&s2, &profile, vec![(4500, make)]).await;
    });
    let client = Samgr::connect(&sock).await.unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    while !client.check(4500).await.unwrap() {
        assert!(tokio::time::Instant::now() < end, "the real process registers its SA");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Helper (uid 2000): claims to be process ident_sa; must be refused.
#[test]
#[ignore = "helper of only_the_process_init_started_may_register_its_name"]
fn helper_claim_process() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let e = raw_proxy(&sock()).await.add_system_process("ident_sa").await.expect_err("uid 2000 is not ident_sa").to_string();
        assert!(e.contains("AccessDenied") || e.contains("may not") || e.contains("is not process"), "{e}");
        println!("REFUSED: {e}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_sa_is_registered_only_by_its_process() {
    let (_dir, sock) = start_samgr(POLICY, Arc::new(Mutex::new(ServicePid::Pid(1))));
    let out = as_2000("helper_register_profile_sa", &sock, &[]).await;
    assert!(out.contains("belongs to process ident_sa"), "{out}");
    let client = Samgr::connect(&sock).await.unwrap();
    // samgr sees the helper's connection close in its own time (found by
    // make flake-hunt: one busy run in 30 listed 4501 still LOADED).
    common::until_listed(&client, &[(4500, "NOT_LOADED".to_owned())], "4501 should leave with its helper, 4500 never come").await;
}

/// Helper (uid 2000, allowed to register 4500-4599 by the policy): 4500
/// is ident_sa's by its profile and is refused; 4501 is nobody's and is
/// accepted.
#[test]
#[ignore = "helper of a_profile_sa_is_registered_only_by_its_process"]
fn helper_register_profile_sa() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let host = SaHost::connect(&sock()).await.unwrap();
        let e = host.publish(4500, Nop, None).await.expect_err("a profile's SA").to_string();
        println!("{e}");
        host.publish(4501, Nop, None).await.expect("an SA no profile lists");
        assert!(Samgr::connect(&sock()).await.unwrap().check(4501).await.unwrap());
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supplementary_groups_come_from_the_kernel_and_listing_is_under_policy() {
    let (_dir, sock) = start_samgr(POLICY, Arc::new(Mutex::new(ServicePid::Unknown)));
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish(4600, Nop, None).await.unwrap();
    let out = as_2000("helper_get_by_group", &sock, &[1007]).await;
    assert!(out.contains("GOT 4600, the SA sees groups [1007]"), "a member of group 1007 gets SA 4600, which learns its groups: {out}");
    let out = as_2000("helper_get_by_group", &sock, &[]).await;
    assert!(out.contains("DENIED") && out.contains("may not get SA 4600"), "{out}");
    assert!(out.contains("LIST DENIED"), "no `list` section: root only: {out}");
    let (_dir2, sock2) = start_samgr(r#"{"list": {"gids": [1007]}}"#, Arc::new(Mutex::new(ServicePid::Unknown)));
    let out = as_2000("helper_get_by_group", &sock2, &[1007]).await;
    assert!(out.contains("LIST OK"), "{out}");
}

/// Helper (uid 2000, maybe in group 1007): gets SA 4600 and lists.
#[test]
#[ignore = "helper of supplementary_groups_come_from_the_kernel_and_listing_is_under_policy"]
fn helper_get_by_group() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let c = Samgr::connect(&sock()).await.unwrap();
        match c.get::<NopClientProxy>(4600).await {
            Ok(nop) => println!("GOT 4600, the SA sees groups {:?}", nop.groups().await.unwrap()),
            Err(e) => println!("DENIED: {e}"),
        }
        let p = raw_proxy(&sock()).await;
        match (p.list_system_abilities().await, p.dump_system_abilities().await, p.get_running_system_process().await) {
            (Ok(_), Ok(_), Ok(_)) => println!("LIST OK"),
            (Err(_), Err(_), Err(_)) => println!("LIST DENIED"),
            other => panic!("listing answered unevenly: {other:?}"),
        }
    });
}

// --- pid reuse ---------------------------------------------------------------------

/// Now, in the clock ticks of `/proc/<pid>/stat`'s start times.
fn ticks_now() -> u64 {
    use nix::libc;
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointers; CLOCK_BOOTTIME is what start times count.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    // SAFETY: a plain query.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    (ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64) / (1_000_000_000 / hz)
}

/// A process of this test holding a chosen pid; killed and reaped on drop.
struct PidHolder(i32);
impl Drop for PidHolder {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.0), nix::sys::signal::Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(self.0), None);
    }
}

/// Starts a process with exactly pid `pid` (clone3's `set_tid`: root may
/// choose a free pid), which waits to be killed.
fn take_pid(pid: i32) -> PidHolder {
    use nix::libc;
    #[repr(C)]
    #[derive(Default)]
    struct CloneArgs {
        flags: u64,
        pidfd: u64,
        child_tid: u64,
        parent_tid: u64,
        exit_signal: u64,
        stack: u64,
        stack_size: u64,
        tls: u64,
        set_tid: u64,
        set_tid_size: u64,
        cgroup: u64,
    }
    let tid = [pid];
    let args = CloneArgs { exit_signal: libc::SIGCHLD as u64, set_tid: tid.as_ptr() as u64, set_tid_size: 1, ..Default::default() };
    // SAFETY: a fork with a chosen pid; the child only waits in pause(2).
    let r = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if r == 0 {
        loop {
            // SAFETY: async-signal-safe; the child never returns.
            unsafe { libc::pause() };
        }
    }
    assert_eq!(r, pid as i64, "clone3 with set_tid {pid}: {}", std::io::Error::last_os_error());
    PidHolder(pid)
}

/// Shared case pid-reuse-add-system-process: SO_PEERCRED's pid is the pid
/// at connect(2). A (uid 2000) connects to samgr, hands the socket to its
/// child B and exits once B has done the handshake; A's pid goes to a new
/// process, which init (here: the starter) reports as process ident_sa.
/// B's `AddSystemProcess` comes from a connection with that pid but not
/// from that process (another start time): refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_pid_was_reused_is_not_the_process() {
    let pid = Arc::new(Mutex::new(ServicePid::NotRunning));
    let (dir, sock) = start_samgr(POLICY, pid.clone());
    let flags = dir.path().join("flags");
    std::fs::create_dir(&flags).unwrap();
    std::fs::set_permissions(&flags, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).unwrap();
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args(["--ignored", "--exact", "helper_connect_and_hand_over", "--nocapture", "--test-threads=1"])
        .env("ACCORD_IDENT_SOCK", &sock)
        .env("ACCORD_IDENT_FLAGS", &flags)
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(|| {
            nix::unistd::setgroups(&[])?;
            nix::unistd::setgid(nix::unistd::Gid::from_raw(2000))?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(2000))?;
            Ok(())
        });
    }
    let mut a = c.spawn().unwrap();
    let a_pid = a.id() as i32;
    let st = tokio::task::spawn_blocking(move || a.wait()).await.unwrap().unwrap();
    let output = || std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(st.success(), "A handed its connection over and exited: {}", output());
    // A is gone; a process started from the next clock tick on has
    // another start time.
    let gone = ticks_now();
    let end = tokio::time::Instant::now() + DEADLINE;
    while ticks_now() <= gone {
        assert!(tokio::time::Instant::now() < end, "the clock moves");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _holder = take_pid(a_pid);
    *pid.lock().unwrap() = ServicePid::Pid(a_pid);
    std::fs::write(flags.join("go"), "").unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    while !(output().contains("REFUSED:") || output().contains("ACCEPTED")) {
        assert!(tokio::time::Instant::now() < end, "B claimed the process: {}", output());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let out = output();
    assert!(out.contains("REFUSED:") && out.contains("not the process that connected"), "pid {a_pid} is another process now: {out}");
}

fn flags_dir() -> PathBuf {
    PathBuf::from(std::env::var_os("ACCORD_IDENT_FLAGS").expect("a helper: run by a test of identity.rs, with ACCORD_IDENT_FLAGS"))
}

/// Waits (30 s at most) for flag file `name` of the test.
fn wait_flag(name: &str) {
    let end = std::time::Instant::now() + DEADLINE;
    while !flags_dir().join(name).exists() {
        assert!(std::time::Instant::now() < end, "flag {name} never came");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Helper A (uid 2000): connects to samgr, starts B with the socket, and
/// exits once B has done the D-Bus handshake (so samgr has accepted the
/// connection while A was alive).
#[test]
#[ignore = "helper of a_connection_whose_pid_was_reused_is_not_the_process"]
fn helper_connect_and_hand_over() {
    use std::os::fd::AsRawFd;
    let s = std::os::unix::net::UnixStream::connect(sock()).unwrap();
    nix::fcntl::fcntl(s.as_raw_fd(), nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty())).unwrap();
    // B outlives A: that is the attack (B is re-parented and reaped there).
    #[allow(clippy::zombie_processes)]
    let _b = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "helper_claim_on_inherited", "--nocapture", "--test-threads=1"])
        .env("ACCORD_IDENT_FD", s.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    wait_flag("handshaken");
    println!("A (pid {}) exits", std::process::id());
}

/// Helper B (uid 2000, A's child): on A's connection, does the handshake,
/// then, when told, claims process ident_sa.
#[test]
#[ignore = "helper of a_connection_whose_pid_was_reused_is_not_the_process"]
fn helper_claim_on_inherited() {
    use std::os::fd::FromRawFd;
    let fd: i32 = std::env::var("ACCORD_IDENT_FD").expect("run by helper_connect_and_hand_over").parse().unwrap();
    // SAFETY: A handed this descriptor over and nothing else owns it here.
    let s = unsafe { std::os::unix::net::UnixStream::from_raw_fd(fd) };
    s.set_nonblocking(true).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let conn = accord_ipc::connect(tokio::net::UnixStream::from_std(s).unwrap()).await.unwrap();
        std::fs::write(flags_dir().join("handshaken"), "").unwrap();
        tokio::task::spawn_blocking(|| wait_flag("go")).await.unwrap();
        let p = SystemAbilityManagerProxy::builder(&conn).cache_properties(zbus::proxy::CacheProperties::No).build().await.unwrap();
        match p.add_system_process("ident_sa").await {
            Ok(_) => println!("ACCEPTED"),
            Err(e) => println!("REFUSED: {e}"),
        }
    });
}

// --- re-registration ---------------------------------------------------------------

struct Daemon(std::process::Child);
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn samgr_daemon(dir: &Path, profiles: &Path) -> Daemon {
    let sock = dir.join("samgr");
    let _ = std::fs::remove_file(&sock);
    let d = Daemon(
        Command::new(env!("CARGO_BIN_EXE_samgr"))
            .arg("--socket")
            .arg(&sock)
            .arg("--policy")
            .arg(dir.join("none.json"))
            .arg("--profiles")
            .arg(profiles)
            .spawn()
            .unwrap(),
    );
    let end = std::time::Instant::now() + DEADLINE;
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(std::time::Instant::now() < end, "samgr listens");
        std::thread::sleep(Duration::from_millis(10));
    }
    d
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_refused_sa_does_not_keep_the_others_out_after_a_samgr_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (none, claimed) = (dir.path().join("no-profiles"), dir.path().join("profiles"));
    std::fs::create_dir(&claimed).unwrap();
    std::fs::write(claimed.join("other.json"), r#"{"process": "other", "systemability": [{"name": 4300}]}"#).unwrap();
    let sock = dir.path().join("samgr");
    let first = samgr_daemon(dir.path(), &none);
    let host = SaHost::connect(&sock).await.unwrap();
    host.publish(4300, Nop, None).await.unwrap();
    host.publish(4301, Nop, None).await.unwrap();
    drop(first);
    // The new samgr's profiles give 4300 to process "other": the host's
    // 4300 is refused, its 4301 must come back all the same.
    let _second = samgr_daemon(dir.path(), &claimed);
    let client = Samgr::connect(&sock).await.unwrap();
    let end = tokio::time::Instant::now() + DEADLINE;
    while !client.check(4301).await.unwrap() {
        assert!(tokio::time::Instant::now() < end, "SA 4301 registered again");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(client.list().await.unwrap(), vec![(4300, "NOT_LOADED".to_owned()), (4301, "LOADED".to_owned())]);
}
