//! The real `samgr` binary: its client CLI and `hidumper`, the policy
//! against a non-root caller, the identity an SA sees, stock D-Bus tools
//! against samgr and an SA, and garbage on samgr's socket.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use accord_safwk::{Caller, SaHost, Samgr, SystemAbility};

/// An SA that records who called it.
#[derive(Default)]
struct Recorder {
    /// (uid, gid, pid) of each connection; shared so the test can read it.
    callers: Arc<Mutex<Vec<(u32, u32, i32)>>>,
}

struct RecorderIface {
    caller: Caller,
}

#[zbus::interface(name = "org.accord.test.Recorder")]
impl RecorderIface {
    fn add_one(&self, x: u32) -> u32 {
        x + 1
    }
    fn secret(&self) -> zbus::fdo::Result<String> {
        self.caller.check_permission("ohos.permission.TEST_SECRET")?;
        Ok("42".into())
    }
}

impl SystemAbility for Recorder {
    type Interface = RecorderIface;
    const PATH: &'static str = "/org/accord/test/Recorder";
    fn connect(self: &Arc<Self>, caller: Caller) -> RecorderIface {
        self.callers.lock().unwrap().push((caller.uid(), caller.gid(), caller.pid()));
        RecorderIface { caller }
    }
    fn on_dump(&self, args: &[String]) -> String {
        format!("recorder: {} connections; args {:?}\n", self.callers.lock().unwrap().len(), args)
    }
}

struct Daemon {
    child: Child,
    dir: tempfile::TempDir,
    sock: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The samgr binary on a socket that uid 1000 may reach, with `policy`.
fn daemon(policy: &str) -> Daemon {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = dir.path().join("samgr");
    let pol = dir.path().join("policy.json");
    std::fs::write(&pol, policy).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_samgr"))
        .arg("--socket")
        .arg(&sock)
        .arg("--policy")
        .arg(&pol)
        .arg("--profiles")
        .arg(dir.path().join("profiles"))
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if std::os::unix::net::UnixStream::connect(&sock).is_ok() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    Daemon { child, dir, sock }
}

async fn run(program: &Path, args: &[&str], sock: &Path, uid: u32) -> Output {
    let (p, args, s) = (program.to_owned(), args.iter().map(|a| a.to_string()).collect::<Vec<_>>(), sock.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut c = Command::new(p);
        c.args(args).env("SAMGR_SOCKET", s);
        if uid != 0 {
            // std drops the supplementary groups when root changes uid.
            c.uid(uid).gid(uid);
        }
        c.output().unwrap()
    })
    .await
    .unwrap()
}

fn text(o: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", o.status.code(), String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

const SAMGR: &str = env!("CARGO_BIN_EXE_samgr");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_hidumper_policy_and_identity() {
    let d = daemon(
        r#"{"rules": [{"ids": "3301", "register": {"uids": [0]}, "get": {"uids": [0, 2000]}}, {"ids": "3400-3600", "register": {"uids": [0]}, "get": {"uids": [1000, 2000]}}],
            "permissions": {"ohos.permission.TEST_SECRET": {"uids": [2000]}}}"#,
    );
    let callers = Arc::new(Mutex::new(Vec::new()));
    let host = SaHost::connect(&d.sock).await.unwrap();
    host.publish(3301, Recorder { callers: callers.clone() }, None).await.unwrap();
    host.publish(3400, Recorder { callers: callers.clone() }, None).await.unwrap();
    let props = accord_safwk::SaProps { permission: "ohos.permission.TEST_SECRET".into(), ..Default::default() };
    host.publish_with(3600, Recorder::default(), props, None).await.unwrap();
    let hidumper = d.dir.path().join("hidumper");
    std::os::unix::fs::symlink(SAMGR, &hidumper).unwrap();

    let out = run(&hidumper, &["-ls"], &d.sock, 0).await;
    assert!(out.status.success(), "{}", text(&out));
    let list = String::from_utf8_lossy(&out.stdout).into_owned();
    let row = list.lines().find(|l| l.starts_with("3301")).unwrap_or_else(|| panic!("no SA 3301 in:\n{list}"));
    assert!(row.contains("LOADED") && row.contains(&std::process::id().to_string()), "{row}");

    let out = run(&hidumper, &["-s", "3301", "-a", "-v all"], &d.sock, 0).await;
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("args [\"-v\", \"all\"]"), "{}", text(&out));
    let out = run(&hidumper, &["-s", "3301"], &d.sock, 1000).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("ohos.permission.DUMP"), "dump needs the permission: {}", text(&out));
    let out = run(&hidumper, &["-x"], &d.sock, 0).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("usage"), "{}", text(&out));

    for (args, want) in [(vec!["--check", "3301"], "SA 3301: registered"), (vec!["--get", "3301"], "SA 3301: connected"), (vec!["--list"], "3400 LOADED")] {
        let out = run(Path::new(SAMGR), &args, &d.sock, 0).await;
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(want), "{args:?}: {}", text(&out));
    }
    let out = run(Path::new(SAMGR), &["--check", "77"], &d.sock, 0).await;
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let out = run(Path::new(SAMGR), &["--get", "abc"], &d.sock, 0).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("not an SA id"), "{}", text(&out));

    // Non-root callers: the handshake works, the policy decides, and the
    // SA sees the uid the kernel reported, whatever the client claims.
    let out = run(Path::new(SAMGR), &["--get", "3301"], &d.sock, 1000).await;
    assert!(!out.status.success(), "uid 1000 may not get SA 3301: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("uid 1000") && err.contains("may not get SA 3301"), "the denial names caller and SA: {err}");
    let before = callers.lock().unwrap().len();
    let out = run(Path::new(SAMGR), &["--get", "3301"], &d.sock, 2000).await;
    assert!(out.status.success(), "uid 2000 may: {}", text(&out));
    let out = run(Path::new(SAMGR), &["--get", "3400"], &d.sock, 1000).await;
    assert!(out.status.success(), "a rule lets uid 1000 get 3400: {}", text(&out));
    // An SA registered with a permission: only its holders get it.
    let out = run(Path::new(SAMGR), &["--get", "3600"], &d.sock, 1000).await;
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("lacks ohos.permission.TEST_SECRET"), "{}", text(&out));
    let out = run(Path::new(SAMGR), &["--get", "3600"], &d.sock, 2000).await;
    assert!(out.status.success(), "uid 2000 holds it: {}", text(&out));
    let seen: Vec<(u32, u32, i32)> = callers.lock().unwrap()[before..].to_vec();
    assert_eq!(seen.iter().map(|c| (c.0, c.1)).collect::<Vec<_>>(), vec![(2000, 2000), (1000, 1000)], "SA saw the real callers");

    // A non-root process cannot register an SA the policy keeps for root
    // (this test binary, re-run as uid 1000: see `register_as_child`).
    let me = std::env::current_exe().unwrap();
    let out = tokio::task::spawn_blocking({
        let sock = d.sock.clone();
        move || {
            Command::new(me)
                .args(["--ignored", "--exact", "register_as_child", "--nocapture"])
                .env("ACCORD_REGISTER_AT", sock)
                .uid(1000)
                .gid(1000)
                .output()
                .unwrap()
        }
    })
    .await
    .unwrap();
    let all = text(&out);
    assert!(out.status.success() && all.contains("DENIED: ") && all.contains("uid 1000") && all.contains("may not register SA 3301"), "{all}");

    // Per-method permissions, checked by the SA through the SDK.
    let client = Samgr::connect(&d.sock).await.unwrap();
    let r = client.get::<RecorderClientProxy>(3301).await.unwrap();
    assert_eq!(r.secret().await.unwrap(), "42", "root holds every permission");
}

/// A helper process run by `cli_hidumper_policy_and_identity` as uid 1000
/// (ignored on its own).
#[tokio::test(flavor = "current_thread")]
#[ignore = "helper process of cli_hidumper_policy_and_identity"]
async fn register_as_child() {
    let sock = std::env::var_os("ACCORD_REGISTER_AT").expect("register_as_child is a helper: ACCORD_REGISTER_AT");
    let host = SaHost::connect(Path::new(&sock)).await.expect("uid 1000 connects to samgr");
    let e = host.publish(3301, Recorder::default(), None).await.expect_err("denied");
    println!("DENIED: {e}");
}

#[zbus::proxy(interface = "org.accord.test.Recorder", default_service = "org.accord.test", default_path = "/org/accord/test/Recorder")]
trait RecorderClient {
    fn add_one(&self, x: u32) -> zbus::Result<u32>;
    fn secret(&self) -> zbus::Result<String>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_dbus_tools_talk_to_samgr_and_to_an_sa() {
    let d = daemon("{}");
    let host = SaHost::connect(&d.sock).await.unwrap();
    host.publish(3500, Recorder::default(), None).await.unwrap();
    let addr = format!("--peer=unix:path={}", d.sock.display());
    let send = |args: Vec<String>| tokio::task::spawn_blocking(move || Command::new("dbus-send").args(&args).output().expect("dbus-send (package dbus)"));
    let out = send(vec![
        addr.clone(),
        "--print-reply".into(),
        "/org/accord/samgr".into(),
        "org.accord.SystemAbilityManager.CheckSystemAbility".into(),
        "uint32:3500".into(),
    ])
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("boolean true"), "{}", text(&out));
    let out =
        send(vec![addr.clone(), "--print-reply".into(), "/org/accord/samgr".into(), "org.freedesktop.DBus.Introspectable.Introspect".into()]).await.unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("GetSystemAbility"), "{}", text(&out));
    let out = send(vec![addr.clone(), "--print-reply".into(), "/org/accord/samgr".into(), "org.freedesktop.DBus.Peer.Ping".into()]).await.unwrap();
    assert!(out.status.success(), "{}", text(&out));
    // An SA's connection answers the standard interfaces too.
    let client = Samgr::connect(&d.sock).await.unwrap();
    let conn = client.get_connection(3500).await.unwrap();
    zbus::fdo::PeerProxy::builder(&conn)
        .destination("org.accord.sa")
        .unwrap()
        .path("/org/accord/test/Recorder")
        .unwrap()
        .build()
        .await
        .unwrap()
        .ping()
        .await
        .unwrap();
    let xml = zbus::fdo::IntrospectableProxy::builder(&conn)
        .destination("org.accord.sa")
        .unwrap()
        .path("/org/accord/test/Recorder")
        .unwrap()
        .build()
        .await
        .unwrap()
        .introspect()
        .await
        .unwrap();
    assert!(xml.contains("org.accord.test.Recorder") && xml.contains("AddOne"), "{xml}");
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use std::io::Write;

    /// Raw bytes, and well-framed D-Bus calls with arbitrary members and
    /// bodies, thrown at the real samgr: it answers the next real client.
    #[test]
    fn samgr_survives_garbage_and_arbitrary_calls() {
        let d = daemon("{}");
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let sock = d.sock.clone();
        let members = [
            "AddSystemAbility",
            "RemoveSystemAbility",
            "GetSystemAbility",
            "CheckSystemAbility",
            "ListSystemAbilities",
            "LoadSystemAbility",
            "UnloadSystemAbility",
            "SubscribeSystemAbility",
            "AddSystemProcess",
            "DumpSystemAbility",
            "Nope",
        ];
        let cfg = ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() };
        proptest!(cfg, |(bytes in proptest::collection::vec(any::<u8>(), 0..512), after_auth in any::<bool>(), member in proptest::sample::select(members.to_vec()), n in any::<u32>(), s in ".{0,40}", v in proptest::collection::vec(any::<u32>(), 0..8))| {
            // 1. Raw bytes, before or after a valid handshake.
            let mut c = std::os::unix::net::UnixStream::connect(&sock).unwrap();
            if after_auth {
                let uid: String = nix::unistd::getuid().as_raw().to_string().bytes().map(|b| format!("{b:02x}")).collect();
                let _ = c.write_all(format!("\0AUTH EXTERNAL {uid}\r\nBEGIN\r\n").as_bytes());
            }
            let _ = c.write_all(&bytes);
            drop(c);
            // 2. Proper calls with arbitrary members and bodies.
            rt.block_on(async {
                let s2 = tokio::net::UnixStream::connect(&sock).await.unwrap();
                let conn = accord_ipc::connect(s2).await.unwrap();
                let path = "/org/accord/samgr";
                let iface = "org.accord.SystemAbilityManager";
                let msgs = [
                    zbus::Message::method_call(path, member).and_then(|b| b.interface(iface)).and_then(|b| b.build(&(n,))),
                    zbus::Message::method_call(path, member).and_then(|b| b.interface(iface)).and_then(|b| b.build(&(s.as_str(), v.clone()))),
                    zbus::Message::method_call(path, member).and_then(|b| b.interface(iface)).and_then(|b| b.build(&())),
                    zbus::Message::method_call(path, member).and_then(|b| b.interface(iface)).and_then(|b| b.build(&(n, (true, n, s.as_str(), "x")))),
                ];
                for m in msgs.into_iter().flatten() {
                    let _ = tokio::time::timeout(Duration::from_secs(2), conn.send(&m)).await;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            });
        });
        rt.block_on(async {
            let c = Samgr::connect(&sock).await.expect("samgr still accepts");
            assert!(c.list().await.is_ok(), "samgr still answers");
        });
        assert!(d.child_alive(), "samgr is still running");
    }
}

impl Daemon {
    fn child_alive(&self) -> bool {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), None).is_ok()
            && std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).map(|s| !s.contains(") Z ")).unwrap_or(false)
    }
}
